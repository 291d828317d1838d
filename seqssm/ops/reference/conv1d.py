"""Depthwise causal convolution in pure PyTorch (the ``causal_conv1d`` package's semantics)::

    out[:, d, t] = act(bias[d] + Σ_k weight[d, k] · x[:, d, t - (width-1) + k])

Positions before 0 come from ``initial_states`` (else zero). With ``seq_idx`` no tap reaches across a
change of seq_idx (the initial states count as part of the first sequence). The state of the
convolution is its last ``width - 1`` inputs, (batch, dim, width - 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _activate(out: torch.Tensor, activation: str | None) -> torch.Tensor:
    return F.silu(out) if activation in ("silu", "swish") else out


def causal_conv1d_ref(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    seq_idx: torch.Tensor | None = None,
    initial_states: torch.Tensor | None = None,
    activation: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """x: (batch, dim, L); weight: (dim, width); bias: (dim,); seq_idx: (batch, L); initial_states:
    (batch, dim, width - 1). Returns ``(out, final_states)``: out (batch, dim, L) in x's dtype, and the
    last width - 1 inputs (initial-state inputs included when L < width - 1)."""
    batch, dim, L = x.shape
    width = weight.shape[1]
    real = torch.float64 if x.dtype == torch.float64 else torch.float32
    past = (
        initial_states.to(real)
        if initial_states is not None
        else torch.zeros(batch, dim, width - 1, dtype=real, device=x.device)
    )
    xp = torch.cat([past, x.to(real)], dim=-1)  # (batch, dim, width - 1 + L)
    w = weight.to(real)
    b = bias.to(real) if bias is not None else None
    if seq_idx is None:
        out = F.conv1d(xp, w[:, None, :], b, groups=dim)
    else:
        change = torch.zeros_like(seq_idx, dtype=torch.long)
        change[:, 1:] = (seq_idx[:, 1:] != seq_idx[:, :-1]).long()
        seg = F.pad(change.cumsum(-1), (width - 1, 0))  # segment id per padded position
        out = torch.zeros(batch, dim, L, dtype=real, device=x.device)
        for k in range(width):  # tap k reads position t - (width-1) + k
            same = (seg[:, k : k + L] == seg[:, width - 1 :]).to(real)[:, None]
            out = out + w[:, k, None] * xp[:, :, k : k + L] * same
        if b is not None:
            out = out + b[:, None]
    final = xp[:, :, xp.shape[-1] - (width - 1) :]
    return _activate(out, activation).to(x.dtype), final.to(x.dtype)


def causal_conv1d_update_ref(
    x: torch.Tensor,
    conv_state: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    activation: str | None = None,
) -> torch.Tensor:
    """Decode step(s). x: (batch, dim) or (batch, dim, l); conv_state: (batch, dim, width - 1), updated
    in place (shifted left, x appended). Returns out shaped like x."""
    single = x.dim() == 2
    xs = x[..., None] if single else x
    width = weight.shape[1]
    real = torch.float64 if x.dtype == torch.float64 else torch.float32
    xp = torch.cat([conv_state.to(real), xs.to(real)], dim=-1)
    b = bias.to(real) if bias is not None else None
    out = F.conv1d(xp, weight.to(real)[:, None, :], b, groups=weight.shape[0])
    conv_state.copy_(xp[:, :, xp.shape[-1] - (width - 1) :])
    out = _activate(out, activation).to(x.dtype)
    return out[..., 0] if single else out
