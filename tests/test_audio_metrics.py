"""SaShiMi's sample metrics on inputs whose values are known, and the mu-law round trip."""

import itertools
import math

import pytest
import torch

from seqssm.audio import SILENCE, mu_law_decode, mu_law_encode
from seqssm.audio_metrics import am_score, frechet_distance, inception_score, modified_inception_score


def one_hot(labels, classes=10):
    return torch.nn.functional.one_hot(torch.tensor(labels), classes).double()


def test_is_of_perfect_balanced_predictions_is_the_number_of_classes():
    assert inception_score(one_hot(list(range(10)) * 3)) == pytest.approx(10.0)
    assert inception_score(one_hot([0, 1, 2, 3])) == pytest.approx(4.0)


def test_is_of_constant_predictions_is_one():
    p = torch.softmax(torch.randn(1, 10), -1).repeat(7, 1)
    assert inception_score(p) == pytest.approx(1.0)
    assert modified_inception_score(p) == pytest.approx(1.0)


def test_mis_matches_the_pairwise_definition():
    p = torch.softmax(torch.randn(6, 10, generator=torch.Generator().manual_seed(0)), -1).double()
    kls = [float((p[i] * (p[i] / p[j]).log()).sum()) for i, j in itertools.permutations(range(6), 2)]
    assert modified_inception_score(p) == pytest.approx(math.exp(sum(kls) / len(kls)))
    assert modified_inception_score(p) > 1


def test_am_is_zero_for_confident_predictions_with_the_real_class_balance():
    real = one_hot(list(range(10)) * 2)
    assert am_score(one_hot(list(range(10))), real) == pytest.approx(0.0, abs=1e-9)
    # all samples the same digit: KL(uniform || one-hot) is large
    assert am_score(one_hot([3] * 10), real) > 5


def test_fid():
    a = torch.randn(200, 5, generator=torch.Generator().manual_seed(1)).double()
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    shift = torch.tensor([1.0, -2.0, 0.0, 0.5, 3.0]).double()
    assert frechet_distance(a + shift, a) == pytest.approx(float(shift.square().sum()), abs=1e-6)
    # b = 2a: S_b = 4 S_a, so FID = |mu_b - mu_a|^2 + Tr(S_a) + 4 Tr(S_a) - 2 * 2 Tr(S_a)
    s_a = torch.cov(a.T)
    expected = float((a.mean(0)).square().sum() + torch.trace(s_a))
    assert frechet_distance(2 * a, a) == pytest.approx(expected, rel=1e-6)


def test_mu_law_round_trip():
    codes = torch.arange(256)
    assert torch.equal(mu_law_encode(mu_law_decode(codes)), codes)
    assert int(mu_law_encode(torch.zeros(1))) == SILENCE
    x = torch.linspace(-1, 1, 10001)
    y = mu_law_decode(mu_law_encode(x))
    # the error is at most half a step in the companded domain: |f(x) - f(y)| <= 1/255 (f in [-1, 1])
    f = lambda v: torch.sign(v) * torch.log1p(255 * v.abs()) / math.log(256)
    assert float((f(x) - f(y)).abs().max()) <= 1 / 255 + 1e-6
    assert float((x - y).abs().max()) < 0.03  # near full scale the step is widest
    assert float((x - y).abs()[x.abs() < 0.01].max()) < 3e-4  # fine steps near silence
