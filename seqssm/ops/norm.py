"""RMSNorm with a fused residual add (the backbone's pre-norm), and Mamba-2's gated RMSNorm.

residual' = x + residual                    (kept in fp32)
out = residual' / sqrt(mean(residual'^2) + eps) · weight
gated (norm_before_gate=False): out = RMSNorm(x · silu(z)) per group of ``group_size`` channels
"""

from __future__ import annotations

import torch

from seqssm.ops.backend import resolve
from seqssm.ops.reference.norm import gated_rms_norm_ref, rms_norm_ref


def rms_norm(
    x: torch.Tensor,
    weight: torch.Tensor,
    residual: torch.Tensor | None = None,
    eps: float = 1e-5,
    prenorm: bool = False,
    residual_in_fp32: bool = True,
    *,
    backend: str = "auto",
):
    """x, residual: (..., d); weight: (d,). Returns out in x's dtype, and with ``prenorm`` also the
    new residual (x + residual, fp32 if ``residual_in_fp32``)."""
    args = (x, weight, residual, eps, prenorm, residual_in_fp32)
    if resolve(backend, x) == "triton":
        from seqssm.kernels.rms_norm import rms_norm_triton

        return rms_norm_triton(*args)
    return rms_norm_ref(*args)


def gated_rms_norm(
    x: torch.Tensor,
    weight: torch.Tensor,
    z: torch.Tensor | None = None,
    eps: float = 1e-5,
    group_size: int | None = None,
    norm_before_gate: bool = False,
    *,
    backend: str = "auto",
) -> torch.Tensor:
    """Mamba-2's output norm. x, z: (..., d); weight: (d,); group_size divides d (None: d)."""
    args = (x, weight, z, eps, group_size, norm_before_gate)
    if resolve(backend, x) == "triton":
        from seqssm.kernels.gated_rms_norm import gated_rms_norm_triton

        return gated_rms_norm_triton(*args)
    return gated_rms_norm_ref(*args)
