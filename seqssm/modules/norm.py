"""Norm modules over ``seqssm.ops`` (parameter name ``weight``, as in mamba_ssm)."""

from __future__ import annotations

import torch
import torch.nn as nn

from seqssm.ops import gated_rms_norm, rms_norm


class RMSNorm(nn.Module):
    """RMSNorm (Zhang & Sennrich 2019): x / sqrt(mean(x²) + eps) · weight, with an optional fused
    residual add (see ``seqssm.ops.rms_norm``)."""

    def __init__(self, d: int, eps: float = 1e-5, backend: str = "auto", residual_in_fp32: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.weight._no_weight_decay = True
        self.eps, self.backend, self.residual_in_fp32 = eps, backend, residual_in_fp32

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None, prenorm: bool = False):
        return rms_norm(x, self.weight, residual, self.eps, prenorm, self.residual_in_fp32, backend=self.backend)


class GatedRMSNorm(nn.Module):
    """Mamba-2's output norm: RMSNorm(x · silu(z)) per group of ``group_size`` channels."""

    def __init__(self, d: int, eps: float = 1e-5, group_size: int | None = None, backend: str = "auto") -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.weight._no_weight_decay = True
        self.eps, self.group_size, self.backend = eps, group_size, backend

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        return gated_rms_norm(x, self.weight, z, self.eps, self.group_size, False, backend=self.backend)
