"""Triton causal conv1d, fused residual + RMSNorm and the decode step, against the float64 references.

Runs on CUDA, or on the CPU under TRITON_INTERPRET=1 (CI; tests/conftest.py sets it when no GPU is
present). Errors are ‖a − b‖ / ‖b‖; inputs are fresh random draws (never zeros); forward outputs,
returned states and every input gradient are checked.
"""

from __future__ import annotations

import os

import pytest
import torch

from seqssm.ops.reference.conv1d import causal_conv1d_ref, causal_conv1d_update_ref
from seqssm.ops.reference.norm import rms_norm_ref
from seqssm.ops.reference.recurrence import causal_conv1d_naive
from seqssm.ops.reference.step import selective_state_update_ref

if not (torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"):
    pytest.skip("Triton kernels need CUDA or TRITON_INTERPRET=1", allow_module_level=True)

from seqssm.kernels.causal_conv1d import causal_conv1d_triton, causal_conv1d_update_triton  # noqa: E402
from seqssm.kernels.rms_norm import rms_norm_triton  # noqa: E402
from seqssm.kernels.selective_state_update import selective_state_update_triton  # noqa: E402

DEV = "cuda" if torch.cuda.is_available() else "cpu"
F64 = torch.float64


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.is_complex() or b.is_complex():
        a, b = torch.view_as_real(a.to(torch.complex128)), torch.view_as_real(b.to(torch.complex128))
    a, b = a.detach().cpu().double(), b.detach().cpu().double()
    assert torch.isfinite(a).all()
    return ((a - b).norm() / b.norm()).item()


def leaf(t: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    return t.to(DEV, dtype).requires_grad_()


def oracle(t: torch.Tensor) -> torch.Tensor:
    return t.detach().cpu().double().requires_grad_()


# ---------------------------------------------------------------- causal conv1d


@pytest.mark.parametrize("width", [2, 3, 4])
@pytest.mark.parametrize("L,act,seq,init", [(37, "silu", False, True), (1, None, False, True),
                                            (23, None, True, True), (40, "silu", True, False)])
def test_conv1d(width, L, act, seq, init, dtype=torch.float32, tol=1e-5):
    batch, dim = 2, 6
    x = leaf(torch.randn(batch, dim, L), dtype)
    w, b = leaf(torch.randn(dim, width)), leaf(torch.randn(dim))
    h0 = leaf(torch.randn(batch, dim, width - 1), dtype) if init else None
    si = torch.sort(torch.randint(0, 3, (batch, L)), -1).values.to(torch.int32) if seq else None
    out, fin = causal_conv1d_triton(x, w, b, None if si is None else si.to(DEV), h0, act)
    xs = [x, w, b] + ([h0] if init else [])
    os_ = [oracle(v) for v in xs]
    ref, rfin = causal_conv1d_ref(os_[0], os_[1], os_[2], si, os_[3] if init else None, act)
    if not seq:  # the chunked reference itself against the per-step one
        naive, _ = causal_conv1d_naive(os_[0], os_[1], os_[2], act, os_[3] if init else None)
        assert rel(ref, naive) < 1e-12
    go, gf = torch.randn_like(ref), torch.randn_like(rfin)
    g = torch.autograd.grad((out, fin), xs, (go.to(DEV, out.dtype), gf.to(DEV, fin.dtype)))
    rg = torch.autograd.grad((ref, rfin), os_, (go, gf))
    errs = {"out": rel(out, ref), "final": rel(fin, rfin)}
    errs.update({n: rel(a, c) for n, a, c in zip(["dx", "dw", "dbias", "dinit"], g, rg, strict=False)})
    assert max(errs.values()) < tol, errs


def test_conv1d_bf16():
    test_conv1d(4, 29, "silu", False, True, dtype=torch.bfloat16, tol=1e-2)


@pytest.mark.parametrize("seq,init", [(False, True), (True, False)])
def test_conv1d_channels_last_slice(seq, init):
    """x a transposed slice of a wider (batch, L, width) projection, as in the Mamba2 block: read in
    place, the output laid out channels-last too (no transposing copies), gradients into the slice."""
    batch, dim, L, width = 2, 6, 33, 4
    wide = leaf(torch.randn(batch, L, dim + 5))
    x = wide[:, :, 3:3 + dim].transpose(1, 2)
    w, b = leaf(torch.randn(dim, width)), leaf(torch.randn(dim))
    h0 = leaf(torch.randn(batch, dim, width - 1)) if init else None
    si = torch.sort(torch.randint(0, 3, (batch, L)), -1).values.to(torch.int32) if seq else None
    out, fin = causal_conv1d_triton(x, w, b, None if si is None else si.to(DEV), h0, "silu")
    assert out.stride(1) == 1, out.stride()
    xs = [wide, w, b] + ([h0] if init else [])
    os_ = [oracle(v) for v in xs]
    ref, rfin = causal_conv1d_ref(os_[0][:, :, 3:3 + dim].transpose(1, 2), os_[1], os_[2], si,
                                  os_[3] if init else None, "silu")
    go, gf = torch.randn_like(ref), torch.randn_like(rfin)  # go contiguous: not out's layout
    g = torch.autograd.grad((out, fin), xs, (go.to(DEV), gf.to(DEV)))
    rg = torch.autograd.grad((ref, rfin), os_, (go, gf))
    errs = {"out": rel(out, ref), "final": rel(fin, rfin)}
    errs.update({n: rel(a, c) for n, a, c in zip(["dwide", "dw", "dbias", "dinit"], g, rg, strict=False)})
    assert max(errs.values()) < 1e-5, errs


def test_conv1d_update_matches_full():
    """Decoding token by token with the rolling state gives the full convolution."""
    batch, dim, L, width = 2, 5, 9, 4
    x = torch.randn(batch, dim, L, device=DEV)
    w, b = torch.randn(dim, width, device=DEV), torch.randn(dim, device=DEV)
    state = torch.randn(batch, dim, width - 1, device=DEV)
    full, fin = causal_conv1d_ref(x.double(), w.double(), b.double(), None, state.double(), "silu")
    st, st_ref = state.clone(), state.double().clone()
    for t in range(L):
        y = causal_conv1d_update_triton(x[:, :, t], st, w, b, "silu")
        y_ref = causal_conv1d_update_ref(x[:, :, t].double(), st_ref, w.double(), b.double(), "silu")
        assert rel(y, full[:, :, t]) < 1e-6 and rel(y, y_ref) < 1e-6
    assert rel(st, fin) < 1e-6 and rel(st, st_ref) < 1e-6


# ---------------------------------------------------------------- RMSNorm


@pytest.mark.parametrize("shape", [(3, 7, 48), (5, 100)])
@pytest.mark.parametrize("with_res,prenorm", [(True, True), (True, False), (False, True), (False, False)])
def test_rms_norm(shape, with_res, prenorm):
    d = shape[-1]
    x, w = leaf(torch.randn(*shape)), leaf(1 + 0.3 * torch.randn(d))
    res = leaf(torch.randn(*shape)) if with_res else None
    out = rms_norm_triton(x, w, res, 1e-5, prenorm, True)
    xs = [x, w] + ([res] if with_res else [])
    os_ = [oracle(v) for v in xs]
    ref = rms_norm_ref(os_[0], os_[1], os_[2] if with_res else None, 1e-5, prenorm, True)
    outs = out if prenorm else (out,)
    refs = ref if prenorm else (ref,)
    if prenorm:
        assert out[1].dtype == torch.float32
    gos = [torch.randn_like(r) for r in refs]
    g = torch.autograd.grad(outs, xs, [v.to(DEV, o.dtype) for v, o in zip(gos, outs, strict=True)])
    rg = torch.autograd.grad(refs, os_, gos)
    errs = {f"out{i}": rel(o, r) for i, (o, r) in enumerate(zip(outs, refs, strict=True))}
    errs.update({n: rel(a, c) for n, a, c in zip(["dx", "dw", "dres"], g, rg, strict=False)})
    assert max(errs.values()) < 1e-5, errs


def test_rms_norm_bf16_residual_fp32():
    x = leaf(torch.randn(4, 64), torch.bfloat16)
    res = leaf(torch.randn(4, 64))
    w = leaf(torch.rand(64) + 0.5)
    out, r = rms_norm_triton(x, w, res, 1e-5, True, True)
    ref, rr = rms_norm_ref(oracle(x), oracle(w), oracle(res), 1e-5, True, True)
    assert out.dtype == torch.bfloat16 and r.dtype == torch.float32
    assert rel(out, ref) < 1e-2 and rel(r, rr) < 1e-6


# ---------------------------------------------------------------- decode step


@pytest.mark.parametrize("cplx", [False, True])
def test_state_update_mamba1(cplx):
    batch, dim, N = 3, 10, 5
    ct = torch.complex64
    state = torch.randn(batch, dim, N, dtype=ct if cplx else torch.float32)
    A = -(torch.rand(dim, N) + 0.2)
    B, C = torch.randn(batch, N), torch.randn(batch, N)
    if cplx:
        A = torch.complex(A, torch.randn(dim, N))
        B, C = torch.randn(batch, N, dtype=ct), torch.randn(batch, N, dtype=ct)
    x, dt, z = torch.randn(batch, dim), torch.randn(batch, dim), torch.randn(batch, dim)
    D, bias = torch.randn(dim), 0.3 * torch.randn(dim)
    args = [x, dt, A, B, C, D, z, bias]
    ref_state = state.to(torch.complex128 if cplx else F64)
    y_ref = selective_state_update_ref(ref_state, *[a.to(torch.complex128 if a.is_complex() else F64)
                                                    for a in args], True)
    st = state.to(DEV)
    y = selective_state_update_triton(st, *[a.to(DEV) for a in args], True)
    assert rel(y, y_ref) < 1e-5 and rel(st, ref_state) < 1e-5


def test_state_update_mamba2_broadcast():
    """Mamba-2 shapes with per-head A, dt, D, dt_bias broadcast by stride-0 views, grouped B/C."""
    batch, heads, P, N, groups = 2, 4, 6, 8, 2
    state = torch.randn(batch, heads, P, N)
    A = (-(torch.rand(heads) + 0.2))[:, None, None].expand(heads, P, N)
    dt = torch.randn(batch, heads)[:, :, None].expand(batch, heads, P)
    D = torch.randn(heads)[:, None].expand(heads, P)
    bias = torch.randn(heads)[:, None].expand(heads, P)
    x, z = torch.randn(batch, heads, P), torch.randn(batch, heads, P)
    B, C = torch.randn(batch, groups, N), torch.randn(batch, groups, N)
    args = [x, dt, A, B, C, D, z, bias]
    ref_state = state.double()
    y_ref = selective_state_update_ref(ref_state, *[a.double() for a in args], True)
    st = state.to(DEV)
    y = selective_state_update_triton(st, *[a.to(DEV) for a in args], True)
    assert rel(y, y_ref) < 1e-5 and rel(st, ref_state) < 1e-5


@pytest.mark.parametrize("heads", [0, 3])  # 0: Mamba-1 shapes
def test_state_update_A_log_and_bf16_parameters(heads):
    """A given as A_log (A = -exp(A_log) formed in the update) and D, dt_bias, A_log in bf16 (a bf16
    model's parameters, read without casts): equal to the fp64 oracle fed A = -exp(A_log)."""
    batch, P, N = 2, 12, 8
    lead = (heads,) if heads else ()
    state = torch.randn(batch, *lead, P, N)
    A_log = torch.log(torch.rand(*lead, P, N) + 0.2).bfloat16()
    D, bias = torch.randn(*lead, P).bfloat16(), (0.3 * torch.randn(*lead, P)).bfloat16()
    x, dt, z = torch.randn(batch, *lead, P), torch.randn(batch, *lead, P), torch.randn(batch, *lead, P)
    B, C = torch.randn(batch, *lead[:1] and (1,), N), torch.randn(batch, *lead[:1] and (1,), N)
    ref_state = state.double()
    y_ref = selective_state_update_ref(ref_state, x.double(), dt.double(), -torch.exp(A_log.double()), B.double(),
                                       C.double(), D.double(), z.double(), bias.double(), True)
    ref_log = state.double()
    y_log = selective_state_update_ref(ref_log, x.double(), dt.double(), A_log, B.double(), C.double(), D, z.double(),
                                       bias, True, A_is_log=True)
    assert rel(y_log, y_ref) < 1e-12 and rel(ref_log, ref_state) < 1e-12
    st = state.to(DEV)
    y = selective_state_update_triton(st, *[a.to(DEV) for a in (x, dt, A_log, B, C, D, z, bias)], True, A_is_log=True)
    assert rel(y, y_ref) < 1e-5 and rel(st, ref_state) < 1e-5


def test_conv_update_with_x_a_view_into_a_wider_projection():
    """In the decode step x is half of in_proj's output (row stride 2·dim): the output must still be
    written with its own layout (a bug once wrote past the end of it on the GPU)."""
    from seqssm.kernels.causal_conv1d import causal_conv1d_update_triton
    from seqssm.ops.reference.conv1d import causal_conv1d_update_ref

    torch.manual_seed(0)
    batch, dim, W = 5, 24, 4
    wide = torch.randn(batch, 2 * dim, device=DEV)
    x = wide[:, :dim]  # stride (2*dim, 1)
    weight, bias = torch.randn(dim, W, device=DEV), torch.randn(dim, device=DEV)
    s1 = torch.randn(batch, dim, W - 1, device=DEV)
    s2 = s1.clone()
    out = causal_conv1d_update_triton(x, s1, weight, bias, "silu")
    ref = causal_conv1d_update_ref(x.clone(), s2, weight, bias, "silu")
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(s1, s2)
