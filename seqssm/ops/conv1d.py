"""Depthwise causal convolution, as in the ``causal_conv1d`` package.

    out[:, d, t] = act(bias[d] + Σ_k weight[d, k] · x[:, d, t - (width-1) + k])

The state of the convolution is the last ``width - 1`` inputs, (batch, dim, width - 1).
"""

from __future__ import annotations

import torch

from seqssm.ops.backend import resolve
from seqssm.ops.reference.conv1d import causal_conv1d_ref, causal_conv1d_update_ref


def causal_conv1d_fn(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    seq_idx: torch.Tensor | None = None,
    initial_states: torch.Tensor | None = None,
    return_final_states: bool = False,
    activation: str | None = None,
    *,
    backend: str = "auto",
):
    """x: (batch, dim, L); weight: (dim, width); bias: (dim,); seq_idx: (batch, L) int, no input
    crosses a change of it; initial_states: (batch, dim, width - 1); activation: None, "silu" or
    "swish". Returns out (batch, dim, L), and the final states if ``return_final_states``."""
    if activation not in (None, "silu", "swish"):
        raise ValueError(f"activation={activation!r}: expected None, 'silu' or 'swish'")
    args = (x, weight, bias, seq_idx, initial_states, activation)
    if resolve(backend, x) == "triton":
        from seqssm.kernels.causal_conv1d import causal_conv1d_triton

        out, final = causal_conv1d_triton(*args)
    else:
        out, final = causal_conv1d_ref(*args)
    return (out, final) if return_final_states else out


def causal_conv1d_update(
    x: torch.Tensor,
    conv_state: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    activation: str | None = None,
    *,
    backend: str = "auto",
) -> torch.Tensor:
    """One decode step. x: (batch, dim); conv_state: (batch, dim, width - 1), updated in place
    (shifted left, x appended). Returns (batch, dim)."""
    if resolve(backend, x) == "triton":
        from seqssm.kernels.causal_conv1d import causal_conv1d_update_triton

        return causal_conv1d_update_triton(x, conv_state, weight, bias, activation)
    return causal_conv1d_update_ref(x, conv_state, weight, bias, activation)
