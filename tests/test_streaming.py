"""Long sequences in pieces: chunked (checkpointed) training forward and streaming inference equal
one pass over the whole sequence, outputs and gradients."""

import pytest
import torch

from seqssm.models import MambaLMHeadModel, ModelConfig
from seqssm.models.streaming import chunked_forward, stream_embeddings, stream_log_likelihood

CONFIGS = {
    "mamba": ModelConfig(mixer="mamba", d_model=16, n_layer=2, d_state=4),
    "mamba2": ModelConfig(mixer="mamba2", d_model=16, n_layer=2, d_state=8, headdim=8, chunk_size=8),
}


def model(name):
    torch.manual_seed(0)
    return MambaLMHeadModel(CONFIGS[name], 9).double()


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("chunk_len", [1, 7, 64])
def test_chunked_training_forward_equals_one_pass(name, chunk_len):
    m = model(name)
    ids = torch.randint(0, 9, (2, 29))
    w = torch.randn(2, 29, 9, dtype=torch.float64)
    full = m(ids)
    (full * w).sum().backward()
    ref = {n: p.grad.clone() for n, p in m.named_parameters()}
    m.zero_grad()
    out, _ = chunked_forward(m, ids, chunk_len, checkpoint=True)
    torch.testing.assert_close(out, full, rtol=1e-10, atol=1e-10)
    (out * w).sum().backward()
    for n, p in m.named_parameters():
        torch.testing.assert_close(p.grad, ref[n], rtol=1e-8, atol=1e-10, msg=n)


def test_streaming_inference_equals_one_pass():
    m = model("mamba")
    ids = torch.randint(0, 9, (2, 41))
    logp = m(ids).log_softmax(-1)[:, :-1].gather(-1, ids[:, 1:, None]).squeeze(-1)
    torch.testing.assert_close(stream_log_likelihood(m, ids, 6), logp.float(), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(stream_embeddings(m.backbone, ids, 10), m.backbone(ids), rtol=1e-10, atol=1e-10)


def test_chunk_len_must_be_positive():
    with pytest.raises(ValueError, match="chunk_len=0"):
        stream_log_likelihood(model("mamba"), torch.zeros(1, 4, dtype=torch.long), 0)
