"""Naive per-time-step recurrences: the oracle that the chunked reference and the kernels are
tested against. Slow (a Python loop over time) and written to be obviously right; never used
for training.

Selective scan (Mamba, Gu & Dao 2023, eq. 2a-2b with the zero-order-hold discretisation of
eq. 4 simplified for B as in the paper's Algorithm 2)::

    h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t B_t u_t
    y_t = C_t h_t + D u_t            (complex A: y_t = 2 Re(C_t h_t) + D u_t)
    out_t = y_t · silu(z_t)

SSD (Mamba-2, Dao & Gu 2024, eq. 1 with scalar A per head)::

    h_t = exp(Δ_t a) h_{t-1} + Δ_t x_t B_tᵀ        h: (head_dim, N)
    y_t = h_t C_t + D x_t,  out_t = y_t · silu(z_t)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def unpack_complex(M: torch.Tensor) -> torch.Tensor:
    """mamba_ssm's packing of a complex, time-varying B or C: a real tensor whose last axis holds
    interleaved (real, imag) pairs, (..., 2L) -> complex (..., L)."""
    real = torch.promote_types(M.dtype, torch.float32)  # keep float64 for a float64 oracle
    return torch.view_as_complex(M.to(real).unflatten(-1, (-1, 2)).contiguous())


def expand_bc(M: torch.Tensor, dim: int, is_complex: bool) -> torch.Tensor:
    """B or C in any of mamba_ssm's layouts -> (batch, dim, N, L), or (dim, N) if time-invariant."""
    if M.dim() == 2:
        return M
    if is_complex:
        M = unpack_complex(M)
    if M.dim() == 3:  # (batch, N, L): shared by all channels
        return M.unsqueeze(1).expand(-1, dim, -1, -1)
    groups = M.shape[1]  # (batch, groups, N, L): channel d uses group d // (dim // groups)
    return M.repeat_interleave(dim // groups, dim=1)


def selective_scan_naive(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, initial_state=None):
    """Per-step selective scan in the dtype of the inputs (use float64 for an oracle).

    Shapes as mamba_ssm's ``selective_scan_fn``. Returns ``(out, last_state)``.
    """
    batch, dim, L = u.shape
    is_complex = A.is_complex()
    delta = delta if delta_bias is None else delta + delta_bias[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    Bx, Cx = expand_bc(B, dim, is_complex), expand_bc(C, dim, is_complex)
    state_dtype = torch.promote_types(u.dtype, A.dtype)
    h = torch.zeros(batch, dim, A.shape[1], dtype=state_dtype, device=u.device)
    if initial_state is not None:
        h = h + initial_state.to(state_dtype)
    ys = []
    for t in range(L):
        b_t = Bx if Bx.dim() == 2 else Bx[..., t]
        c_t = Cx if Cx.dim() == 2 else Cx[..., t]
        h = torch.exp(delta[:, :, t, None] * A) * h + (delta[:, :, t] * u[:, :, t])[..., None] * b_t
        y = (h * c_t).sum(-1)
        ys.append(2 * y.real if is_complex else y)
    y = torch.stack(ys, dim=-1).to(u.dtype)
    if D is not None:
        y = y + u * D[:, None]
    if z is not None:
        y = y * F.silu(z)
    return y, h


def ssd_naive(x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False, initial_states=None, seq_idx=None):
    """Per-step SSD recurrence. x: (batch, L, heads, head_dim); dt: (batch, L, heads); A: (heads,);
    B, C: (batch, L, groups, N); D: (heads,) or (heads, head_dim); seq_idx: (batch, L) int, the state
    restarts from zero wherever it changes. Returns ``(out, final_state)`` with final_state
    (batch, heads, head_dim, N)."""
    batch, L, heads, p = x.shape
    groups = B.shape[2]
    Bh = B.repeat_interleave(heads // groups, dim=2)
    Ch = C.repeat_interleave(heads // groups, dim=2)
    dt = dt if dt_bias is None else dt + dt_bias
    if dt_softplus:
        dt = F.softplus(dt)
    h = torch.zeros(batch, heads, p, B.shape[-1], dtype=x.dtype, device=x.device)
    if initial_states is not None:
        h = h + initial_states.to(x.dtype)
    ys = []
    for t in range(L):
        if seq_idx is not None and t > 0:
            same = (seq_idx[:, t] == seq_idx[:, t - 1]).to(x.dtype)
            h = h * same[:, None, None, None]
        decay = torch.exp(dt[:, t] * A)  # (batch, heads)
        h = decay[..., None, None] * h + (dt[:, t, :, None] * x[:, t])[..., None] * Bh[:, t, :, None, :]
        ys.append((h * Ch[:, t, :, None, :]).sum(-1))
    y = torch.stack(ys, dim=1)
    if D is not None:
        y = y + x * (D[:, None] if D.dim() == 1 else D)
    if z is not None:
        y = y * F.silu(z)
    return y, h


def causal_conv1d_naive(x, weight, bias=None, activation=None, initial_states=None):
    """out[:, :, t] = act(bias + sum_k weight[:, k] * x[:, :, t - (width-1) + k]); positions before 0
    come from ``initial_states`` (batch, dim, width-1), else zero. Returns ``(out, final_states)``."""
    batch, dim, L = x.shape
    width = weight.shape[1]
    past = (
        initial_states
        if initial_states is not None
        else torch.zeros(batch, dim, width - 1, dtype=x.dtype, device=x.device)
    )
    xp = torch.cat([past.to(x.dtype), x], dim=-1)
    out = torch.stack([(xp[:, :, t : t + width] * weight).sum(-1) for t in range(L)], dim=-1)
    if bias is not None:
        out = out + bias[:, None]
    if activation in ("silu", "swish"):
        out = F.silu(out)
    return out, xp[:, :, xp.shape[-1] - (width - 1) :]


def rotary_ssd_naive(x, dt, A, B, C, theta, D=None, dt_bias=None, dt_softplus=False, initial_states=None):
    """Per-step rotary SSD as a complex recurrence (use float64 inputs: the pairs run in complex128).

    The first R = theta.shape[-1] pairs of state dims are complex numbers h_{2k} + i h_{2k+1}::

        h_t = exp(Δ_t a) e^{i Δ_t θ_t} h_{t-1} + Δ_t x_t B_tᵀ,   y_t = Re(conj(C_t) h_t) + D x_t

    the remaining N - 2R dims follow the real SSD. x: (batch, L, heads, head_dim); dt: (batch, L,
    heads); theta: (batch, L, R); other shapes as ``ssd_naive``. Returns ``(out, final_state)`` with
    the final state in real layout (batch, heads, head_dim, N)."""
    batch, L, heads, p = x.shape
    groups, N, R = B.shape[2], B.shape[3], theta.shape[-1]
    Bh = B.repeat_interleave(heads // groups, dim=2)
    Ch = C.repeat_interleave(heads // groups, dim=2)
    as_complex = lambda M: torch.complex(M[..., 0 : 2 * R : 2], M[..., 1 : 2 * R : 2])  # noqa: E731
    dt = dt if dt_bias is None else dt + dt_bias
    if dt_softplus:
        dt = F.softplus(dt)
    h = torch.zeros(batch, heads, p, N, dtype=x.dtype, device=x.device)
    if initial_states is not None:
        h = h + initial_states.to(x.dtype)
    hc, hr = as_complex(h), h[..., 2 * R :]  # complex pairs, real rest
    ys = []
    for t in range(L):
        decay = torch.exp(dt[:, t] * A)[..., None, None]  # (batch, heads, 1, 1)
        phase = torch.exp(1j * dt[:, t, :, None] * theta[:, t, None, :])[:, :, None, :]  # (batch, heads, 1, R)
        inp = (dt[:, t, :, None] * x[:, t])[..., None]  # (batch, heads, p, 1)
        hc = decay * phase * hc + inp * as_complex(Bh[:, t])[:, :, None, :]
        hr = decay * hr + inp * Bh[:, t, :, None, 2 * R :]
        y = (torch.conj(as_complex(Ch[:, t]))[:, :, None, :] * hc).real.sum(-1)
        ys.append(y + (hr * Ch[:, t, :, None, 2 * R :]).sum(-1))
    y = torch.stack(ys, dim=1)
    if D is not None:
        y = y + x * D[:, None]
    final = torch.cat([torch.stack([hc.real, hc.imag], dim=-1).flatten(-2), hr], dim=-1)
    return y, final
