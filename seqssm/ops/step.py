"""One-token recurrent updates for generation: O(1) time and memory per token.

``selective_state_update`` follows mamba_ssm: the same function serves Mamba-1
(state (batch, dim, N)) and Mamba-2 (state (batch, heads, head_dim, N), A broadcast per head).

    Δ = softplus(dt + dt_bias);  state ← exp(Δ A) ⊙ state + Δ B x;  y = C·state + D x;  y · silu(z)
"""

from __future__ import annotations

import torch

from seqssm.ops.backend import resolve
from seqssm.ops.reference.step import selective_state_update_ref


def selective_state_update(
    state: torch.Tensor,
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    dt_bias: torch.Tensor | None = None,
    dt_softplus: bool = False,
    *,
    A_is_log: bool = False,
    backend: str = "auto",
) -> torch.Tensor:
    """Mamba-1: state (batch, dim, N), x/dt/z (batch, dim), A (dim, N), B/C (batch, N) (complex A:
    complex B/C and state), D/dt_bias (dim,). Mamba-2: state (batch, heads, head_dim, N), x/dt/z
    (batch, heads, head_dim), A (heads, head_dim, N), B/C (batch, groups, N), D/dt_bias
    (heads, head_dim). ``state`` is updated in place; returns y shaped like x.

    D, dt_bias and A may be in any float dtype (a bf16 model's parameters): they are read in fp32.
    ``A_is_log``: A holds the module's ``A_log`` (real A only) and A = -exp(A_log) is formed in the
    update itself, so a decode step launches no kernels for the parameters (in a bf16 model the casts
    and the exp were five of a Mamba layer's eleven kernels a token)."""
    if A_is_log and A.is_complex():
        raise ValueError("A_is_log=True needs a real A_log, got a complex A")
    args = (state, x, dt, A, B, C, D, z, dt_bias, dt_softplus, A_is_log)
    if resolve(backend, x) == "triton":
        from seqssm.kernels.selective_state_update import selective_state_update_triton

        return selective_state_update_triton(*args)
    return selective_state_update_ref(*args)
