"""Rotary SSD (Mamba-3-style complex state through rotated B and C) against a naive complex128
recurrence: forward, gradients, state passing, packing, the decode step, and the Triton path under the
interpreter."""

from __future__ import annotations

import math
import os

import pytest
import torch

from seqssm.ops.reference.recurrence import rotary_ssd_naive
from seqssm.ops.rotary_ssd import cumulative_angles, mamba_chunk_scan_rotary, rotary_state_update, rotate_bc

F64 = torch.float64


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def make(batch, L, heads, p, groups, N, R, seed=0, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=F64).to(dtype)  # noqa: E731
    return dict(
        x=r(batch, L, heads, p),
        dt=r(batch, L, heads),
        A=-(torch.rand(heads, generator=g, dtype=F64) * 2 + 0.2).to(dtype),
        B=r(batch, L, groups, N),
        C=r(batch, L, groups, N),
        theta=r(batch, L, R) * 3,
        D=r(heads),
        dt_bias=r(heads) * 0.5,
        initial_states=r(batch, heads, p, N),
    )


def run(a, chunk, backend="reference", initial=True):
    return mamba_chunk_scan_rotary(
        a["x"],
        a["dt"],
        a["A"],
        a["B"],
        a["C"],
        a["theta"],
        chunk,
        D=a["D"],
        dt_bias=a["dt_bias"],
        initial_states=a["initial_states"] if initial else None,
        dt_softplus=True,
        return_final_states=True,
        backend=backend,
    )


def naive(a, initial=True):
    return rotary_ssd_naive(
        a["x"],
        a["dt"],
        a["A"],
        a["B"],
        a["C"],
        a["theta"],
        a["D"],
        a["dt_bias"],
        True,
        a["initial_states"] if initial else None,
    )


@pytest.mark.parametrize(
    "L,chunk,groups,N,R", [(1, 8, 1, 4, 1), (37, 8, 2, 6, 2), (64, 16, 1, 8, 4), (300, 32, 4, 4, 1)]
)
def test_forward_matches_complex_recurrence(L, chunk, groups, N, R):
    a = make(2, L, 4, 3, groups, N, R)
    out, h = run(a, chunk)
    ref_out, ref_h = naive(a)
    assert rel(out, ref_out) < 1e-10 and rel(h, ref_h) < 1e-10


def test_rotation_matters():
    """The same inputs with theta = 0 give a different answer: the rotation is not a no-op."""
    a = make(1, 40, 2, 3, 1, 4, 2)
    out, _ = run(a, 16)
    a0 = dict(a, theta=torch.zeros_like(a["theta"]))
    out0, _ = run(a0, 16)
    assert rel(out0, out) > 0.05


def test_gradients_match_complex_recurrence():
    a = make(2, 29, 2, 3, 1, 6, 2, seed=1)
    names = ["x", "dt", "A", "B", "C", "theta", "D", "dt_bias", "initial_states"]
    ins = {k: a[k].clone().requires_grad_(k in names) for k in a}
    out, h = run(ins, 8)
    g = torch.Generator().manual_seed(5)
    wo, wh = torch.randn(out.shape, generator=g, dtype=F64), torch.randn(h.shape, generator=g, dtype=F64)
    ours = torch.autograd.grad((out * wo).sum() + (h * wh).sum(), [ins[k] for k in names])
    ref_ins = {k: a[k].clone().requires_grad_(k in names) for k in a}
    ro, rh = naive(ref_ins)
    theirs = torch.autograd.grad((ro * wo).sum() + (rh * wh).sum(), [ref_ins[k] for k in names])
    for k, x, y in zip(names, ours, theirs, strict=True):
        assert rel(x, y) < 1e-9, k


def test_state_passing_at_a_split():
    a = make(2, 53, 2, 3, 1, 8, 3, seed=2)
    full, h_full = run(a, 16)
    s = 22
    first = {k: (v[:, :s] if k in ("x", "dt", "B", "C", "theta") else v) for k, v in a.items()}
    out1, h1 = run(first, 16)
    second = {k: (v[:, s:] if k in ("x", "dt", "B", "C", "theta") else v) for k, v in a.items()}
    second["initial_states"] = h1
    out2, h2 = run(second, 16)
    assert rel(torch.cat([out1, out2], 1), full) < 1e-12 and rel(h2, h_full) < 1e-12


def test_packed_sequences_equal_separate_runs():
    a = make(1, 45, 2, 3, 1, 4, 2, seed=3)
    cut = 17
    seq_idx = (torch.arange(45) >= cut).to(torch.int32)[None]
    packed = mamba_chunk_scan_rotary(
        a["x"],
        a["dt"],
        a["A"],
        a["B"],
        a["C"],
        a["theta"],
        16,
        D=a["D"],
        dt_bias=a["dt_bias"],
        seq_idx=seq_idx,
        dt_softplus=True,
    )
    parts = []
    for sl in (slice(0, cut), slice(cut, 45)):
        piece = {k: (v[:, sl] if k in ("x", "dt", "B", "C", "theta") else v) for k, v in a.items()}
        parts.append(run(piece, 16, initial=False)[0])
    assert rel(packed, torch.cat(parts, 1)) < 1e-12


def test_decode_steps_equal_the_chunked_scan():
    a = make(2, 21, 4, 3, 2, 6, 3, seed=4)
    out, h = run(a, 8)
    state = a["initial_states"].clone()
    ys = []
    for t in range(21):
        ys.append(
            rotary_state_update(
                state,
                a["x"][:, t],
                a["dt"][:, t],
                a["A"],
                a["B"][:, t],
                a["C"][:, t],
                a["theta"][:, t],
                a["D"],
                a["dt_bias"],
                True,
                backend="reference",
            )
        )
    assert rel(torch.stack(ys, 1), out) < 1e-12 and rel(state, h) < 1e-12


def test_long_angles_stay_accurate():
    """Blockwise angle sums with a wrapped float64 offset: the fp32 angles of a 20K-step sequence
    agree with a float64 cumsum to 1e-4 rad modulo 2π."""
    g = torch.Generator().manual_seed(6)
    delta = torch.rand(1, 20_000, 2, generator=g, dtype=F64) * 0.2
    theta = torch.randn(1, 20_000, 3, generator=g, dtype=F64) * 4
    exact = (delta[..., None] * theta[:, :, None]).cumsum(1)
    fp32 = cumulative_angles(delta.float(), theta.float()).double()
    wrapped = torch.remainder(fp32 - exact + math.pi, 2 * math.pi) - math.pi
    assert wrapped.abs().max() < 1e-4


@pytest.mark.skipif(
    not (torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"),
    reason="Triton kernels need CUDA or TRITON_INTERPRET=1",
)
def test_triton_matches_reference():
    """The rotated B and C run through the Triton SSD kernels (the interpreter in CI): forward and
    gradients against the reference path (fp32; tf32 tensor-core dots on a GPU)."""
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    tol = 5e-3 if dev == "cuda" else 1e-5
    a = {k: v.to(dev) for k, v in make(2, 45, 2, 4, 1, 8, 2, seed=7, dtype=torch.float32).items()}
    names = ["x", "dt", "B", "C", "theta", "initial_states"]
    results = []
    for backend in ("reference", "triton"):
        ins = {k: a[k].clone().requires_grad_(k in names) for k in a}
        out, h = run(ins, 16, backend=backend)
        loss = (out * torch.linspace(-1, 1, out.numel(), device=dev).view_as(out)).sum() + (h * 0.3).sum()
        results.append((out, h, torch.autograd.grad(loss, [ins[k] for k in names])))
    (o1, h1, g1), (o2, h2, g2) = results
    assert rel(o2, o1) < tol and rel(h2, h1) < tol
    for k, x, y in zip(names, g2, g1, strict=True):
        assert rel(x, y) < 10 * tol, k


def wrapped(a: torch.Tensor) -> torch.Tensor:
    """Angles into [-π, π)."""
    return torch.remainder(a + math.pi, 2 * math.pi) - math.pi


@pytest.mark.skipif(
    not (torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"),
    reason="Triton kernels need CUDA or TRITON_INTERPRET=1",
)
@pytest.mark.parametrize(
    "L,heads,groups,N,R", [(45, 4, 2, 8, 2), (100, 4, 2, 6, 3), (70, 2, 1, 6, 3), (97, 3, 1, 4, 2), (1, 3, 1, 5, 1)]
)
@pytest.mark.parametrize("split", [None, 1])
def test_triton_prepass_matches_reference(L, heads, groups, N, R, split, monkeypatch):
    """kernels/rotary_bc.py (angles in blocks of 32 positions, rotation, Θ_L) against the float64
    PyTorch pre-pass on the same fp32 inputs: B', C', Θ_L (modulo 2π) and the gradients of B, C, Δ and θ,
    through B', C' and Θ_L. L spans several blocks, not a multiple of 32; groups < heads; N - 2R > 0 or 0.
    split=1: every head of a group in one backward program (summed in registers), as at long L on a GPU;
    None: the default split (one head per program at these small sizes)."""
    if split is not None:
        from seqssm.kernels import rotary_bc

        monkeypatch.setattr(rotary_bc, "head_split", lambda heads_per_group, programs: split)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    g = torch.Generator().manual_seed(8)
    r = lambda *s: torch.randn(*s, generator=g).to(dev)  # noqa: E731
    ins = dict(B=r(2, L, groups, N), C=r(2, L, groups, N), delta=r(2, L, heads).abs(), theta=r(2, L, R) * 2)
    wb, wc, wl = r(2, L, heads, N), r(2, L, heads, N), r(2, heads, R)
    results = []
    for backend, dtype in (("reference", F64), ("triton", torch.float32)):
        lv = {k: v.to(dtype).requires_grad_() for k, v in ins.items()}
        b, c, last = rotate_bc(lv["B"], lv["C"], lv["delta"], lv["theta"], backend)
        loss = (b * wb.to(dtype)).sum() + (c * wc.to(dtype)).sum() + (last * wl.to(dtype)).sum()
        results.append((b.double(), c.double(), last.double(), torch.autograd.grad(loss, list(lv.values()))))
    (b1, c1, l1, g1), (b2, c2, l2, g2) = results
    assert rel(b2, b1) < 1e-5 and rel(c2, c1) < 1e-5
    assert wrapped(l2 - l1).abs().max() < 5e-5
    for k, x, y in zip(ins, g2, g1, strict=True):
        assert rel(x.double(), y) < 1e-5, k


@pytest.mark.skipif(
    not (torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"),
    reason="Triton kernels need CUDA or TRITON_INTERPRET=1",
)
def test_triton_long_angles_stay_accurate():
    """The Triton angles of a 20K-step sequence (fp32 sums of 32 steps, float64 block offsets wrapped
    mod 2π) agree with a float64 cumsum to 1e-4 rad modulo 2π at every position: B = (1, 0) pairs turn
    into (cos Θ, -sin Θ), so Θ_t is read back from B'."""
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    g = torch.Generator().manual_seed(6)
    L, heads, R = 20_000, 1, 3
    delta = torch.rand(1, L, heads, generator=g, dtype=F64) * 0.2
    theta = torch.randn(1, L, R, generator=g, dtype=F64) * 4
    exact = (delta[..., None] * theta[:, :, None]).cumsum(1)
    B = torch.zeros(1, L, 1, 2 * R, device=dev)
    B[..., 0::2] = 1
    b, _, last = rotate_bc(B, B, delta.float().to(dev), theta.float().to(dev), "triton")
    angle = torch.atan2(-b[..., 1::2], b[..., 0::2]).double().cpu()
    assert wrapped(angle - exact).abs().max() < 1e-4
    assert wrapped(last.double().cpu() - exact[:, -1]).abs().max() < 1e-4
