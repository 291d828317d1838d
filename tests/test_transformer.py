"""model=transformer: the KV-cache state gives the same logits piece by piece and token by token as
one causal pass, and RoPE makes the scores depend on relative position only."""

import torch

from seqssm.models import MambaLMHeadModel, ModelConfig
from seqssm.models.transformer import rope


def test_pieces_and_steps_match_full_pass():
    torch.manual_seed(0)
    net = MambaLMHeadModel(ModelConfig(mixer="transformer", d_model=32, n_layer=2, headdim=16), 20).double().eval()
    x = torch.randint(0, 20, (2, 41))
    with torch.no_grad():
        full = net(x)
        a, s = net(x[:, :17], return_states=True)
        b, s = net(x[:, 17:], s, return_states=True)
        states = net.init_states(2)
        steps = torch.stack([net.step(x[:, i], states) for i in range(41)], 1)
    torch.testing.assert_close(torch.cat([a, b], 1), full, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(steps, full, rtol=1e-10, atol=1e-10)


def test_rope_scores_are_relative():
    q, k = torch.randn(1, 1, 1, 8, dtype=torch.float64), torch.randn(1, 1, 1, 8, dtype=torch.float64)
    near = (rope(q, 5) * rope(k, 2)).sum()
    far = (rope(q, 1005) * rope(k, 1002)).sum()
    torch.testing.assert_close(near, far)
    assert not torch.allclose(near, (rope(q, 5) * rope(k, 3)).sum())
