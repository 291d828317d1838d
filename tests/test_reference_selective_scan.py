"""The chunked selective scan against the naive per-step float64 recurrence."""

from __future__ import annotations

import pytest
import torch

import seqssm.ops.reference.selective_scan as chunked
from seqssm.ops import selective_scan_fn
from seqssm.ops.reference.recurrence import selective_scan_naive
from seqssm.ops.reference.selective_scan import selective_scan_ref

F64 = torch.float64
NAMES = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias"]


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().norm() / b.abs().norm()).item()


def to32(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.complex64 if t.is_complex() else torch.float32)


def make(batch, dim, L, N, cplx, layout, delta_scale=1.0, seed=0, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)
    A = -(torch.rand(dim, N, generator=g, dtype=dtype) * 4 + 0.1)
    if cplx:
        A = torch.complex(A, r(dim, N) * 3)

    def bc():
        if layout == "dn":
            return torch.complex(r(dim, N), r(dim, N)) if cplx else r(dim, N)
        shape = (batch, N, L) if layout == "bnl" else (batch, 2, N, L)
        return r(*shape[:-1], 2 * L) if cplx else r(*shape)

    delta = torch.rand(batch, dim, L, generator=g, dtype=dtype) * 0.2 * delta_scale
    return dict(u=r(batch, dim, L), delta=delta, A=A, B=bc(), C=bc(), D=r(dim), z=r(batch, dim, L),
                delta_bias=r(dim) * 0.1, initial_state=r(batch, dim, N).to(A.dtype))


@pytest.mark.parametrize("cplx", [False, True])
@pytest.mark.parametrize("layout", ["bnl", "bgnl", "dn"])
@pytest.mark.parametrize("L,batch", [(1, 1), (37, 2), (131, 1)])
@pytest.mark.parametrize("delta_scale", [1.0, 400.0])
def test_matches_naive(cplx, layout, L, batch, delta_scale):
    a = make(batch, 4, L, 5, cplx, layout, delta_scale)
    for extras in (dict(), dict(D=a["D"], z=a["z"], delta_bias=a["delta_bias"], delta_softplus=True,
                               initial_state=a["initial_state"])):
        args = (a["u"], a["delta"], a["A"], a["B"], a["C"])
        out, h = selective_scan_ref(*args, **extras, chunk_size=16)
        ref_out, ref_h = selective_scan_naive(*args, **extras)
        assert rel(out, ref_out) < 1e-10 and rel(h, ref_h) < 1e-10
        assert out.dtype == F64 and h.dtype == (torch.complex128 if cplx else F64)


def test_large_delta_A_stays_finite():
    """Δ·A far beyond exp's range in float64 (and fp32): decays underflow to zero as in the naive
    scan, nothing overflows, same result."""
    a = make(2, 3, 53, 4, False, "bnl")
    delta = a["delta"].clone()
    delta[:, :, 10:20] *= 1e4  # steps with |Δ a| ~ 1e3: exp(Δ a) underflows, exp(|Δ a| / 2) would overflow
    args = (a["u"], delta, a["A"], a["B"], a["C"])
    out, h = selective_scan_ref(*args, chunk_size=64, initial_state=a["initial_state"])
    ref_out, ref_h = selective_scan_naive(*args, initial_state=a["initial_state"])
    assert torch.isfinite(out).all() and rel(out, ref_out) < 1e-10 and rel(h, ref_h) < 1e-10
    out32, h32 = selective_scan_ref(*(t.float() for t in args), initial_state=a["initial_state"].float())
    assert out32.dtype == torch.float32 and rel(out32.double(), ref_out) < 1e-5 and rel(h32.double(), ref_h) < 1e-5


def test_negative_delta_without_softplus():
    a = make(1, 3, 40, 4, False, "bnl")
    args = (a["u"], a["delta"] - 0.15, a["A"], a["B"], a["C"])
    assert rel(selective_scan_ref(*args, chunk_size=16)[0], selective_scan_naive(*args)[0]) < 1e-10


@pytest.mark.parametrize("cplx", [False, True])
@pytest.mark.parametrize("layout", ["bnl", "bgnl", "dn"])
def test_fp32_matches_float64_oracle(cplx, layout):
    a = make(2, 8, 300, 16, cplx, layout, delta_scale=5.0)
    args = [a[k] for k in NAMES]
    ref_out, ref_h = selective_scan_naive(*args, True, a["initial_state"])
    out, h = selective_scan_ref(*map(to32, args), True, to32(a["initial_state"]))
    assert out.dtype == torch.float32 and h.dtype == to32(ref_h).dtype
    assert rel(out.double(), ref_out) < 1e-5 and rel(h.to(ref_h.dtype), ref_h) < 1e-5


def naive_grads(a, names, w):
    """Gradients of sum(out * w) + sum(|last state|) through the float64 naive scan."""
    leaves = {k: a[k].clone().requires_grad_() for k in names}
    out, h = selective_scan_naive(*[leaves[k] for k in NAMES], True, leaves["initial_state"])
    return out, h, torch.autograd.grad((out * w).sum() + h.abs().sum(), [leaves[k] for k in names])


@pytest.mark.parametrize("cplx", [False, True])
def test_fp32_large_delta_and_A_stay_finite(cplx):
    """softplus inputs up to 20 and |A| up to 100, chunks of 64 (cumulative decays down to exp(-1e5)):
    values and gradients finite and equal to the float64 naive scan's."""
    a = make(2, 4, 150, 6, cplx, "bnl", seed=5)
    g = torch.Generator().manual_seed(6)
    a["delta"] = torch.rand(2, 4, 150, generator=g, dtype=F64) * 24 - 4  # softplus(20) = 20
    a["A"] = a["A"] * 25  # real parts down to -100
    names = NAMES + ["initial_state"]
    w = torch.randn(2, 4, 150, generator=g, dtype=F64)
    ref_out, ref_h, ref_g = naive_grads(a, names, w)
    with torch.no_grad():  # the in-place path
        out, h = selective_scan_ref(*[to32(a[k]) for k in NAMES], True, to32(a["initial_state"]), chunk_size=64)
    assert rel(out.double(), ref_out) < 1e-5 and rel(h.to(ref_h.dtype), ref_h) < 1e-5
    leaves = {k: to32(a[k]).requires_grad_() for k in names}
    out, h = selective_scan_ref(*[leaves[k] for k in NAMES], True, leaves["initial_state"], chunk_size=64)
    grads = torch.autograd.grad((out * w.float()).sum() + h.abs().sum(), [leaves[k] for k in names])
    assert rel(out.double(), ref_out) < 1e-5 and rel(h.to(ref_h.dtype), ref_h) < 1e-5
    for name, g32, g64 in zip(names, grads, ref_g, strict=True):
        assert torch.isfinite(torch.view_as_real(g32) if g32.is_complex() else g32).all(), name
        assert rel(g32.to(g64.dtype), g64) < 1e-4, name


@pytest.mark.parametrize("cplx", [False, True])
def test_blocks_with_and_without_autograd(cplx, monkeypatch):
    """Several blocks of 3 chunks, a partial last chunk, and steps with |Δ a| ~ 1e3 (decays that
    underflow): the in-place path (no autograd) and the autograd path both equal the naive scan, and so do the
    gradients."""
    monkeypatch.setattr(chunked, "BLOCK_ELEMENTS", 3 * 16 * 2 * 5 * 4)
    a = make(2, 4, 203, 5, cplx, "bgnl", delta_scale=2.0, seed=7)
    a["delta"][:, :, 100:104] *= 1e3  # |Δ a| ~ 1e3: exp(Δ a) underflows to 0 in float64
    names = NAMES + ["initial_state"]
    w = torch.randn(2, 4, 203, generator=torch.Generator().manual_seed(8), dtype=F64)
    ref_out, ref_h, ref_g = naive_grads(a, names, w)
    args = [a[k] for k in NAMES]
    with torch.no_grad():
        out, h = selective_scan_ref(*args, True, a["initial_state"], chunk_size=16)
    assert rel(out, ref_out) < 1e-10 and rel(h, ref_h) < 1e-10
    leaves = {k: a[k].clone().requires_grad_() for k in names}
    out_g, h_g = selective_scan_ref(*[leaves[k] for k in NAMES], True, leaves["initial_state"], chunk_size=16)
    assert rel(out_g, out) < 1e-12 and rel(h_g, h) < 1e-12
    grads = torch.autograd.grad((out_g * w).sum() + h_g.abs().sum(), [leaves[k] for k in names])
    for name, g, g_ref in zip(names, grads, ref_g, strict=True):
        assert rel(g, g_ref) < 1e-9, name


@pytest.mark.parametrize("cplx", [False, True])
@pytest.mark.parametrize("layout", ["bnl", "dn"])
@pytest.mark.parametrize("large_steps", [False, True])
def test_gradcheck(cplx, layout, large_steps):
    a = make(2, 2, 7, 3, cplx, layout, delta_scale=3.0)
    if large_steps:  # |Δ a| up to ~1e3: decays that underflow inside a chunk
        a["delta"][:, :, 2:4] *= 500
    names = NAMES + ["initial_state"]
    inputs = [a[k].clone().requires_grad_() for k in names]

    def f(u, delta, A, B, C, D, z, delta_bias, h0):
        out, h = selective_scan_ref(u, delta, A, B, C, D, z, delta_bias, True, h0, chunk_size=3)
        return out, torch.view_as_real(h) if h.is_complex() else h

    assert torch.autograd.gradcheck(f, inputs, atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("cplx", [False, True])
def test_split_with_state_equals_one_pass(cplx):
    a = make(2, 4, 97, 5, cplx, "bnl" if not cplx else "dn", delta_scale=2.0)
    cut = int(torch.randint(1, 96, (1,), generator=torch.Generator().manual_seed(3)))
    leaves = {k: v.clone().requires_grad_() for k, v in a.items()}

    def part(sl, h0):
        s = lambda t: t[..., sl] if t.dim() == 3 and t.shape[-1] == 97 else t
        return selective_scan_ref(s(leaves["u"]), s(leaves["delta"]), leaves["A"], s(leaves["B"]),
                                  s(leaves["C"]), leaves["D"], s(leaves["z"]), leaves["delta_bias"], True, h0,
                                  chunk_size=16)

    full, h_full = part(slice(None), leaves["initial_state"])
    o1, h1 = part(slice(0, cut), leaves["initial_state"])
    o2, h2 = part(slice(cut, None), h1)
    assert rel(torch.cat([o1, o2], -1), full) < 1e-12 and rel(h2, h_full) < 1e-12
    w = torch.randn_like(full)
    g_full = torch.autograd.grad((full * w).sum(), list(leaves.values()))
    g_split = torch.autograd.grad((torch.cat([o1, o2], -1) * w).sum(), list(leaves.values()))
    for gf, gs in zip(g_full, g_split, strict=True):
        assert rel(gs, gf) < 1e-10


def test_public_function_and_dtypes():
    a = make(2, 4, 20, 3, False, "bnl", dtype=torch.float32)
    u16 = a["u"].to(torch.bfloat16)
    out, last = selective_scan_fn(u16, a["delta"], a["A"], a["B"], a["C"], a["D"], return_last_state=True,
                                  backend="reference")
    assert out.dtype == torch.bfloat16 and last.dtype == torch.float32 and last.shape == (2, 4, 3)


@pytest.mark.parametrize("cplx", [False, True])
@pytest.mark.parametrize("loss_on", ["y", "h", "both"])
@pytest.mark.parametrize("b_layout,c_layout", [("bnl", "bnl"), ("bgnl", "bnl"), ("bnl", "bgnl")])
def test_adjoint_matches_autograd_through_the_chunks(cplx, loss_on, b_layout, c_layout, monkeypatch):
    """Time-varying B and C train through the hand-written adjoint (``selective_scan_adjoint``); it must
    give autograd's gradients through the same chunked arithmetic, real and complex A, over several blocks
    with a short last one, B and C with different group counts, a loss on y, on the last state, or both
    (a missing output gradient)."""
    import seqssm.ops.reference.selective_scan_adjoint as adjoint

    monkeypatch.setattr(chunked, "BLOCK_ELEMENTS", 2 * 8 * 2 * 5 * 4)
    a = make(2, 4, 77, 5, cplx, "bgnl", delta_scale=3.0, seed=11)
    g = torch.Generator().manual_seed(12)
    for key, layout in (("B", b_layout), ("C", c_layout)):
        if layout == "bnl":
            a[key] = torch.randn(2, 5, 2 * 77 if cplx else 77, generator=g, dtype=F64)
    names = NAMES + ["initial_state"]
    w = torch.randn(2, 4, 77, generator=g, dtype=F64)

    def grads():
        leaves = {k: a[k].clone().requires_grad_() for k in names}
        out, h = selective_scan_ref(*[leaves[k] for k in NAMES], True, leaves["initial_state"], chunk_size=8)
        on_y, on_h = (out * w).sum(), h.abs().square().sum()
        loss = {"y": on_y, "h": on_h, "both": on_y + on_h}[loss_on]
        return torch.autograd.grad(loss, [leaves[k] for k in names], allow_unused=True)

    calls = []
    real_adjoint = adjoint.scan_with_adjoint
    monkeypatch.setattr(adjoint, "scan_with_adjoint", lambda *args: calls.append(1) or real_adjoint(*args))
    ours = grads()
    assert calls, "the adjoint path was not taken"

    def plain(dt, u, A, BM, CM, h0, T):  # autograd through the chunked arithmetic
        G = BM.shape[2]
        bc = chunked._BC.of_time_major
        return chunked._Scan(dt, u, A, bc(BM), bc(CM), G, T, False).run(h0, T)

    monkeypatch.setattr(adjoint, "scan_with_adjoint", plain)
    for name, x, y in zip(names, ours, grads(), strict=True):
        if y is None:
            assert x is None or not x.any(), name
        else:
            assert rel(x, y) < 1e-12, name
