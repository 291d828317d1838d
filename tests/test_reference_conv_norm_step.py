"""References of the causal conv, the norms and the one-token step, in float64."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from seqssm.ops.reference.conv1d import causal_conv1d_ref, causal_conv1d_update_ref
from seqssm.ops.reference.norm import gated_rms_norm_ref, rms_norm_ref
from seqssm.ops.reference.recurrence import causal_conv1d_naive, ssd_naive
from seqssm.ops.reference.selective_scan import selective_scan_ref
from seqssm.ops.reference.step import selective_state_update_ref

F64 = torch.float64


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().norm() / b.abs().norm()).item()


def gen(seed=0):
    g = torch.Generator().manual_seed(seed)
    return lambda *s: torch.randn(*s, generator=g, dtype=F64)


@pytest.mark.parametrize("width", [2, 3, 4])
@pytest.mark.parametrize("L", [1, 2, 29])
@pytest.mark.parametrize("activation", [None, "silu"])
def test_conv_matches_naive(width, L, activation):
    r = gen()
    x, w, b, init = r(2, 5, L), r(5, width), r(5), r(2, 5, width - 1)
    for kw in (dict(), dict(initial_states=init)):
        out, final = causal_conv1d_ref(x, w, b, None, kw.get("initial_states"), activation)
        ref, ref_final = causal_conv1d_naive(x, w, b, activation, kw.get("initial_states"))
        assert rel(out, ref) < 1e-12 and torch.equal(final, ref_final)


def test_conv_seq_idx_equals_each_sequence_alone():
    r = gen(1)
    lens = [3, 1, 9, 6]
    x, w, b = r(1, 4, sum(lens)), r(4, 4), r(4)
    seq_idx = torch.repeat_interleave(torch.arange(len(lens)), torch.tensor(lens))[None].int()
    out, _ = causal_conv1d_ref(x, w, b, seq_idx, None, "silu")
    start = 0
    for n in lens:
        alone, _ = causal_conv1d_naive(x[..., start : start + n], w, b, "silu")
        assert rel(out[..., start : start + n], alone) < 1e-12
        start += n


def test_conv_update_steps_equal_full_conv():
    r = gen(2)
    x, w, b, init = r(2, 3, 11), r(3, 4), r(3), r(2, 3, 3)
    full, final = causal_conv1d_ref(x, w, b, None, init, "silu")
    state = init.clone()
    steps = torch.stack([causal_conv1d_update_ref(x[..., t], state, w, b, "silu") for t in range(11)], -1)
    assert rel(steps, full) < 1e-12 and torch.equal(state, final)
    state = init.clone()
    assert rel(causal_conv1d_update_ref(x, state, w, b, "silu"), full) < 1e-12 and torch.equal(state, final)


def test_rms_norm():
    r = gen(3)
    x, res, w = r(2, 7, 16), r(2, 7, 16), r(16)
    out = rms_norm_ref(x, w, eps=1e-6)
    assert rel(out, x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w) < 1e-14
    out, new_res = rms_norm_ref(x.float(), w.float(), res.float(), 1e-6, prenorm=True)
    s = x + res
    assert torch.allclose(new_res.double(), s) and new_res.dtype == torch.float32
    assert rel(out.double(), s / torch.sqrt(s.pow(2).mean(-1, keepdim=True) + 1e-6) * w) < 1e-6
    out16, res16 = rms_norm_ref(x.bfloat16(), w.float(), None, 1e-6, True, residual_in_fp32=True)
    assert out16.dtype == torch.bfloat16 and res16.dtype == torch.float32
    assert rms_norm_ref(x.bfloat16(), w.float(), None, 1e-6, True, residual_in_fp32=False)[1].dtype == torch.bfloat16


@pytest.mark.parametrize("norm_before_gate", [False, True])
@pytest.mark.parametrize("group_size", [None, 4])
def test_gated_rms_norm(norm_before_gate, group_size):
    r = gen(4)
    x, z, w = r(3, 12), r(3, 12), r(12)
    g = group_size or 12

    def norm(v):
        v = v.unflatten(-1, (-1, g))
        return (v / torch.sqrt(v.pow(2).mean(-1, keepdim=True) + 1e-5)).flatten(-2) * w

    expect = norm(x) * F.silu(z) if norm_before_gate else norm(x * F.silu(z))
    assert rel(gated_rms_norm_ref(x, w, z, 1e-5, group_size, norm_before_gate), expect) < 1e-14
    assert rel(gated_rms_norm_ref(x, w, None, 1e-5, group_size), norm(x)) < 1e-14


@pytest.mark.parametrize("cplx", [False, True])
def test_mamba1_steps_equal_scan(cplx):
    r = gen(5)
    b, d, N, L = 2, 4, 3, 13
    A = -(r(d, N).abs() + 0.1)
    if cplx:
        A = torch.complex(A, r(d, N))
    u, dt, z, D, bias = r(b, d, L), r(b, d, L), r(b, d, L), r(d), r(d)
    Bs = torch.complex(r(b, N, L), r(b, N, L)) if cplx else r(b, N, L)
    Cs = torch.complex(r(b, N, L), r(b, N, L)) if cplx else r(b, N, L)
    pack = lambda M: torch.view_as_real(M).flatten(-2) if cplx else M  # mamba_ssm's (re, im) interleaving
    h0 = r(b, d, N).to(A.dtype)
    out, h = selective_scan_ref(u, dt, A, pack(Bs), pack(Cs), D, z, bias, True, h0)
    state = h0.clone()
    ys = [selective_state_update_ref(state, u[..., t], dt[..., t], A, Bs[..., t], Cs[..., t], D, z[..., t], bias,
                                     True) for t in range(L)]
    assert rel(torch.stack(ys, -1), out) < 1e-12 and rel(state, h) < 1e-12


def test_mamba2_steps_equal_ssd():
    r = gen(6)
    b, L, heads, p, groups, N = 2, 9, 4, 3, 2, 5
    x, dt, z = r(b, L, heads, p), r(b, L, heads), r(b, L, heads, p)
    A, D, bias = -(r(heads).abs() + 0.1), r(heads), r(heads)
    Bs, Cs, h0 = r(b, L, groups, N), r(b, L, groups, N), r(b, heads, p, N)
    ref, ref_h = ssd_naive(x, dt, A, Bs, Cs, D, z, bias, True, h0)
    state = h0.clone()
    exp = lambda v: v[..., None].expand(*v.shape, p)  # per-head values broadcast over head_dim, as in Mamba2
    A3 = A[:, None, None].expand(heads, p, N)
    ys = [selective_state_update_ref(state, x[:, t], exp(dt[:, t]), A3, Bs[:, t], Cs[:, t], exp(D),
                                     z[:, t], exp(bias), True) for t in range(L)]
    assert rel(torch.stack(ys, 1), ref) < 1e-12 and rel(state, ref_h) < 1e-12
