"""Mamba-1 selective scan (S6): ``selective_scan_fn`` with mamba_ssm's signature.

Math (Gu & Dao 2023, eq. 2a-2b, Algorithm 2)::

    Δ = softplus(delta + delta_bias)          (each step optional)
    h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t B_t u_t  h: (batch, dim, N)
    y_t = C_t h_t + D u_t                     complex A: y_t = 2 Re(C_t h_t) + D u_t
    out_t = y_t · silu(z_t)
"""

from __future__ import annotations

import torch

from seqssm.ops.backend import resolve
from seqssm.ops.reference.selective_scan import selective_scan_ref


def selective_scan_fn(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    *,
    initial_state: torch.Tensor | None = None,
    backend: str = "auto",
):
    """Selective scan over ``u`` (batch, dim, L).

    delta, z: (batch, dim, L). A: (dim, N), real or complex. B, C: (batch, N, L), grouped
    (batch, groups, N, L), or time-invariant (dim, N); for complex A a time-varying B/C is a real
    tensor with interleaved (real, imag) pairs on its last axis (length 2L), as in mamba_ssm.
    D, delta_bias: (dim,). initial_state: (batch, dim, N), fp32 (complex64 for complex A).

    Returns ``out`` (batch, dim, L) in u's dtype, or ``(out, last_state)`` when
    ``return_last_state``. Running a sequence in two pieces, passing ``last_state`` of the first as
    ``initial_state`` of the second, gives the same output as one pass.
    """
    args = (u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state)
    if resolve(backend, u) == "triton":
        from seqssm.kernels.selective_scan import selective_scan_triton

        out, last = selective_scan_triton(*args)
    else:
        out, last = selective_scan_ref(*args)
    return (out, last) if return_last_state else out
