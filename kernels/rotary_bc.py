"""The rotary SSD's pre-pass in Triton: B and C of each group turned per head by the cumulative angles.

For each position t, head h (group g = h // (heads / groups)) and pair k < R::

    (b'_{2k}, b'_{2k+1}) = R(-Θ_{t,h,k}) (b_{2k}, b_{2k+1}) = (b_{2k} cos Θ + b_{2k+1} sin Θ,
                                                             b_{2k+1} cos Θ - b_{2k} sin Θ)

and the dims 2R..N-1 copied; the same for C (``seqssm/ops/rotary_ssd.py`` has the math). One program
= a block of positions x one head x one sequence; B, C are read from their group and written per head,
in their dtype, with the rotation in fp32. The angles Θ (fp32) come from the caller.

Backward, with g' the gradient of b' and (b'_e, b'_o) the rotated pair::

    g_b = R(+Θ) g'                           per head (summed over a group's heads by the caller)
    ∂L/∂Θ = g'_e b'_o - g'_o b'_e            summed over B and C

(∂b'_e/∂Θ = b'_o and ∂b'_o/∂Θ = -b'_e).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

BL = 32  # positions per program


@triton.jit
def _turn(X, O, src, dst, k, m, n, mr, cos, sin):
    """One of B, C: its pairs turned by -Θ and its other dims copied, from group rows to head rows."""
    e = tl.load(X + src + 2 * k[None, :], mask=m, other=0.0).to(tl.float32)
    o = tl.load(X + src + 2 * k[None, :] + 1, mask=m, other=0.0).to(tl.float32)
    tl.store(O + dst + 2 * k[None, :], (e * cos + o * sin).to(O.dtype.element_ty), mask=m)
    tl.store(O + dst + 2 * k[None, :] + 1, (o * cos - e * sin).to(O.dtype.element_ty), mask=m)
    tl.store(O + dst + n, tl.load(X + src + n, mask=mr, other=0.0), mask=mr)


@triton.jit
def _turn_back(X, GO, GX, src, dst, k, m, n, mr, cos, sin):
    """Gradient through ``_turn``: GX = R(+Θ) GO per head; returns this tensor's part of ∂L/∂Θ."""
    e = tl.load(X + src + 2 * k[None, :], mask=m, other=0.0).to(tl.float32)
    o = tl.load(X + src + 2 * k[None, :] + 1, mask=m, other=0.0).to(tl.float32)
    ge = tl.load(GO + dst + 2 * k[None, :], mask=m, other=0.0).to(tl.float32)
    go = tl.load(GO + dst + 2 * k[None, :] + 1, mask=m, other=0.0).to(tl.float32)
    tl.store(GX + dst + 2 * k[None, :], ge * cos - go * sin, mask=m)
    tl.store(GX + dst + 2 * k[None, :] + 1, ge * sin + go * cos, mask=m)
    tl.store(GX + dst + n, tl.load(GO + dst + n, mask=mr, other=0.0).to(tl.float32), mask=mr)
    return ge * (o * cos - e * sin) - go * (e * cos + o * sin)


@triton.jit
def _rows(L, H, G, N, R, BLOCK_L: tl.constexpr, BR: tl.constexpr, BREST: tl.constexpr):
    """This program's positions, pairs and row offsets: (batch b, block of positions, head h)."""
    pid_l, h, b = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    g = h // (H // G)
    t = (pid_l * BLOCK_L + tl.arange(0, BLOCK_L)).to(tl.int64)
    tm = t < L
    k = tl.arange(0, BR)
    m = tm[:, None] & (k < R)[None, :]
    a_off = ((b * L + t[:, None]) * H + h) * R + k[None, :]
    src = ((b * L + t[:, None]) * G + g) * N  # (BLOCK_L, 1) row starts in B, C
    dst = ((b * L + t[:, None]) * H + h) * N  # ... in the per-head outputs
    n = 2 * R + tl.arange(0, BREST)[None, :]
    mr = tm[:, None] & (n < N)
    return k, m, a_off, src, dst, n, mr


@triton.jit
def _rotate_fwd(
    B, C, ANG, BO, CO, L, H, G, N, R,
    BLOCK_L: tl.constexpr, BR: tl.constexpr, BREST: tl.constexpr,
):  # fmt: skip
    k, m, a_off, src, dst, n, mr = _rows(L, H, G, N, R, BLOCK_L, BR, BREST)
    ang = tl.load(ANG + a_off, mask=m, other=0.0)
    cos, sin = tl.cos(ang), tl.sin(ang)
    _turn(B, BO, src, dst, k, m, n, mr, cos, sin)
    _turn(C, CO, src, dst, k, m, n, mr, cos, sin)


@triton.jit
def _rotate_bwd(
    B, C, ANG, GBO, GCO, GB, GC, GANG, L, H, G, N, R,
    BLOCK_L: tl.constexpr, BR: tl.constexpr, BREST: tl.constexpr,
):  # fmt: skip
    k, m, a_off, src, dst, n, mr = _rows(L, H, G, N, R, BLOCK_L, BR, BREST)
    ang = tl.load(ANG + a_off, mask=m, other=0.0)
    cos, sin = tl.cos(ang), tl.sin(ang)
    dang = _turn_back(B, GBO, GB, src, dst, k, m, n, mr, cos, sin)
    dang += _turn_back(C, GCO, GC, src, dst, k, m, n, mr, cos, sin)
    tl.store(GANG + a_off, dang, mask=m)


def _meta(N: int, R: int) -> dict:
    return dict(BLOCK_L=BL, BR=triton.next_power_of_2(R), BREST=triton.next_power_of_2(max(N - 2 * R, 1)))


class _RotateBC(torch.autograd.Function):
    @staticmethod
    def forward(ctx, B, C, angle):
        batch, L, G, N = B.shape
        H, R = angle.shape[2], angle.shape[3]
        B, C, angle = B.contiguous(), C.contiguous(), angle.contiguous()
        BO = torch.empty(batch, L, H, N, device=B.device, dtype=B.dtype)
        CO = torch.empty(batch, L, H, N, device=C.device, dtype=C.dtype)
        grid = (triton.cdiv(L, BL), H, batch)
        _rotate_fwd[grid](B, C, angle, BO, CO, L, H, G, N, R, **_meta(N, R))
        ctx.save_for_backward(B, C, angle)
        return BO, CO

    @staticmethod
    def backward(ctx, gBO, gCO):
        B, C, angle = ctx.saved_tensors
        batch, L, G, N = B.shape
        H, R = angle.shape[2], angle.shape[3]
        gBO = torch.zeros_like(gBO) if gBO is None else gBO.contiguous()
        gCO = torch.zeros_like(gCO) if gCO is None else gCO.contiguous()
        GB = torch.empty(batch, L, H, N, device=B.device, dtype=torch.float32)
        GC = torch.empty_like(GB)
        gang = torch.empty_like(angle)
        grid = (triton.cdiv(L, BL), H, batch)
        _rotate_bwd[grid](B, C, angle, gBO, gCO, GB, GC, gang, L, H, G, N, R, **_meta(N, R))
        if H != G:  # the heads of a group share its B and C
            GB, GC = GB.view(batch, L, G, H // G, N).sum(3), GC.view(batch, L, G, H // G, N).sum(3)
        return GB.to(B.dtype), GC.to(C.dtype), gang


def rotate_bc_triton(B: torch.Tensor, C: torch.Tensor, angle: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """B, C (batch, L, groups, N); angle Θ (batch, L, heads, R) fp32 -> R(-Θ)B, R(-Θ)C (batch, L, heads, N),
    in B's and C's dtypes; differentiable in all three."""
    return _RotateBC.apply(B, C, angle)
