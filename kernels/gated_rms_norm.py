"""Mamba-2's gated RMSNorm (mamba_ssm's ``RMSNormGated``), fused forward and backward.

Per row and per group of ``group_size`` channels (Mamba-2 paper, section 7.3: the extra
normalisation before the output projection, with the gate of the block)::

    h = x ⊙ silu(z)  (norm_before_gate=False)   or   h = x  (True, or z absent)
    r = 1 / sqrt(mean_group(h²) + eps),   n = h r
    out = n ⊙ w  (⊙ silu(z) if norm_before_gate)

Backward with dn the gradient of n: dh = r (dn − n mean_group(dn ⊙ n)); then through the gate,
silu'(z) = σ(z)(1 + z(1 − σ(z))); dw = Σ_rows dout ⊙ n (⊙ silu(z)).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _gated_norm_fwd_kernel(
    x_ptr, z_ptr, w_ptr, out_ptr, rstd_ptr, M, D, GS, eps,
    HAS_Z: tl.constexpr, BEFORE_GATE: tl.constexpr, BM: tl.constexpr, BG: tl.constexpr,
):
    rows = tl.program_id(0).to(tl.int64) * BM + tl.arange(0, BM)
    grp = tl.program_id(1)
    cols = grp * GS + tl.arange(0, BG)
    cmask = tl.arange(0, BG) < GS
    m = (rows[:, None] < M) & cmask[None, :]
    off = rows[:, None] * D + cols[None, :]
    h = tl.load(x_ptr + off, mask=m, other=0.0).to(tl.float32)
    if HAS_Z:
        z = tl.load(z_ptr + off, mask=m, other=0.0).to(tl.float32)
        gate = z * tl.sigmoid(z)
        if not BEFORE_GATE:
            h = h * gate
    r = 1.0 / tl.sqrt(tl.sum(h * h, axis=1) / GS + eps)
    w = tl.load(w_ptr + cols, mask=cmask, other=0.0).to(tl.float32)
    out = h * r[:, None] * w[None, :]
    if HAS_Z:
        if BEFORE_GATE:
            out = out * gate
    tl.store(out_ptr + off, out.to(out_ptr.dtype.element_ty), mask=m)
    tl.store(rstd_ptr + rows * (D // GS) + grp, r, mask=rows < M)


@triton.jit
def _gated_norm_bwd_kernel(
    x_ptr, z_ptr, w_ptr, rstd_ptr, dout_ptr, dx_ptr, dz_ptr, dw_ptr, M, D, GS,
    HAS_Z: tl.constexpr, BEFORE_GATE: tl.constexpr, BM: tl.constexpr, BG: tl.constexpr,
):
    pid = tl.program_id(0)
    rows = pid.to(tl.int64) * BM + tl.arange(0, BM)
    grp = tl.program_id(1)
    cols = grp * GS + tl.arange(0, BG)
    cmask = tl.arange(0, BG) < GS
    m = (rows[:, None] < M) & cmask[None, :]
    off = rows[:, None] * D + cols[None, :]
    x = tl.load(x_ptr + off, mask=m, other=0.0).to(tl.float32)
    do = tl.load(dout_ptr + off, mask=m, other=0.0).to(tl.float32)
    w = tl.load(w_ptr + cols, mask=cmask, other=0.0).to(tl.float32)
    r = tl.load(rstd_ptr + rows * (D // GS) + grp, mask=rows < M, other=0.0)
    h = x
    if HAS_Z:
        z = tl.load(z_ptr + off, mask=m, other=0.0).to(tl.float32)
        sg = tl.sigmoid(z)
        gate = z * sg
        dgate = sg * (1.0 + z * (1.0 - sg))
        if not BEFORE_GATE:
            h = x * gate
    n = h * r[:, None]
    if HAS_Z and BEFORE_GATE:
        tl.store(dz_ptr + off, (do * n * w[None, :] * dgate).to(dz_ptr.dtype.element_ty), mask=m)
        do = do * gate
    tl.store(dw_ptr + pid * D + cols, tl.sum(do * n, axis=0), mask=cmask)
    dn = do * w[None, :]
    dh = r[:, None] * (dn - n * (tl.sum(dn * n, axis=1) / GS)[:, None])
    if HAS_Z and not BEFORE_GATE:
        tl.store(dz_ptr + off, (dh * x * dgate).to(dz_ptr.dtype.element_ty), mask=m)
        dh = dh * gate
    tl.store(dx_ptr + off, dh.to(dx_ptr.dtype.element_ty), mask=m)


def _blocks(gs: int) -> tuple[int, int]:
    BG = triton.next_power_of_2(gs)
    return max(1, min(64, 4096 // BG)), BG


def gated_norm_fwd(x2, z2, weight, eps, gs, before_gate):
    M, D = x2.shape
    out = torch.empty_like(x2)
    rstd = torch.empty(M, D // gs, device=x2.device, dtype=torch.float32)
    BM, BG = _blocks(gs)
    _gated_norm_fwd_kernel[(triton.cdiv(M, BM), D // gs)](
        x2, z2 if z2 is not None else x2, weight, out, rstd, M, D, gs, eps,
        HAS_Z=z2 is not None, BEFORE_GATE=before_gate, BM=BM, BG=BG, num_warps=4,
    )
    return out, rstd


def gated_norm_bwd(dout, x2, z2, weight, rstd, gs, before_gate):
    M, D = x2.shape
    BM, BG = _blocks(gs)
    nb = triton.cdiv(M, BM)
    dx = torch.empty_like(x2)
    dz = torch.empty_like(z2) if z2 is not None else None
    dw = torch.empty(nb, D, device=x2.device, dtype=torch.float32)
    _gated_norm_bwd_kernel[(nb, D // gs)](
        x2, z2 if z2 is not None else x2, weight, rstd, dout, dx, dz if dz is not None else dx, dw,
        M, D, gs, HAS_Z=z2 is not None, BEFORE_GATE=before_gate, BM=BM, BG=BG, num_warps=4,
    )
    return dx, dz, dw.sum(0).to(weight.dtype)


class _GatedRMSNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, z, eps, group_size, norm_before_gate):
        shape = x.shape
        D = shape[-1]
        gs = group_size or D
        if D % gs:
            raise ValueError(f"group_size={gs} does not divide {D}")
        x2 = x.reshape(-1, D).contiguous()
        z2 = z.reshape(-1, D).contiguous() if z is not None else None
        out, rstd = gated_norm_fwd(x2, z2, weight.contiguous(), eps, gs, norm_before_gate)
        ctx.save_for_backward(x2, z2, weight, rstd)
        ctx.gs, ctx.before, ctx.shape = gs, norm_before_gate, shape
        return out.view(shape)

    @staticmethod
    def backward(ctx, dout):
        x2, z2, weight, rstd = ctx.saved_tensors
        dout2 = dout.reshape(x2.shape).contiguous()
        dx, dz, dw = gated_norm_bwd(dout2, x2, z2, weight.contiguous(), rstd, ctx.gs, ctx.before)
        return dx.view(ctx.shape), dw, dz.view(ctx.shape) if dz is not None else None, None, None, None


def gated_rms_norm_triton(
    x: torch.Tensor, weight: torch.Tensor, z: torch.Tensor | None = None, eps: float = 1e-5,
    group_size: int | None = None, norm_before_gate: bool = False,
) -> torch.Tensor:
    """x, z (..., d); weight (d,). Returns out in x's dtype; differentiable in x, weight and z."""
    return _GatedRMSNorm.apply(x, weight, z, eps, group_size, norm_before_gate)
