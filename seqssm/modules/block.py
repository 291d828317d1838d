"""A residual block as in mamba_ssm: pre-norm, mixer, residual kept in fp32.

    residual ← hidden + residual;   hidden ← Mixer(RMSNorm(residual))

The add and the norm are one fused op (``seqssm.ops.rms_norm`` with ``prenorm``).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from seqssm.modules.norm import RMSNorm


class Block(nn.Module):
    def __init__(
        self,
        d_model: int,
        mixer: nn.Module,
        norm_eps: float = 1e-5,
        backend: str = "auto",
        residual_in_fp32: bool = True,
    ) -> None:
        super().__init__()
        self.norm = RMSNorm(d_model, eps=norm_eps, backend=backend, residual_in_fp32=residual_in_fp32)
        self.mixer = mixer

    def forward(
        self,
        hidden_states: torch.Tensor,
        residual: torch.Tensor | None,
        state=None,
        return_state: bool = False,
    ):
        """Returns (hidden_states, residual, state after the last token or None)."""
        normed, residual = self.norm(hidden_states, residual, prenorm=True)
        if return_state:
            out, state = self.mixer(normed, state=state, return_state=True)
            return out, residual, state
        return self.mixer(normed, state=state), residual, None

    def step(self, hidden_states: torch.Tensor, residual: torch.Tensor | None, state):
        normed, residual = self.norm(hidden_states, residual, prenorm=True)
        return self.mixer.step(normed, state), residual
