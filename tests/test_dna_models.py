"""Bidirectional and reverse-complement-equivariant models, the classifier heads, and fine-tuning
from a checkpoint (``model.init_from``)."""

import pytest
import torch

from seqssm.errors import CheckpointError, ConfigError
from seqssm.finetune import init_from_checkpoint
from seqssm.generation import generate
from seqssm.genome import reverse_complement
from seqssm.models import Backbone, MambaLMHeadModel, ModelConfig
from seqssm.models.bidirectional import BiMixer
from seqssm.models.classifier import SequenceClassifier
from seqssm.models.rc import rc_hidden


def cfg(**kw) -> ModelConfig:
    return ModelConfig(**{"d_model": 16, "n_layer": 2, "d_state": 8, "backend": "reference", **kw})


@pytest.mark.parametrize("mixer", ["mamba", "mamba2"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_rc_equivariance(mixer, bidirectional):
    """H(rc(x)) = RC(H(x)) for the backbone, and the pooled classifiers are RC-invariant, in float64."""
    torch.manual_seed(0)
    extra = {"headdim": 8, "chunk_size": 8} if mixer == "mamba2" else {}
    c = cfg(mixer=mixer, rc_equivariant=True, bidirectional=bidirectional, **extra)
    x = torch.randint(0, 5, (3, 41))  # A, C, G, T, N
    backbone = Backbone(c, 8).double()
    h, h_rc = backbone(x), backbone(reverse_complement(x))
    assert h.shape == (3, 41, 32)
    torch.testing.assert_close(h_rc, rc_hidden(h), rtol=0, atol=1e-12)
    assert (h_rc - h).abs().max() > 1e-3  # not trivially symmetric
    for pooling in ("mean", "last"):
        net = SequenceClassifier(c, 6, 3, pooling).double()
        torch.testing.assert_close(net(reverse_complement(x)), net(x), rtol=0, atol=1e-12)
    plain = SequenceClassifier(cfg(mixer=mixer, bidirectional=bidirectional, **extra), 6, 3).double()
    assert (plain(reverse_complement(x)) - plain(x)).abs().max() > 1e-6  # without RCPS: not invariant


@pytest.mark.parametrize("strategy", ["add", "concat"])
def test_bidirectional_sees_both_sides(strategy):
    torch.manual_seed(0)
    c = cfg(bidirectional=True, bidirectional_strategy=strategy)
    backbone = Backbone(c, 8).double()
    assert isinstance(backbone.layers[0].mixer, BiMixer)
    x = torch.randint(0, 4, (2, 20))
    y = x.clone()
    y[:, -1] = (y[:, -1] + 1) % 4  # change the last token: position 0 must change (the reverse scan)
    assert (backbone(x)[:, 0] - backbone(y)[:, 0]).abs().max() > 1e-6
    causal = Backbone(cfg(), 8).double()
    torch.testing.assert_close(causal(x)[:, :-1], causal(y)[:, :-1], rtol=0, atol=1e-12)
    mixer = backbone.layers[0].mixer  # the definition: fwd(x) + flip(rev(flip(x))) (or projected)
    u = torch.randn(2, 20, 16, dtype=torch.float64)
    parts = [mixer.fwd(u), mixer.rev(u.flip(1)).flip(1)]
    expect = parts[0] + parts[1] if strategy == "add" else mixer.proj(torch.cat(parts, -1))
    torch.testing.assert_close(mixer(u), expect)


def test_bidirectional_and_rc_cannot_generate_or_be_language_models():
    for key in ("bidirectional", "rc_equivariant"):
        with pytest.raises(ConfigError, match=f"model.{key}=true"):
            MambaLMHeadModel(cfg(**{key: True}), 6)
    net = SequenceClassifier(cfg(bidirectional=True), 6, 2)
    with pytest.raises(ConfigError, match="cannot run step by step"):
        net.backbone.init_states(1)
    lm = MambaLMHeadModel(cfg(), 6)
    lm.backbone = net.backbone  # a bidirectional backbone smuggled into an LM: generation still refuses
    with pytest.raises(ConfigError, match="bidirectional"):
        generate(lm, torch.zeros(1, 3, dtype=torch.long), 4)
    with pytest.raises(ConfigError, match="bidirectional_strategy"):
        cfg(bidirectional_strategy="mul").validate()


def save_lm_checkpoint(path, model_cfg: ModelConfig, seed: int = 0) -> MambaLMHeadModel:
    torch.manual_seed(seed)
    lm = MambaLMHeadModel(model_cfg, 6)
    from dataclasses import asdict

    state = {f"net.{k}": v for k, v in lm.state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": {"task": "dna", "model": asdict(model_cfg)}}, path)
    return lm


def test_init_from_copies_the_backbone(tmp_path):
    lm = save_lm_checkpoint(tmp_path / "pre.ckpt", cfg())
    for kw in ({}, {"rc_equivariant": True}, {"bidirectional": True, "bidirectional_strategy": "concat"}):
        torch.manual_seed(1)
        net = SequenceClassifier(cfg(**kw), 6, 3)
        head_before = net.head.weight.clone()
        n = init_from_checkpoint(net, tmp_path / "pre.ckpt")
        assert n > 0 and torch.equal(net.head.weight, head_before)  # the head stays fresh
        torch.testing.assert_close(net.backbone.embedding.weight, lm.backbone.embedding.weight)
        w = lm.backbone.layers[1].mixer.in_proj.weight
        if kw.get("bidirectional"):
            torch.testing.assert_close(net.backbone.layers[1].mixer.fwd.in_proj.weight, w)
            torch.testing.assert_close(net.backbone.layers[1].mixer.rev.in_proj.weight, w)
        else:
            torch.testing.assert_close(net.backbone.layers[1].mixer.in_proj.weight, w)


def test_init_from_refuses_another_shape(tmp_path):
    save_lm_checkpoint(tmp_path / "pre.ckpt", cfg())
    with pytest.raises(CheckpointError, match=r"checkpoint has model.d_model=16, this model has model.d_model=32"):
        init_from_checkpoint(
            SequenceClassifier(ModelConfig(d_model=32, n_layer=2, d_state=8), 6, 3), tmp_path / "pre.ckpt"
        )
    with pytest.raises(CheckpointError, match="model.n_layer=2"):
        init_from_checkpoint(SequenceClassifier(cfg(n_layer=3), 6, 3), tmp_path / "pre.ckpt")
    with pytest.raises(CheckpointError, match="backbone.embedding.weight has shape"):
        init_from_checkpoint(SequenceClassifier(cfg(), 300, 3), tmp_path / "pre.ckpt")
    with pytest.raises(CheckpointError, match="model.init_from=.*no such file"):
        init_from_checkpoint(SequenceClassifier(cfg(), 6, 3), tmp_path / "missing.ckpt")
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="model.init_from=.*not a readable checkpoint"):
        init_from_checkpoint(SequenceClassifier(cfg(), 6, 3), tmp_path / "junk.ckpt")
