"""Generation: prefill (parallel scan) then O(1) steps gives the logits of a full forward; batched,
seeded, stop-token sampling; the CUDA-graph step's static-buffer logic (eager on the CPU, captured on
a GPU when there is one)."""

import pytest
import torch

from seqssm.decode_graph import GraphedStep, can_capture, copy_states
from seqssm.errors import ConfigError
from seqssm.generation import generate, prefill, stream
from seqssm.models import MambaLMHeadModel, ModelConfig

CONFIGS = {
    "mamba": ModelConfig(mixer="mamba", d_model=16, n_layer=2, d_state=4, dt_rank=3, bias=True, conv_bias=False),
    "mamba_complex": ModelConfig(mixer="mamba", d_model=16, n_layer=2, d_state=4, complex=True),
    "mamba2": ModelConfig(mixer="mamba2", d_model=16, n_layer=2, d_state=8, headdim=8, ngroups=2, chunk_size=4,
                          residual_in_fp32=False),
    "mamba2_rotary": ModelConfig(mixer="mamba2", d_model=16, n_layer=2, d_state=8, headdim=8, ngroups=2,
                                 chunk_size=4, rope_fraction=1.0),
}  # fmt: skip
VOCAB = 11


def model(name: str, dtype=torch.float32) -> MambaLMHeadModel:
    torch.manual_seed(0)
    m = MambaLMHeadModel(CONFIGS[name], VOCAB).to(dtype).eval()
    with torch.no_grad():  # away from the initialisation so every parameter matters
        for p in m.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return m


@pytest.mark.parametrize("name", list(CONFIGS))
@torch.inference_mode()
def test_prefill_then_step_equals_full_forward(name):
    m = model(name, torch.float64)
    ids = torch.randint(0, VOCAB, (3, 17))
    full = m(ids)
    logits, states = prefill(m, ids[:, :9])  # 9 tokens: more than one mamba2 chunk, and a partial one
    stepped = [logits] + [m.step(ids[:, t], states) for t in range(9, 17)]
    torch.testing.assert_close(torch.stack(stepped, 1), full[:, 8:], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", ["mamba", "mamba2"])
def test_greedy_generation_equals_argmax_of_full_forward(name):
    """Each greedy token is the argmax of a full forward over everything before it."""
    m = model(name, torch.float64)
    ids = torch.randint(0, VOCAB, (2, 6))
    out = generate(m, ids, 12, temperature=0)
    assert out.shape == (2, 18) and torch.equal(out[:, :6], ids)
    with torch.no_grad():
        want = m(out[:, :-1]).argmax(-1)[:, 5:]
    assert torch.equal(out[:, 6:], want)


def test_batch_rows_are_independent_and_seeds_reproduce():
    m = model("mamba2")
    ids = torch.randint(0, VOCAB, (4, 5))
    greedy = generate(m, ids, 10, temperature=0)
    for i in range(4):
        assert torch.equal(generate(m, ids[i : i + 1], 10, temperature=0), greedy[i : i + 1])
    a = generate(m, ids, 30, temperature=1.0, top_k=5, top_p=0.9, seed=7)
    b = generate(m, ids, 30, temperature=1.0, top_k=5, top_p=0.9, seed=7)
    c = generate(m, ids, 30, temperature=1.0, top_k=5, top_p=0.9, seed=8)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(generate(m, ids, 10, temperature=1.0, top_k=1, seed=3), greedy)  # top-1 is greedy


def test_top_k_keeps_only_the_k_most_likely():
    m = model("mamba")
    ids = torch.randint(0, VOCAB, (64, 3))
    out = generate(m, ids, 1, temperature=2.0, top_k=2, seed=0)[:, -1]
    with torch.no_grad():
        top2 = m(ids)[:, -1].topk(2).indices
    assert (out[:, None] == top2).any(-1).all()


def test_stop_tokens_pad_and_end_early():
    m = model("mamba2")
    ids = torch.randint(0, VOCAB, (3, 4))
    free = generate(m, ids, 20, temperature=0)[:, 4:]
    stop = int(free[0, 2])
    out = generate(m, ids, 20, temperature=0, stop_tokens=[stop], pad_token_id=-1)[:, 4:]
    for row, ref in zip(out.tolist(), free.tolist(), strict=True):
        n = ref.index(stop) + 1 if stop in ref else len(ref)
        assert row[:n] == ref[:n] and all(t == -1 for t in row[n:])  # the stop token, then pads
    ends = [ref.index(stop) + 1 if stop in ref else 20 for ref in free.tolist()]
    assert out.shape[1] == max(ends)  # decoding ends once every row has stopped
    assert len(list(stream(m, ids[:1], 20, temperature=0, stop_tokens=stop))) == ends[0]


def test_argument_errors():
    m = model("mamba")
    ids = torch.zeros(2, 3, dtype=torch.long)
    for kwargs, match in [
        (dict(temperature=-1.0), "temperature=-1.0"),
        (dict(top_p=0.0), "top_p=0.0"),
        (dict(top_k=-2), "top_k=-2"),
        (dict(cuda_graph=True), "cuda_graph=True"),
    ]:
        with pytest.raises(ConfigError, match=match):
            generate(m, ids, 3, **kwargs)
    with pytest.raises(ConfigError, match="input_ids"):
        generate(m, torch.zeros(3, dtype=torch.long), 3)
    assert torch.equal(generate(m, ids, 0), ids)


@pytest.mark.parametrize("name", ["mamba", "mamba2"])
@torch.inference_mode()
def test_static_buffer_step_equals_eager_step(name):
    """The graph path's buffer logic without the capture: states copied in, token copied in, logits out."""
    m = model(name)
    ids = torch.randint(0, VOCAB, (3, 7))
    logits, states = prefill(m, ids)
    step = GraphedStep(m, 3, torch.device("cpu"), capture=False)
    step.load_states(states)
    assert all(a.conv.data_ptr() != b.conv.data_ptr() for a, b in zip(step.states, states, strict=True))
    token = logits.argmax(-1)
    for _ in range(10):
        want = m.step(token, states)
        got = step(token)
        torch.testing.assert_close(got, want, rtol=0, atol=0)
        token = want.argmax(-1)
    for a, b in zip(step.states, states, strict=True):
        torch.testing.assert_close(a.ssm, b.ssm, rtol=0, atol=0)
    with pytest.raises(ValueError, match="layer 0 conv state"):
        copy_states(step.states, m.init_states(2))
    with pytest.raises(ValueError, match="CUDA"):
        GraphedStep(m, 3, torch.device("cpu"), capture=True)


def test_mamba2_models_are_capturable():
    """Fixed-size states: Mamba-1, Mamba-2 and the rotary Mamba-2 capture; attention does not (below)."""
    assert all(can_capture(model(name)) for name in CONFIGS)


def test_attention_model_is_not_captured():
    m = MambaLMHeadModel(ModelConfig(mixer="transformer", d_model=16, n_layer=1, headdim=8), VOCAB)
    assert not can_capture(m)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", list(CONFIGS))
def test_cuda_graph_generation_equals_eager(name):
    m = model(name).cuda()
    ids = torch.randint(0, VOCAB, (4, 9), device="cuda")
    eager = generate(m, ids, 40, temperature=0, cuda_graph=False)
    graphed = generate(m, ids, 40, temperature=0, cuda_graph=True)
    assert torch.equal(graphed, eager)
    again = generate(m, ids[:, :5], 40, temperature=1.0, top_p=0.9, seed=1, cuda_graph=True)  # cached graph, new states
    assert torch.equal(again, generate(m, ids[:, :5], 40, temperature=1.0, top_p=0.9, seed=1, cuda_graph=False))
