"""One-token recurrent update (mamba_ssm's ``selective_state_update``) in pure PyTorch::

    Δ = softplus(dt + dt_bias);  state ← exp(Δ A) ⊙ state + Δ B x;  y = C·state + D x;  y · silu(z)

Mamba-1 shapes: state (batch, dim, N), x/dt/z (batch, dim), A (dim, N), B/C (batch, N), D/dt_bias
(dim,); complex A goes with complex B/C and state, and y = 2 Re(C·state) + D x.
Mamba-2 shapes: state (batch, heads, head_dim, N), x/dt/z (batch, heads, head_dim), A (heads,
head_dim, N), B/C (batch, groups, N), D/dt_bias (heads, head_dim).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def selective_state_update_ref(
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
    A_is_log: bool = False,
) -> torch.Tensor:
    """Advances ``state`` by one step in place and returns y shaped like x, in x's dtype.
    ``A_is_log``: A holds log(-A) (real A), as the modules' ``A_log`` parameter."""
    if state.dim() == 3:  # Mamba-1: view as one head of head_dim = dim
        y = selective_state_update_ref(
            state.unsqueeze(1), x.unsqueeze(1), dt.unsqueeze(1), A.unsqueeze(0), B.unsqueeze(1),
            C.unsqueeze(1), None if D is None else D.unsqueeze(0), None if z is None else z.unsqueeze(1),
            None if dt_bias is None else dt_bias.unsqueeze(0), dt_softplus, A_is_log,
        )
        return y.squeeze(1)
    heads, groups = state.shape[1], B.shape[1]
    real = torch.float64 if x.dtype == torch.float64 else torch.float32
    head_group = torch.arange(heads, device=x.device) // (heads // groups)
    Bh, Ch = B[:, head_group], C[:, head_group]  # (batch, heads, N)
    if not B.is_complex():
        Bh, Ch = Bh.to(real), Ch.to(real)
    xr = x.to(real)
    delta = dt.to(real)
    if dt_bias is not None:
        delta = delta + dt_bias.to(real)
    if dt_softplus:
        delta = F.softplus(delta)
    if A_is_log:
        A = -torch.exp(A.to(real))
    elif not A.is_complex():
        A = A.to(real)
    h = state * torch.exp(delta[..., None] * A) + (delta * xr)[..., None] * Bh[:, :, None, :]
    state.copy_(h)
    y = (h * Ch[:, :, None, :]).sum(-1)
    y = 2 * y.real if y.is_complex() else y
    if D is not None:
        y = y + xr * D.to(real)
    if z is not None:
        y = y * F.silu(z.to(real))
    return y.to(x.dtype)
