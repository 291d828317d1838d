"""SSD step 0: the step sizes and their within-chunk cumulative log-decay (forward and backward).

Mamba-2 (Dao & Gu 2024) uses a scalar decay per head, ``a_t = Δ_t A`` (eq. 1 with ``A_t = a_t I``).
The chunked algorithm of section 6 needs, inside each chunk of Q positions, the segment sums
(the ``segsum`` of Listing 1)::

    Δ_t = clamp(softplus(dt_t + dt_bias), dt_min, dt_max)      (softplus and clamp optional)
    acs_t = Σ_{u ≤ t, u in chunk} Δ_u A                           (inclusive cumulative sum)
    L[t, s] = exp(acs_t − acs_s),   decay of the chunk = exp(acs_{Q−1})

Both ``Δ`` and ``acs`` are kept in fp32 as (batch, heads, nchunks, Q). Positions past the end of
the sequence get Δ = 0, so ``acs`` is flat there and the chunk's last slot holds the true end value.

Backward: given ``g_acs`` (the gradient of the loss w.r.t. ``acs`` accumulated by the other
backward kernels, except the part through exp(−acs_s), which is −Δ_s g_Δ_s and is added here)
and ``g_Δ`` (w.r.t. Δ where it multiplies X), the gradient of ``Δ_u A`` is the reverse
cumulative sum ``Σ_{t ≥ u} g_acs_t``; then the chain rule through clamp, softplus and the bias.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _softplus(v):
    # torch's F.softplus with threshold 20
    return tl.where(v <= 20.0, tl.log(1.0 + tl.exp(tl.minimum(v, 20.0))), v)


@triton.jit
def _dt_cumsum_fwd_kernel(
    dt_ptr, bias_ptr, A_ptr, dtp_ptr, acs_ptr,
    L, H, nchunks, s_db, s_dl, s_dh, dt_min, dt_max,
    HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, CLAMP: tl.constexpr,
    CS: tl.constexpr, BH: tl.constexpr,
):
    pid_bc = tl.program_id(0).to(tl.int64)
    b = pid_bc // nchunks
    c = pid_bc % nchunks
    t = tl.arange(0, CS)
    hh = tl.program_id(1) * BH + tl.arange(0, BH)
    pos = c * CS + t
    hmask = hh < H
    m = (pos[:, None] < L) & hmask[None, :]
    dt = tl.load(dt_ptr + b * s_db + pos[:, None] * s_dl + hh[None, :] * s_dh, mask=m, other=0.0)
    dt = dt.to(tl.float32)
    if HAS_BIAS:
        dt += tl.load(bias_ptr + hh, mask=hmask, other=0.0).to(tl.float32)[None, :]
    if SOFTPLUS:
        dt = _softplus(dt)
    if CLAMP:
        dt = tl.minimum(tl.maximum(dt, dt_min), dt_max)
    dt = tl.where(m, dt, 0.0)
    A = tl.load(A_ptr + hh, mask=hmask, other=0.0).to(tl.float32)
    acs = tl.cumsum(dt * A[None, :], axis=0)
    off = (b * H + hh[None, :]) * nchunks * CS + c * CS + t[:, None]
    tl.store(dtp_ptr + off, dt, mask=hmask[None, :])
    tl.store(acs_ptr + off, acs, mask=hmask[None, :])


@triton.jit
def _dt_cumsum_bwd_kernel(
    dt_ptr, bias_ptr, A_ptr, dtp_ptr, gacs_ptr, gdtp_ptr, ddt_ptr, dA_part_ptr, dbias_part_ptr,
    L, H, nchunks, s_db, s_dl, s_dh, s_gb, s_gl, s_gh, dt_min, dt_max,
    HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, CLAMP: tl.constexpr,
    CS: tl.constexpr, BH: tl.constexpr,
):
    pid_bc = tl.program_id(0).to(tl.int64)
    b = pid_bc // nchunks
    c = pid_bc % nchunks
    t = tl.arange(0, CS)
    hh = tl.program_id(1) * BH + tl.arange(0, BH)
    pos = c * CS + t
    hmask = hh < H
    m = (pos[:, None] < L) & hmask[None, :]
    off = (b * H + hh[None, :]) * nchunks * CS + c * CS + t[:, None]
    dtp = tl.load(dtp_ptr + off, mask=hmask[None, :], other=0.0)
    g_acs = tl.load(gacs_ptr + off, mask=hmask[None, :], other=0.0)
    g_dtp = tl.load(gdtp_ptr + off, mask=hmask[None, :], other=0.0)
    A = tl.load(A_ptr + hh, mask=hmask, other=0.0).to(tl.float32)
    g_acs -= dtp * g_dtp  # acs_s also enters through exp(−acs_s) next to every Δ_s: the column part
    g_a = tl.cumsum(g_acs, axis=0, reverse=True)  # gradient of Δ_u A
    g_dtp += g_a * A[None, :]
    g_dtp = tl.where(m, g_dtp, 0.0)
    tl.store(dA_part_ptr + pid_bc * H + hh, tl.sum(g_a * dtp, axis=0), mask=hmask)
    v = tl.load(dt_ptr + b * s_db + pos[:, None] * s_dl + hh[None, :] * s_dh, mask=m, other=0.0)
    v = v.to(tl.float32)
    if HAS_BIAS:
        v += tl.load(bias_ptr + hh, mask=hmask, other=0.0).to(tl.float32)[None, :]
    g = g_dtp
    if CLAMP:
        sp = v
        if SOFTPLUS:
            sp = _softplus(v)
        g = tl.where((sp >= dt_min) & (sp <= dt_max), g, 0.0)
    if SOFTPLUS:
        g = tl.where(v <= 20.0, g * tl.sigmoid(v), g)
    tl.store(ddt_ptr + b * s_gb + pos[:, None] * s_gl + hh[None, :] * s_gh, g, mask=m)
    if HAS_BIAS:
        tl.store(dbias_part_ptr + pid_bc * H + hh, tl.sum(g, axis=0), mask=hmask)


def _heads_block(H: int) -> int:
    return min(triton.next_power_of_2(H), 16)


def dt_cumsum_fwd(
    dt: torch.Tensor, A: torch.Tensor, chunk_size: int, dt_bias: torch.Tensor | None,
    dt_softplus: bool, dt_limit: tuple[float, float],
) -> tuple[torch.Tensor, torch.Tensor]:
    """dt (batch, L, heads) -> (Δ, acs), both fp32 (batch, heads, nchunks, chunk_size)."""
    b, L, H = dt.shape
    nc = triton.cdiv(L, chunk_size)
    dtp = torch.empty(b, H, nc, chunk_size, device=dt.device, dtype=torch.float32)
    acs = torch.empty_like(dtp)
    BH = _heads_block(H)
    clamp = tuple(dt_limit) != (0.0, float("inf"))
    grid = (b * nc, triton.cdiv(H, BH))
    _dt_cumsum_fwd_kernel[grid](
        dt, dt_bias if dt_bias is not None else dt, A, dtp, acs,
        L, H, nc, dt.stride(0), dt.stride(1), dt.stride(2), float(dt_limit[0]), float(dt_limit[1]),
        HAS_BIAS=dt_bias is not None, SOFTPLUS=dt_softplus, CLAMP=clamp, CS=chunk_size, BH=BH,
    )
    return dtp, acs


def dt_cumsum_bwd(
    dt: torch.Tensor, A: torch.Tensor, dt_bias: torch.Tensor | None, dt_softplus: bool,
    dt_limit: tuple[float, float], dtp: torch.Tensor, g_acs: torch.Tensor, g_dtp: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Gradients (d dt (batch, L, heads) fp32, dA (heads,), d dt_bias (heads,) or None)."""
    b, L, H = dt.shape
    nc, cs = dtp.shape[2], dtp.shape[3]
    ddt = torch.empty(b, L, H, device=dt.device, dtype=torch.float32)
    dA_part = torch.empty(b * nc, H, device=dt.device, dtype=torch.float32)
    dbias_part = torch.empty_like(dA_part) if dt_bias is not None else dA_part
    BH = _heads_block(H)
    clamp = tuple(dt_limit) != (0.0, float("inf"))
    grid = (b * nc, triton.cdiv(H, BH))
    _dt_cumsum_bwd_kernel[grid](
        dt, dt_bias if dt_bias is not None else dt, A, dtp, g_acs, g_dtp, ddt, dA_part, dbias_part,
        L, H, nc, dt.stride(0), dt.stride(1), dt.stride(2), ddt.stride(0), ddt.stride(1), ddt.stride(2),
        float(dt_limit[0]), float(dt_limit[1]),
        HAS_BIAS=dt_bias is not None, SOFTPLUS=dt_softplus, CLAMP=clamp, CS=cs, BH=BH,
    )
    dbias = dbias_part.sum(0) if dt_bias is not None else None
    return ddt, dA_part.sum(0), dbias
