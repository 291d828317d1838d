"""RMSNorm references: the backbone's pre-norm with a fused residual add, and Mamba-2's gated
RMSNorm (mamba_ssm's ``RMSNormGated``). Computed in fp32 (float64 for float64 inputs)::

    r = x + residual;   out = r / sqrt(mean(r²) + eps) · weight
    gated: norm_before_gate=False: out = RMSNorm(x · silu(z));  True: out = RMSNorm(x) · silu(z)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.promote_types(x.dtype, torch.float32)


def _normalize(x: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt(x.square().mean(dim=-1, keepdim=True) + eps)


def rms_norm_ref(
    x: torch.Tensor,
    weight: torch.Tensor,
    residual: torch.Tensor | None = None,
    eps: float = 1e-5,
    prenorm: bool = False,
    residual_in_fp32: bool = True,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """x, residual: (..., d); weight: (d,). Returns out in x's dtype, or ``(out, residual)`` with
    ``prenorm``, residual = x + residual (fp32, or float64 for float64 x, if ``residual_in_fp32``,
    else x's dtype)."""
    real = _compute_dtype(x)
    r = x.to(real) if residual is None else x.to(real) + residual.to(real)
    out = (_normalize(r, eps) * weight.to(real)).to(x.dtype)
    if not prenorm:
        return out
    return out, r if residual_in_fp32 else r.to(x.dtype)


def gated_rms_norm_ref(
    x: torch.Tensor,
    weight: torch.Tensor,
    z: torch.Tensor | None = None,
    eps: float = 1e-5,
    group_size: int | None = None,
    norm_before_gate: bool = False,
) -> torch.Tensor:
    """x, z: (..., d); weight: (d,); the mean square is taken per group of ``group_size`` consecutive
    channels (None: all d). Returns out in x's dtype."""
    real = _compute_dtype(x)
    d = x.shape[-1]
    h = x.to(real)
    gate = F.silu(z.to(real)) if z is not None else None
    if gate is not None and not norm_before_gate:
        h = h * gate
    g = group_size or d
    out = _normalize(h.unflatten(-1, (d // g, g)), eps).flatten(-2) * weight.to(real)
    if gate is not None and norm_before_gate:
        out = out * gate
    return out.to(x.dtype)
