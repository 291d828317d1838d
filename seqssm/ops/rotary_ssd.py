"""Rotary SSD: Mamba-2's SSD with a data-dependent rotation of the state (Mamba-3's complex SSM in
real form).

Math. Pair the first 2R state dimensions as complex numbers h_k = h_{2k} + i·h_{2k+1} (k < R) and let
each pair turn by a data-dependent angle every step, on top of Mamba-2's scalar decay per head::

    h_t = exp(Δ_t a) · e^{i Δ_t θ_{t,k}} · h_{t-1} + Δ_t x_t B_tᵀ       (pairs k < R; other dims real)
    y_t = Re(conj(C_t) h_t) = h_t C_t  (the real dot product over the 2N real coordinates)

a complex diagonal transition with a unit-modulus phase (the complex SSM of Mamba-3, Lahoti et al.,
computed as a data-dependent rotary embedding of B and C; mamba_ssm 2.3's ``Mamba3``). Unrolled,
with the cumulative angle Θ_t = Σ_{s≤t} Δ_s θ_s (per head, since Δ is per head)::

    y_t = Σ_{s≤t} exp(Σ_{s<r≤t} Δ_r a) · (R(-Θ_t) C_t)·(R(-Θ_s) B_s) · Δ_s x_s

so the rotary SSD *is* the real SSD run on B' = R(-Θ) B and C' = R(-Θ) C (a rotary embedding of B and
C with accumulated, data-dependent angles). The real SSD's state is then the true state seen in a
frame turned by -Θ_t: h'_t = R(-Θ_t) h_t. States crossing the API are always true states, so a
piece of a long sequence starts from Θ = 0 and ``initial_states`` / ``final_states`` chain exactly.

This module is the pre-pass (angles, rotation of B and C per head, fp32; Triton kernels in
``kernels/rotary_bc.py``) around
``mamba_chunk_scan_combined``, which still picks the Triton kernels or the reference; the one-token
step rotates the state then calls ``selective_state_update``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from seqssm.ops.backend import resolve
from seqssm.ops.reference.ssd import step_sizes
from seqssm.ops.ssd import mamba_chunk_scan_combined
from seqssm.ops.step import selective_state_update

ANGLE_BLOCK = 256  # steps summed in the working precision before the offset is carried in float64


def rotate_pairs(v: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Turn (v_{2k}, v_{2k+1}) by ``angle_k`` for k < R = angle.shape[-1]; the other entries pass
    through. v: (..., N); angle broadcastable to (..., R). (a, b) -> (a cos φ - b sin φ, a sin φ + b cos φ),
    i.e. (a + ib)·e^{iφ}."""
    R = angle.shape[-1]
    pairs = v[..., : 2 * R].unflatten(-1, (R, 2))
    a, b = pairs[..., 0], pairs[..., 1]
    cos, sin = torch.cos(angle), torch.sin(angle)
    turned = torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1).flatten(-2)
    return torch.cat([turned, v[..., 2 * R :]], dim=-1)


def cumulative_angles(delta: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Θ_t = Σ_{s≤t} Δ_s θ_s. delta: (batch, L, heads); theta: (batch, L, R) -> (batch, L, heads, R).

    Summed in blocks of ``ANGLE_BLOCK`` steps in the working precision (fp32, or float64 for float64
    inputs); the offset entering each block is accumulated in float64 and wrapped into [0, 2π), so the
    angle error stays that of a 256-term sum however long the sequence (a plain fp32 cumsum over 1M
    steps would lose ~1e-3 rad)."""
    batch, L, heads = delta.shape
    work = torch.float64 if delta.dtype == torch.float64 else torch.float32
    step = delta.to(work)[..., None] * theta.to(work)[:, :, None, :]  # (batch, L, heads, R)
    if L <= ANGLE_BLOCK:
        return step.cumsum(1)
    nb = math.ceil(L / ANGLE_BLOCK)
    step = F.pad(step, (0, 0, 0, 0, 0, nb * ANGLE_BLOCK - L)).unflatten(1, (nb, ANGLE_BLOCK))
    local = step.cumsum(2)
    totals = local[:, :, -1].to(torch.float64)
    offsets = torch.remainder(totals.cumsum(1) - totals, 2 * math.pi).to(work)  # sum of earlier blocks
    return (local + offsets[:, :, None]).flatten(1, 2)[:, :L]


def rotate_bc(
    B: torch.Tensor, C: torch.Tensor, delta: torch.Tensor, theta: torch.Tensor, backend: str = "auto"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The pre-pass: B' = R(-Θ) B and C' = R(-Θ) C per head, and the last angle Θ_L. B, C: (batch, L,
    groups, N); delta: (batch, L, heads) (Δ, after softplus); theta: (batch, L, R). Returns B', C'
    (batch, L, heads, N) in B's dtype and Θ_L (batch, heads, R) in delta's dtype (equal modulo 2π on
    both paths). On the Triton path angles and rotation are kernels (``kernels/rotary_bc.py``) that
    never build the (batch, L, heads, R) angles; the reference builds them with ``cumulative_angles``."""
    if resolve(backend, B) == "triton":
        from seqssm.kernels.rotary_bc import rotary_prepass_triton

        return rotary_prepass_triton(B, C, delta, theta)
    heads, groups = delta.shape[-1], B.shape[2]
    angle = cumulative_angles(delta, theta)
    head_group = torch.arange(heads, device=B.device) // (heads // groups)
    B_rot = rotate_pairs(B.to(angle.dtype)[:, :, head_group], -angle).to(B.dtype)
    C_rot = rotate_pairs(C.to(angle.dtype)[:, :, head_group], -angle).to(C.dtype)
    return B_rot, C_rot, angle[:, -1]


def mamba_chunk_scan_rotary(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    theta: torch.Tensor,
    chunk_size: int,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    dt_bias: torch.Tensor | None = None,
    initial_states: torch.Tensor | None = None,
    seq_idx: torch.Tensor | None = None,
    dt_softplus: bool = False,
    dt_limit: tuple[float, float] = (0.0, float("inf")),
    return_final_states: bool = False,
    *,
    backend: str = "auto",
):
    """Rotary SSD with ``mamba_chunk_scan_combined``'s shapes plus ``theta`` (batch, L, R): the angular
    rate of pair k at step t (shared by the heads; the angle turned is Δ_t θ_t per head), R ≤ N/2.

    Returns out (like x), then, if ``return_final_states``, the true final state (batch, heads,
    head_dim, N) in fp32. ``seq_idx`` restarts the state at every change (angles only enter as
    differences inside a sequence, so they need no restart)."""
    batch, L, _, _ = x.shape
    N = B.shape[3]
    if theta.shape[:2] != (batch, L) or theta.dim() != 3 or not 1 <= theta.shape[-1] <= N // 2:
        raise ValueError(
            f"theta: expected (batch={batch}, L={L}, R) with 1 <= R <= N/2={N // 2}, got {tuple(theta.shape)}"
        )
    delta = step_sizes(dt, dt_bias, dt_softplus, dt_limit)
    B_rot, C_rot, last_angle = rotate_bc(B, C, delta, theta, backend)
    out, final = mamba_chunk_scan_combined(
        x,
        delta,
        A,
        B_rot,
        C_rot,
        chunk_size,
        D=D,
        z=z,
        initial_states=initial_states,
        seq_idx=seq_idx,
        return_final_states=True,
        backend=backend,
    )
    if not return_final_states:
        return out
    return out, rotate_pairs(final, last_angle[:, :, None, :].to(final.dtype))  # h_L = R(Θ_L) h'_L


def rotary_state_update(
    state: torch.Tensor,
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    theta: torch.Tensor,
    D: torch.Tensor | None = None,
    dt_bias: torch.Tensor | None = None,
    dt_softplus: bool = False,
    *,
    backend: str = "auto",
) -> torch.Tensor:
    """One token of the rotary SSD: h ← exp(Δ a) · R(Δ θ) h + Δ x Bᵀ;  y = h C + D x.

    state (batch, heads, head_dim, N), fp32, updated in place; x (batch, heads, head_dim); dt (batch,
    heads); A (heads,); B, C (batch, groups, N); theta (batch, R); D, dt_bias (heads,). Returns y like x."""
    batch, heads, p = x.shape
    N = state.shape[-1]
    delta = step_sizes(dt, dt_bias, dt_softplus)  # (batch, heads)
    turn = delta[..., None] * theta.to(delta.dtype)[:, None, :]  # (batch, heads, R)
    state.copy_(rotate_pairs(state, turn[:, :, None, :].to(state.dtype)))
    return selective_state_update(
        state,
        x,
        delta[..., None].expand(batch, heads, p),
        A[:, None, None].expand(heads, p, N),
        B,
        C,
        None if D is None else D[:, None].expand(heads, p),
        backend=backend,
    )
