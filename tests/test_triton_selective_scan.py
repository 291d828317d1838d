"""Triton selective scan (Mamba-1) against the per-step float64 oracle and the chunked reference.

Runs on CUDA, or on the CPU under TRITON_INTERPRET=1 (CI; tests/conftest.py sets it when no GPU
is present). Errors are ‖a − b‖ / ‖b‖ against float64; every input is a fresh random draw (never
zeros); forward, last state and every input gradient (u, delta, A, B, C, D, z, delta_bias,
initial_state) are checked, with a random gradient on the last state too.

Real A with time-varying or grouped B/C runs the time-sequential kernels forward and backward; the
tests at the end check that backward in particular: lengths odd and not multiples of the tile (4
steps under the interpreter) or of the checkpoint interval (8), several channel blocks per group
(their ḡB/ḡC partials are summed), 1 to 4 time segments (the reverse carry of the adjoint), the last
state's gradient present or absent, and agreement with the chunked (v1) backward. Complex A with
time-varying/grouped B/C runs the same time-sequential backward (tests at the end, and the complex
forward tests, which check every gradient): the spies ``fwd_calls`` / ``seq_calls`` assert which
kernels ran.
"""

from __future__ import annotations

import os

import pytest
import torch

from seqssm.ops.reference.recurrence import selective_scan_naive
from seqssm.ops.reference.selective_scan import selective_scan_ref

if not (torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"):
    pytest.skip("Triton kernels need CUDA or TRITON_INTERPRET=1", allow_module_level=True)

import seqssm.kernels.selective_scan as kern  # noqa: E402
import seqssm.kernels.selective_scan_bwd_seq as bwd_mod  # noqa: E402
import seqssm.kernels.selective_scan_seq as seq  # noqa: E402
from seqssm.kernels.selective_scan import selective_scan_triton  # noqa: E402

DEV = "cuda" if torch.cuda.is_available() else "cpu"
TOL = {torch.float32: 2e-5, torch.bfloat16: 1.5e-2, torch.float16: 5e-3}
NAMES = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias", "initial_state"]


def split_to_max_seg(cfg: dict, monkeypatch) -> None:
    """As many time segments as max_seg allows, whatever the device's resident slots (on a GPU too)."""
    for key in ("blocks_per_sm", "bwd_blocks_per_sm", "cplx_blocks_per_sm"):
        monkeypatch.setitem(cfg, key, 1 << 30)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.is_complex() or b.is_complex():
        a, b = torch.view_as_real(a.to(torch.complex128)), torch.view_as_real(b.to(torch.complex128))
    a, b = a.double(), b.double()
    assert torch.isfinite(a).all()
    return ((a - b).norm() / b.norm()).item()


def make(batch, dim, N, L, *, cplx=False, bc="var", groups=2, optional=True, seed=None):
    """float64 inputs in mamba_ssm's layouts. bc: "var" (batch, N, L), "group" (batch, groups, N, L)
    or "ti" (dim, N). Δ's pre-activation straddles softplus' knee; Re A < 0."""
    g = torch.Generator().manual_seed(seed if seed is not None else int(torch.randint(0, 2**31, (1,))))
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)
    ct = torch.complex128
    A = -(torch.rand(dim, N, generator=g, dtype=torch.float64) + 0.2)
    if cplx:
        A = torch.complex(A, 3 * r(dim, N))
    Lb = 2 * L if cplx else L
    if bc == "ti":
        B, C = (torch.complex(r(dim, N), r(dim, N)) if cplx else r(dim, N) for _ in range(2))
    elif bc == "group":
        B, C = r(batch, groups, N, Lb), r(batch, groups, N, Lb)
    else:
        B, C = r(batch, N, Lb), r(batch, N, Lb)
    d = {"u": r(batch, dim, L), "delta": r(batch, dim, L) - 1.0, "A": A, "B": B, "C": C,
         "D": None, "z": None, "delta_bias": None, "initial_state": None}
    if optional:
        d.update(D=r(dim), z=r(batch, dim, L), delta_bias=0.3 * r(dim),
                 initial_state=torch.complex(r(batch, dim, N), r(batch, dim, N)).to(ct) if cplx
                 else r(batch, dim, N))
    return d


def to_kernel(d: dict, dtype: torch.dtype) -> dict:
    """Activations (u, delta, z, B, C time-varying) in ``dtype``; parameters and the state fp32."""
    out = {}
    for k, v in d.items():
        if v is None:
            out[k] = None
            continue
        if v.is_complex():
            v = v.to(torch.complex64)
        elif k in ("u", "delta", "z") or (k in ("B", "C") and v.dim() > 2):
            v = v.to(dtype)
        else:
            v = v.float()
        out[k] = v.to(DEV).requires_grad_()
    return out


def run_both(d64: dict, dtype: torch.dtype, softplus: bool = True):
    """(kernel outputs, kernel grads, oracle outputs, oracle grads, names) with the oracle fed the
    kernel's (rounded) inputs in float64."""
    dk = to_kernel(d64, dtype)
    names = [k for k in NAMES if dk[k] is not None]
    do = {k: (None if v is None else v.detach().cpu().to(
        torch.complex128 if v.is_complex() else torch.float64).requires_grad_()) for k, v in dk.items()}
    args = lambda d: [d[k] for k in NAMES[:8]]
    out, last = selective_scan_triton(*args(dk), softplus, dk["initial_state"])
    ref, ref_last = selective_scan_naive(*args(do), softplus, do["initial_state"])
    g_out = torch.randn_like(ref)
    g_last = torch.randn_like(ref_last)
    grads = torch.autograd.grad((out, last), [dk[k] for k in names],
                                (g_out.to(DEV, out.dtype), g_last.to(DEV, last.dtype)))
    grads_ref = torch.autograd.grad((ref, ref_last), [do[k] for k in names], (g_out, g_last))
    return (out, last), dict(zip(names, grads, strict=True)), (ref, ref_last), dict(zip(names, grads_ref, strict=True))


def check(d64, dtype=torch.float32, softplus=True, tol=None):
    tol = tol or TOL[dtype]
    (out, last), grads, (ref, ref_last), grads_ref = run_both(d64, dtype, softplus)
    errs = {"out": rel(out.cpu(), ref), "last_state": rel(last.cpu(), ref_last)}
    errs.update({f"d{k}": rel(grads[k].cpu(), grads_ref[k]) for k in grads})
    bad = {k: v for k, v in errs.items() if not v < tol}
    assert not bad, f"relative errors over {tol}: {bad} (all: {errs})"
    return errs


@pytest.mark.parametrize(
    "batch,dim,N,L,bc",
    [(1, 8, 4, 37, "var"), (2, 8, 5, 29, "group"), (2, 4, 3, 23, "ti"), (2, 4, 16, 17, "var"),
     (1, 4, 4, 1, "var")],
)
def test_real_fp32(batch, dim, N, L, bc):
    check(make(batch, dim, N, L, bc=bc))


@pytest.fixture
def fwd_calls(monkeypatch):
    """Records ``cplx`` of each call of the time-sequential forward (so a test knows which forward ran)."""
    calls = []

    def spy(*a, **k):
        calls.append(k.get("cplx", False))
        return seq.fwd_seq(*a, **k)

    monkeypatch.setattr(kern, "fwd_seq", spy)
    return calls


@pytest.mark.parametrize("batch,dim,N,L,bc", [(1, 4, 4, 31, "var"), (2, 4, 3, 19, "ti"),
                                              (2, 8, 2, 13, "group")])
def test_complex_fp32(batch, dim, N, L, bc, fwd_calls, seq_calls):
    """Time-varying B/C: the time-sequential forward and backward; time-invariant: the chunked kernels."""
    check(make(batch, dim, N, L, cplx=True, bc=bc))
    assert fwd_calls == ([] if bc == "ti" else [True])
    assert seq_calls == ([] if bc == "ti" else [True])


@pytest.mark.parametrize("max_seg", [1, 3])
def test_complex_seq_segments(max_seg, monkeypatch, fwd_calls, seq_calls):
    """Complex A, time-sequential forward and backward with 1 or 3 time segments (complex carries
    exp(A ΣΔ) forward and conj(exp(A ΣΔ)) for the adjoint), grouped B/C, odd L: out, last state and all
    gradients (with the last state's) against the oracle."""
    cfg = seq.config(torch.device(DEV))
    monkeypatch.setitem(cfg, "max_seg", max_seg)
    split_to_max_seg(cfg, monkeypatch)
    check(make(2, 8, 4, 45, cplx=True, bc="group"))
    assert fwd_calls == [True]
    assert seq_calls == [True]


@pytest.mark.parametrize("t_fwd,t_bwd", [(4, 2), (2, 1)])
def test_complex_steps_per_tile(t_fwd, t_bwd, monkeypatch, fwd_calls, seq_calls):
    """The complex forward and backward at the steps per tile measured on the GPU (the defaults are the
    second pair), with 3 time segments: out, last state and all gradients against the oracle."""
    cfg = seq.config(torch.device(DEV))
    monkeypatch.setitem(cfg, "T_cplx", t_fwd)
    monkeypatch.setitem(cfg, "bwd_T_cplx", t_bwd)
    monkeypatch.setitem(cfg, "max_seg", 3)
    split_to_max_seg(cfg, monkeypatch)
    check(make(2, 8, 4, 45, cplx=True, bc="group"))
    assert fwd_calls == [True] and seq_calls == [True]


def test_complex_seq_no_optional(fwd_calls):
    """Complex A without D, z, delta_bias, initial_state, no softplus; out only (no gradient)."""
    d = make(1, 4, 5, 27, cplx=True, optional=False)
    d["delta"] = d["delta"].abs() * 0.3
    dk = to_kernel(d, torch.float32)
    with torch.no_grad():
        out, last = selective_scan_triton(*[dk[k] for k in NAMES[:8]], False, None)
    ref, ref_last = selective_scan_naive(*[d[k] for k in NAMES[:8]], False, None)
    assert rel(out.cpu(), ref) < 2e-5 and rel(last.cpu(), ref_last) < 2e-5
    assert fwd_calls == [True]


def test_no_optional_inputs():
    """D, z, delta_bias, initial_state absent, no softplus (delta made positive)."""
    d = make(2, 4, 4, 21, optional=False)
    d["delta"] = d["delta"].abs() * 0.3
    check(d, softplus=False)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_inputs(dtype):
    check(make(2, 8, 4, 33), dtype=dtype)


def test_matches_chunked_reference():
    d = make(2, 8, 4, 45, bc="group")
    dk = to_kernel(d, torch.float32)
    args = [dk[k] for k in NAMES[:8]]
    out, last = selective_scan_triton(*args, True, dk["initial_state"])
    ref, ref_last = selective_scan_ref(*[None if a is None else a.detach().cpu() for a in args], True,
                                       dk["initial_state"].detach().cpu())
    assert rel(out.cpu(), ref) < 2e-5 and rel(last.cpu(), ref_last) < 2e-5


@pytest.mark.parametrize("cplx", [False, True])
def test_state_passing_split(cplx, seq_calls):
    """One pass == two passes joined by the state, forward and backward (through the state)."""
    L = 41
    split = int(torch.randint(1, L - 1, (1,)))
    d = to_kernel(make(2, 4, 4, L, cplx=cplx), torch.float32)
    args = lambda sl: [d["u"][..., sl], d["delta"][..., sl], d["A"], _slice_bc(d["B"], sl, cplx),
                       _slice_bc(d["C"], sl, cplx), d["D"], d["z"][..., sl], d["delta_bias"]]
    full, full_last = selective_scan_triton(*args(slice(None)), True, d["initial_state"])
    y1, h1 = selective_scan_triton(*args(slice(0, split)), True, d["initial_state"])
    y2, h2 = selective_scan_triton(*args(slice(split, None)), True, h1)
    assert rel(torch.cat([y1, y2], -1).cpu(), full.detach().cpu()) < 2e-6
    assert rel(h2.cpu(), full_last.detach().cpu()) < 2e-6
    leaves = [d[k] for k in NAMES]
    g = torch.randn_like(full)
    ga = torch.autograd.grad(full, leaves, g)
    gb = torch.autograd.grad(torch.cat([y1, y2], -1), leaves, g)
    for name, a, b in zip(NAMES, gb, ga, strict=True):
        assert rel(a.cpu(), b.cpu()) < 1e-5, name
    assert seq_calls == [cplx] * 3  # the time-sequential backward ran for the full and both halves


def _slice_bc(M, sl, cplx):
    if not cplx:
        return M[..., sl]
    return M.unflatten(-1, (-1, 2))[..., sl, :].flatten(-2)


@pytest.mark.slow
@pytest.mark.parametrize("L", [257, 1000])
def test_long(L):
    check(make(2, 16, 16, L, bc="group"))


@pytest.mark.parametrize("max_seg", [1, 3])
def test_seq_forward_segments(max_seg, monkeypatch):
    """The time-sequential forward gives the same out / last state with one segment or several."""
    import seqssm.kernels.selective_scan_seq as seq

    cfg = seq.config(torch.device(DEV))
    monkeypatch.setitem(cfg, "max_seg", max_seg)
    split_to_max_seg(cfg, monkeypatch)
    d = make(2, 8, 4, 45, bc="group")
    dk = to_kernel(d, torch.float32)
    with torch.no_grad():
        out, last = selective_scan_triton(*[dk[k] for k in NAMES[:8]], True, dk["initial_state"])
    ref, ref_last = selective_scan_naive(*[d[k] for k in NAMES[:8]], True, d["initial_state"])
    assert rel(out.cpu(), ref) < 2e-5 and rel(last.cpu(), ref_last) < 2e-5


# --- time-sequential backward (kernels/selective_scan_bwd_seq.py) ---


@pytest.fixture
def seq_calls(monkeypatch):
    """Records ``cplx`` of each call of the time-sequential backward (so a test knows which backward ran)."""
    calls = []

    def spy(*a, **k):
        calls.append(k.get("cplx", False))
        return seq.bwd_seq(*a, **k)

    monkeypatch.setattr(kern, "bwd_seq", spy)
    return calls


@pytest.mark.parametrize(
    "batch,dim,N,L,bc,groups",
    [(1, 64, 3, 21, "var", 1), (2, 64, 2, 13, "group", 2), (2, 4, 16, 19, "var", 1)],
)
def test_against_oracle(batch, dim, N, L, bc, groups, seq_calls):
    """All gradients, with D, z, delta_bias, initial_state and the last state's gradient."""
    check(make(batch, dim, N, L, bc=bc, groups=groups))
    assert seq_calls


@pytest.mark.parametrize("max_seg", [1, 3])
def test_segments(max_seg, monkeypatch, seq_calls):
    """Same gradients with one time segment or several (carry of μ across segments, REVERSE)."""
    cfg = seq.config(torch.device(DEV))
    monkeypatch.setitem(cfg, "max_seg", max_seg)
    split_to_max_seg(cfg, monkeypatch)
    check(make(2, 4, 4, 37, bc="group"))
    assert seq_calls


def test_no_optional_inputs_out_only(seq_calls):
    """No D, z, delta_bias, initial_state; no softplus; only ``out`` is differentiated (no gradient on
    the last state)."""
    d = make(2, 4, 4, 27, optional=False)
    d["delta"] = d["delta"].abs() * 0.3
    dk = to_kernel(d, torch.float32)
    d64 = {k: (None if v is None else v.detach().clone().requires_grad_()) for k, v in d.items()}
    out, _ = selective_scan_triton(*[dk[k] for k in NAMES[:8]], False, None)
    ref, _ = selective_scan_naive(*[d64[k] for k in NAMES[:8]], False, None)
    go = torch.randn_like(ref)
    ga = torch.autograd.grad(out, [dk[k] for k in NAMES[:5]], go.to(DEV, torch.float32))
    gr = torch.autograd.grad(ref, [d64[k] for k in NAMES[:5]], go)
    for name, a, b in zip(NAMES[:5], ga, gr, strict=True):
        assert rel(a.cpu(), b) < 2e-5, name
    assert seq_calls


@pytest.mark.parametrize("cplx", [False, True])
def test_last_state_only(cplx, seq_calls):
    """Only the last state is differentiated (``out``'s gradient is None: zeros); real and complex A."""
    d = make(1, 4, 4, 23, cplx=cplx)
    dk = to_kernel(d, torch.float32)
    d64 = {k: v.detach().clone().requires_grad_() for k, v in d.items()}
    _, last = selective_scan_triton(*[dk[k] for k in NAMES[:8]], True, dk["initial_state"])
    _, ref_last = selective_scan_naive(*[d64[k] for k in NAMES[:8]], True, d64["initial_state"])
    gl = torch.randn_like(ref_last)
    ga = torch.autograd.grad(last, [dk[k] for k in NAMES], gl.to(DEV, last.dtype), allow_unused=True)
    gr = torch.autograd.grad(ref_last, [d64[k] for k in NAMES], gl, allow_unused=True)
    for name, a, b in zip(NAMES, ga, gr, strict=True):
        if b is None or not b.abs().sum():
            continue
        assert rel(a.cpu(), b) < 2e-5, name
    assert seq_calls == [cplx]


@pytest.mark.parametrize("cplx", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_matches_chunked_backward(dtype, cplx, monkeypatch, seq_calls):
    """The time-sequential and the chunked (v1) backward give the same gradients (real and complex A)."""
    d = to_kernel(make(2, 4, 4, 21, cplx=cplx, bc="group"), dtype)
    args = [d[k] for k in NAMES[:8]]
    g_out = torch.randn(2, 4, 21, device=DEV, dtype=dtype)
    g_last = torch.randn(2, 4, 4, device=DEV, dtype=torch.complex64 if cplx else torch.float32)
    res = {}
    for v2 in (True, False):
        monkeypatch.setattr(kern, "SEQ_BACKWARD", v2)
        out, last = selective_scan_triton(*args, True, d["initial_state"])
        res[v2] = torch.autograd.grad((out, last), [d[k] for k in NAMES], (g_out, g_last))
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    for name, a, b in zip(NAMES, res[True], res[False], strict=True):
        assert rel(a.cpu(), b.cpu()) < tol, name
    assert seq_calls == [cplx]


# --- time-sequential backward, complex A ---


@pytest.mark.parametrize("batch,dim,N,L,bc,groups", [(1, 128, 3, 17, "var", 1), (2, 8, 4, 23, "group", 2)])
def test_complex_bwd_against_oracle(batch, dim, N, L, bc, groups, seq_calls):
    """Complex A, all gradients (u, delta, A, B, C, D, z, delta_bias, initial_state) with the last state's
    gradient, odd L (not a multiple of the tile or the checkpoint interval); dim 128: two channel blocks
    (of 64 under the interpreter) add into the same ḡB/ḡC entries."""
    check(make(batch, dim, N, L, cplx=True, bc=bc, groups=groups))
    assert seq_calls == [True]


@pytest.mark.parametrize("cplx", [False, True])
def test_reduce_scatter_sums(cplx, monkeypatch, seq_calls):
    """ḡB, ḡC summed over each warp's 32 channels by the reduce-scatter (kernels/warp_sum.py; N 16, two
    groups of 32 channels, batch 2) against the oracle, and equal to tl.sum's all-reduce path."""
    d = make(2, 64, 16, 19, cplx=cplx, bc="group", groups=2)
    monkeypatch.setattr(bwd_mod, "SCATTER_SUMS", True)
    check(d)
    torch.manual_seed(0)  # the same output gradients for both runs
    _, grads, _, _ = run_both(d, torch.float32, True)
    monkeypatch.setattr(bwd_mod, "SCATTER_SUMS", False)
    torch.manual_seed(0)
    _, grads_sum, _, _ = run_both(d, torch.float32, True)
    for k in ("B", "C"):
        assert rel(grads[k].cpu(), grads_sum[k].cpu()) < 1e-6, k
    assert seq_calls == [cplx] * 3


def laid_out(t: torch.Tensor, layout: str) -> torch.Tensor:
    """A leaf equal to t (batch, dim, L) with the strides of ``layout``: "batch_inner" (mamba_ssm's (dim,
    batch·L) product viewed as (batch, dim, L)), "channels_last" (a transposed (batch, L, dim)), or as is."""
    t = t.detach()
    if layout == "batch_inner":
        t = t.permute(1, 0, 2).contiguous().permute(1, 0, 2)
    elif layout == "channels_last":
        t = t.transpose(1, 2).contiguous().transpose(1, 2)
    return t.requires_grad_()


@pytest.mark.parametrize("u_layout,other_layout", [("batch_inner", "batch_inner"), ("batch_inner", "contiguous"),
                                                   ("contiguous", "channels_last"), ("channels_last", "batch_inner")])
def test_input_layouts(u_layout, other_layout, seq_calls):
    """u, delta, z in other layouts than contiguous: the time-sequential kernels read u's layout in place when
    its positions are adjacent and its rows dense (delta and z brought to it), else a copy; same results."""
    d64 = make(2, 8, 4, 19, bc="group")
    dk = to_kernel(d64, torch.float32)
    for k in ("u", "delta", "z"):
        dk[k] = laid_out(dk[k], u_layout if k == "u" else other_layout)
    names = [k for k in NAMES if dk[k] is not None]
    do = {k: (None if v is None else v.detach().cpu().double().requires_grad_()) for k, v in dk.items()}
    args = lambda d: [d[k] for k in NAMES[:8]]
    out, last = selective_scan_triton(*args(dk), True, dk["initial_state"])
    ref, ref_last = selective_scan_naive(*args(do), True, do["initial_state"])
    g_out, g_last = torch.randn_like(ref), torch.randn_like(ref_last)
    grads = torch.autograd.grad((out, last), [dk[k] for k in names], (g_out.to(DEV), g_last.to(DEV)))
    grads_ref = torch.autograd.grad((ref, ref_last), [do[k] for k in names], (g_out, g_last))
    errs = {"out": rel(out.cpu(), ref), "last": rel(last.cpu(), ref_last)}
    errs.update({f"d{k}": rel(g.cpu(), r) for k, g, r in zip(names, grads, grads_ref, strict=True)})
    assert max(errs.values()) < TOL[torch.float32], errs
    assert seq_calls
    if u_layout == "batch_inner":
        assert kern.rows_layout(dk["u"]).data_ptr() == dk["u"].data_ptr()  # read in place
