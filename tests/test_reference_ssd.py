"""The chunked SSD against the naive per-step float64 recurrence; packing and state passing."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from seqssm.ops import mamba_chunk_scan_combined
from seqssm.ops.reference.recurrence import ssd_naive
from seqssm.ops.reference.ssd import ssd_ref

F64 = torch.float64


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def make(batch, L, heads, p, groups, N, dt_scale=1.0, seed=0, D2=False):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=F64)
    return dict(
        x=r(batch, L, heads, p), dt=r(batch, L, heads) * dt_scale, A=-(torch.rand(heads, generator=g, dtype=F64)
                                                                      * 3 + 0.2),
        B=r(batch, L, groups, N), C=r(batch, L, groups, N), D=r(heads, p) if D2 else r(heads),
        z=r(batch, L, heads, p), dt_bias=r(heads) * 0.5, initial_states=r(batch, heads, p, N),
    )


@pytest.mark.parametrize("L,batch,chunk", [(1, 1, 8), (37, 2, 8), (64, 1, 16), (131, 2, 32)])
@pytest.mark.parametrize("groups,D2", [(1, False), (2, True)])
@pytest.mark.parametrize("dt_scale", [1.0, 300.0])
def test_matches_naive(L, batch, chunk, groups, D2, dt_scale):
    a = make(batch, L, 4, 3, groups, 5, dt_scale, D2=D2)
    core = (a["x"], a["dt"], a["A"], a["B"], a["C"])
    out, h, _ = ssd_ref(*core, chunk, a["D"], a["z"], a["dt_bias"], a["initial_states"], None, True)
    ref_out, ref_h = ssd_naive(*core, a["D"], a["z"], a["dt_bias"], True, a["initial_states"])
    assert torch.isfinite(out).all() and rel(out, ref_out) < 1e-10 and rel(h, ref_h) < 1e-10
    core = (a["x"], a["dt"].abs(), a["A"], a["B"], a["C"])  # no softplus: keep Δ >= 0 (decaying)
    out, h, _ = ssd_ref(*core, chunk, dt_softplus=False, dt_limit=(0.0, float("inf")), seq_idx=None,
                        D=None, z=None, dt_bias=None, initial_states=None)
    ref_out, ref_h = ssd_naive(*core)
    assert rel(out, ref_out) < 1e-10 and rel(h, ref_h) < 1e-10


def test_dt_limit():
    a = make(1, 50, 2, 3, 1, 4)
    core = (a["x"], a["dt"], a["A"], a["B"], a["C"])
    out, _, _ = ssd_ref(*core, 16, dt_bias=a["dt_bias"], dt_softplus=True, dt_limit=(0.1, 0.5))
    dt = F.softplus(a["dt"] + a["dt_bias"]).clamp(0.1, 0.5)
    ref, _ = ssd_naive(a["x"], dt, a["A"], a["B"], a["C"])
    assert rel(out, ref) < 1e-10


def test_seq_idx_packing_equals_each_sequence_alone_and_varlen_states():
    lens = [5, 17, 1, 23]
    a = make(1, sum(lens), 4, 3, 2, 5, dt_scale=1.0, seed=1)
    cu = torch.tensor([0] + lens).cumsum(0)
    seq_idx = torch.repeat_interleave(torch.arange(len(lens)), torch.tensor(lens))[None].int()
    core = (a["x"], a["dt"], a["A"], a["B"], a["C"])
    out, final, varlen = ssd_ref(*core, 8, a["D"], a["z"], a["dt_bias"], None, seq_idx, True,
                                 cu_seqlens=cu, varlen_states=True)
    for i in range(len(lens)):
        sl = slice(int(cu[i]), int(cu[i + 1]))
        piece = (t if t.dim() == 1 else t[:, sl] for t in core)
        alone, h_alone = ssd_naive(*piece, a["D"], a["z"][:, sl], a["dt_bias"], True)
        assert rel(out[:, sl], alone) < 1e-10
        assert rel(varlen[i], h_alone[0]) < 1e-10
    assert rel(final, varlen[-1:]) < 1e-12
    # the naive recurrence with seq_idx agrees too, and cu_seqlens alone implies the same seq_idx
    ref, _ = ssd_naive(*core, a["D"], a["z"], a["dt_bias"], True, None, seq_idx)
    assert rel(out, ref) < 1e-10
    out2, _, varlen2 = ssd_ref(*core, 8, a["D"], a["z"], a["dt_bias"], None, None, True, cu_seqlens=cu,
                               varlen_states=True)
    assert rel(out2, out) < 1e-14 and rel(varlen2, varlen) < 1e-14


def test_seq_idx_batch_with_initial_states():
    a = make(2, 45, 2, 3, 1, 4, seed=2)
    seq_idx = torch.sort(torch.randint(0, 4, (2, 45), generator=torch.Generator().manual_seed(0)), -1).values
    core = (a["x"], a["dt"], a["A"], a["B"], a["C"])
    out, h, _ = ssd_ref(*core, 16, a["D"], None, None, a["initial_states"], seq_idx, True)
    ref, ref_h = ssd_naive(*core, a["D"], None, None, True, a["initial_states"], seq_idx)
    assert rel(out, ref) < 1e-10 and rel(h, ref_h) < 1e-10


def test_gradcheck():
    a = make(1, 11, 2, 2, 1, 3, seed=3, D2=True)
    names = ["x", "dt", "A", "B", "C", "D", "z", "dt_bias", "initial_states"]
    inputs = [a[k].clone().requires_grad_() for k in names]

    def f(x, dt, A, B, C, D, z, dt_bias, h0):
        out, h, _ = ssd_ref(x, dt, A, B, C, 4, D, z, dt_bias, h0, None, True)
        return out, h

    assert torch.autograd.gradcheck(f, inputs, atol=1e-7, rtol=1e-6)


def test_split_with_state_equals_one_pass():
    a = make(2, 77, 4, 3, 2, 5, seed=4)
    cut = 30
    leaves = {k: v.clone().requires_grad_() for k, v in a.items()}
    seq_keys = ("x", "dt", "B", "C", "z")

    def part(sl, h0):
        t = {k: (v[:, sl] if k in seq_keys else v) for k, v in leaves.items()}
        out, h, _ = ssd_ref(t["x"], t["dt"], t["A"], t["B"], t["C"], 16, t["D"], t["z"], t["dt_bias"], h0,
                            None, True)
        return out, h

    full, h_full = part(slice(None), leaves["initial_states"])
    o1, h1 = part(slice(0, cut), leaves["initial_states"])
    o2, h2 = part(slice(cut, None), h1)
    split = torch.cat([o1, o2], 1)
    assert rel(split, full) < 1e-12 and rel(h2, h_full) < 1e-12
    w = torch.randn_like(full)
    for gf, gs in zip(torch.autograd.grad((full * w).sum(), list(leaves.values())),
                      torch.autograd.grad((split * w).sum(), list(leaves.values())), strict=True):
        assert rel(gs, gf) < 1e-10


def test_public_function_returns():
    a = make(1, 20, 2, 3, 1, 4)
    x = a["x"].float()
    out, final = mamba_chunk_scan_combined(x, a["dt"].float(), a["A"].float(), a["B"].float(), a["C"].float(), 8,
                                           return_final_states=True, backend="reference")
    assert out.dtype == torch.float32 and final.shape == (1, 2, 3, 4)
