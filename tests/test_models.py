"""Blocks and models: mamba_ssm parameter names, state passing between pieces of a sequence, and
one-token steps that agree with the parallel forward (reference path, float64)."""

import pytest
import torch

from seqssm.models import MambaLMHeadModel, ModelConfig

CONFIGS = {
    "mamba": ModelConfig(mixer="mamba", d_model=16, n_layer=2, d_state=4),
    "mamba_complex": ModelConfig(mixer="mamba", d_model=16, n_layer=2, d_state=4, complex=True),
    "mamba2": ModelConfig(mixer="mamba2", d_model=16, n_layer=2, d_state=8, headdim=8, chunk_size=8),
    "mamba2_rotary": ModelConfig(mixer="mamba2", d_model=16, n_layer=2, d_state=8, headdim=8, chunk_size=8,
                                 rope_fraction=0.5),
}  # fmt: skip


def model(name: str, vocab: int = 11) -> MambaLMHeadModel:
    torch.manual_seed(0)
    m = MambaLMHeadModel(CONFIGS[name], vocab).double()
    with torch.no_grad():  # move away from the initialisation so every parameter matters
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m


def test_mamba_ssm_parameter_names():
    m = MambaLMHeadModel(ModelConfig(mixer="mamba", d_model=32, n_layer=2), 6)
    mixer = {
        "A_log",
        "D",
        "in_proj.weight",
        "conv1d.weight",
        "conv1d.bias",
        "x_proj.weight",
        "dt_proj.weight",
        "dt_proj.bias",
        "out_proj.weight",
    }
    expected = {"backbone.embedding.weight", "backbone.norm_f.weight", "lm_head.weight"}
    for i in range(2):
        expected |= {f"backbone.layers.{i}.norm.weight"} | {f"backbone.layers.{i}.mixer.{k}" for k in mixer}
    assert set(m.state_dict()) == expected
    sd = m.state_dict()
    assert sd["backbone.layers.0.mixer.in_proj.weight"].shape == (128, 32)
    assert sd["backbone.layers.0.mixer.conv1d.weight"].shape == (64, 1, 4)
    assert sd["backbone.layers.0.mixer.x_proj.weight"].shape == (2 + 2 * 16, 64)
    assert sd["backbone.embedding.weight"].shape == (8, 32)  # vocab padded to a multiple of 8


def test_mamba2_parameter_names_and_shapes():
    cfg = ModelConfig(mixer="mamba2", d_model=64, n_layer=1, d_state=16, headdim=32, ngroups=2)
    sd = MambaLMHeadModel(cfg, 6).state_dict()
    mixer = {k.removeprefix("backbone.layers.0.mixer.") for k in sd if ".mixer." in k}
    assert mixer == {
        "dt_bias",
        "A_log",
        "D",
        "in_proj.weight",
        "conv1d.weight",
        "conv1d.bias",
        "norm.weight",
        "out_proj.weight",
    }
    d_inner, heads, gn = 128, 4, 2 * 16
    assert sd["backbone.layers.0.mixer.in_proj.weight"].shape == (2 * d_inner + 2 * gn + heads, 64)
    assert sd["backbone.layers.0.mixer.conv1d.weight"].shape == (d_inner + 2 * gn, 1, 4)
    assert sd["backbone.layers.0.mixer.A_log"].shape == (heads,)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_state_passing_equals_one_pass(name):
    m = model(name)
    ids = torch.randint(0, 11, (2, 37))
    full = m(ids)
    split = 17
    first, states = m(ids[:, :split], return_states=True)
    second, _ = m(ids[:, split:], states=states, return_states=True)
    torch.testing.assert_close(torch.cat([first, second], 1), full, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_state_passing_gradients(name):
    m = model(name)
    ids = torch.randint(0, 11, (2, 23))
    w = torch.randn(2, 23, 11, dtype=torch.float64)
    (m(ids) * w).sum().backward()
    full = {n: p.grad.clone() for n, p in m.named_parameters()}
    m.zero_grad()
    first, states = m(ids[:, :9], return_states=True)
    second, _ = m(ids[:, 9:], states=states, return_states=True)
    (torch.cat([first, second], 1) * w).sum().backward()
    for n, p in m.named_parameters():
        torch.testing.assert_close(p.grad, full[n], rtol=1e-7, atol=1e-9, msg=n)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_step_equals_forward(name):
    m = model(name)
    ids = torch.randint(0, 11, (3, 12))
    full = m(ids)
    states = m.init_states(3)
    steps = torch.stack([m.step(ids[:, t], states) for t in range(ids.shape[1])], 1)
    torch.testing.assert_close(steps, full, rtol=1e-8, atol=1e-8)
