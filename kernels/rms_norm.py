"""Fused residual add + RMSNorm in Triton (the backbone's pre-norm), forward and backward.

    r = x + residual              (fp32)
    out = r · rstd · w,  rstd = 1 / sqrt(mean(r²) + eps)

Backward, with r̂ = r · rstd, g = ∂L/∂out and g_r the gradient arriving on the returned residual::

    ∂L/∂r = rstd · (w g − r̂ · mean(r̂ · w g)) + g_r       (= ∂L/∂x = ∂L/∂residual)
    ∂L/∂w = Σ_rows g · r̂

One program normalises ROWS rows, each in one block of the whole feature axis; ∂L/∂w is summed per
program into an fp32 (programs, d) buffer and then over programs.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def rms_norm_fwd_kernel(x_ptr, res_ptr, w_ptr, out_ptr, res_out_ptr, rstd_ptr, M, d, eps,
                        ROWS: tl.constexpr, BLOCK: tl.constexpr, HAS_RES: tl.constexpr,
                        STORE_RES: tl.constexpr):
    cols = tl.arange(0, BLOCK)
    mc = cols < d
    w = tl.load(w_ptr + cols, mask=mc, other=0.0).to(tl.float32)
    for i in tl.static_range(ROWS):
        r = tl.program_id(0).to(tl.int64) * ROWS + i
        if r < M:
            off = r * d + cols
            v = tl.load(x_ptr + off, mask=mc, other=0.0).to(tl.float32)
            if HAS_RES:
                v += tl.load(res_ptr + off, mask=mc, other=0.0).to(tl.float32)
            rstd = 1.0 / tl.sqrt(tl.sum(v * v, 0) / d + eps)
            tl.store(rstd_ptr + r, rstd)
            tl.store(out_ptr + off, (v * rstd * w).to(out_ptr.dtype.element_ty), mask=mc)
            if STORE_RES:
                tl.store(res_out_ptr + off, v.to(res_out_ptr.dtype.element_ty), mask=mc)


@triton.jit
def rms_norm_bwd_kernel(x_ptr, res_ptr, w_ptr, rstd_ptr, g_ptr, gres_ptr, gx_ptr, gres_in_ptr,
                        gw_ptr, M, d, ROWS: tl.constexpr, BLOCK: tl.constexpr, HAS_RES: tl.constexpr,
                        HAS_GRES: tl.constexpr):
    cols = tl.arange(0, BLOCK)
    mc = cols < d
    w = tl.load(w_ptr + cols, mask=mc, other=0.0).to(tl.float32)
    gw = tl.zeros((BLOCK,), tl.float32)
    for i in tl.static_range(ROWS):
        r = tl.program_id(0).to(tl.int64) * ROWS + i
        if r < M:
            off = r * d + cols
            v = tl.load(x_ptr + off, mask=mc, other=0.0).to(tl.float32)
            if HAS_RES:
                v += tl.load(res_ptr + off, mask=mc, other=0.0).to(tl.float32)
            rstd = tl.load(rstd_ptr + r)
            vh = v * rstd
            g = tl.load(g_ptr + off, mask=mc, other=0.0).to(tl.float32)
            gw += g * vh
            wg = w * g
            gv = rstd * (wg - vh * (tl.sum(vh * wg, 0) / d))
            if HAS_GRES:
                gv += tl.load(gres_ptr + off, mask=mc, other=0.0).to(tl.float32)
            tl.store(gx_ptr + off, gv.to(gx_ptr.dtype.element_ty), mask=mc)
            if HAS_RES:
                tl.store(gres_in_ptr + off, gv.to(gres_in_ptr.dtype.element_ty), mask=mc)
    tl.store(gw_ptr + tl.program_id(0) * d + cols, gw, mask=mc)


def _rows(x: torch.Tensor) -> int:
    return 4 if x.is_cuda else 2


class _RMSNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, residual, eps, prenorm, residual_in_fp32):
        shape = x.shape
        d = shape[-1]
        xk = x.reshape(-1, d).contiguous()
        rk = None if residual is None else residual.reshape(-1, d).contiguous()
        M = xk.shape[0]
        out = torch.empty_like(xk)
        res_dtype = torch.float32 if residual_in_fp32 else x.dtype
        if x.dtype == torch.float64:
            res_dtype = torch.float64
        res_out = torch.empty(M, d, device=x.device, dtype=res_dtype) if prenorm else None
        rstd = torch.empty(M, device=x.device, dtype=torch.float32)
        rows, block = _rows(x), triton.next_power_of_2(d)
        rms_norm_fwd_kernel[(triton.cdiv(M, rows),)](
            xk, rk, weight, out, res_out, rstd, M, d, eps, ROWS=rows, BLOCK=block,
            HAS_RES=rk is not None, STORE_RES=prenorm, num_warps=min(max(block // 256, 1), 16))
        ctx.save_for_backward(xk, rk, weight, rstd)
        ctx.meta = (shape, None if residual is None else residual.dtype)
        if prenorm:
            return out.view(shape), res_out.view(shape)
        return out.view(shape)

    @staticmethod
    def backward(ctx, gout, gres=None):
        xk, rk, weight, rstd = ctx.saved_tensors
        shape, res_dtype = ctx.meta
        M, d = xk.shape
        gout = torch.zeros_like(xk) if gout is None else gout.reshape(M, d).contiguous()
        gres = None if gres is None else gres.reshape(M, d).contiguous()
        rows, block = _rows(xk), triton.next_power_of_2(d)
        n_prog = triton.cdiv(M, rows)
        gx = torch.empty_like(xk)
        gr = torch.empty(M, d, device=xk.device, dtype=res_dtype) if rk is not None else None
        gw = torch.empty(n_prog, d, device=xk.device, dtype=torch.float32)
        rms_norm_bwd_kernel[(n_prog,)](
            xk, rk, weight, rstd, gout, gres, gx, gr, gw, M, d, ROWS=rows, BLOCK=block,
            HAS_RES=rk is not None, HAS_GRES=gres is not None, num_warps=min(max(block // 256, 1), 16))
        return (gx.view(shape), gw.sum(0).to(weight.dtype), None if gr is None else gr.view(shape),
                None, None, None)


def rms_norm_triton(
    x: torch.Tensor,
    weight: torch.Tensor,
    residual: torch.Tensor | None = None,
    eps: float = 1e-5,
    prenorm: bool = False,
    residual_in_fp32: bool = True,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """x, residual: (..., d); weight: (d,). Returns out in x's dtype, and with ``prenorm`` also the
    new residual x + residual (fp32 if ``residual_in_fp32``, else x's dtype). Differentiable in x,
    weight and residual."""
    return _RMSNorm.apply(x, weight, residual, eps, prenorm, residual_in_fp32)
