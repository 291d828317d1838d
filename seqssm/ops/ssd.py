"""Mamba-2 state space duality (SSD): ``mamba_chunk_scan_combined`` with mamba_ssm's signature.

Math (Dao & Gu 2024, eq. 1 with scalar A per head; section 6 for the chunked algorithm)::

    Δ = clamp(softplus(dt + dt_bias), dt_limit)
    h_t = exp(Δ_t a) h_{t-1} + Δ_t x_t B_tᵀ   h: (batch, heads, head_dim, N)
    y_t = h_t C_t + D x_t,   out_t = y_t · silu(z_t)
"""

from __future__ import annotations

import torch

from seqssm.ops.backend import resolve
from seqssm.ops.reference.ssd import ssd_ref


def mamba_chunk_scan_combined(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    chunk_size: int,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    dt_bias: torch.Tensor | None = None,
    initial_states: torch.Tensor | None = None,
    seq_idx: torch.Tensor | None = None,
    cu_seqlens: torch.Tensor | None = None,
    dt_softplus: bool = False,
    dt_limit: tuple[float, float] = (0.0, float("inf")),
    return_final_states: bool = False,
    return_varlen_states: bool = False,
    *,
    backend: str = "auto",
):
    """SSD over x (batch, L, heads, head_dim). dt: (batch, L, heads); A: (heads,); B, C:
    (batch, L, groups, N); D: (heads,) or (heads, head_dim); z like x; dt_bias: (heads,);
    initial_states: (batch, heads, head_dim, N); seq_idx: (batch, L) int32, the state restarts at
    every change; cu_seqlens: (num_seqs + 1,) cumulative lengths of the sequences packed in a batch
    of one, used with ``return_varlen_states``.

    Returns out, then final_states if ``return_final_states``, then varlen_states
    (num_seqs, heads, head_dim, N) if ``return_varlen_states``.
    """
    args = (x, dt, A, B, C, chunk_size, D, z, dt_bias, initial_states, seq_idx, dt_softplus, dt_limit)
    if resolve(backend, x) == "triton":
        from seqssm.kernels.ssd_combined import ssd_triton

        out, final, varlen = ssd_triton(*args, cu_seqlens=cu_seqlens, varlen_states=return_varlen_states)
    else:
        out, final, varlen = ssd_ref(*args, cu_seqlens=cu_seqlens, varlen_states=return_varlen_states)
    result = (out,)
    if return_final_states:
        result += (final,)
    if return_varlen_states:
        result += (varlen,)
    return result[0] if len(result) == 1 else result
