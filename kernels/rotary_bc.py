"""The rotary SSD's pre-pass in Triton: the cumulative angles and B, C of each group turned per head.

Angles. Θ_{t,h,k} = Σ_{s≤t} Δ_{s,h} θ_{s,k} is never stored. With positions cut into blocks of ``BL``::

    S[b, h, k, j]   = Σ_{t in block j} Δ_{t,h} θ_{t,k}                    (``_block_sums``)
    O[b, h, k, j]   = (Σ_{i<j} S[b, h, k, i]) mod 2π, summed in float64     (the caller, small tensor)
    Θ_t             = O[block of t] + in-block cumsum of Δθ up to t, fp32   (``_rotate_fwd``)
    Θ_last          = (Σ_j S[b, h, k, j]) mod 2π                            (the caller)

(block index innermost, so the caller's prefix sums run along contiguous memory; over the outer
axis of a (batch, blocks, heads, R) layout they took ~0.2 ms each at 32K positions).

so the angle error is that of a ``BL``-term fp32 sum plus one rounding of the wrapped offset, however
long the sequence.

Rotation. For each position t, head h (group g = h // (heads / groups)) and pair k < R::

    (b'_{2k}, b'_{2k+1}) = R(-Θ_{t,h,k}) (b_{2k}, b_{2k+1}) = (b_{2k} cos Θ + b_{2k+1} sin Θ,
                                                             b_{2k+1} cos Θ - b_{2k} sin Θ)

and the dims 2R..N-1 copied; the same for C (``seqssm/ops/rotary_ssd.py`` has the math). One program
= a block of positions x a slice of one group's heads x one sequence: the group's B, C rows are read
once (contiguous rows, split into even/odd pairs in registers) and written once per head, in their
dtype, with the rotation in fp32 (sin.approx / cos.approx for 16-bit inputs on a GPU).

Backward, with g' the gradient of b' and (b'_e, b'_o) the rotated pair::

    g_b = Σ_{h in group} R(+Θ_h) g'_h        (one program per group sums its heads in registers)
    ∂L/∂Θ_t = g'_e b'_o - g'_o b'_e          summed over B and C (∂b'_e/∂Θ = b'_o, ∂b'_o/∂Θ = -b'_e)

(``_rotate_bwd``, which recomputes Θ from the saved offsets and also writes the block sums of ∂L/∂Θ),
then through the cumsum, with ḡ = ∂L/∂Θ_last::

    G_t = Σ_{s≥t} ∂L/∂Θ_s + ḡ                (suffix over blocks by the caller, in-block here)
    ∂L/∂Δ_{t,h} = Σ_k G_{t,h,k} θ_{t,k}      ∂L/∂θ_{t,k} = Σ_h G_{t,h,k} Δ_{t,h}

(``_angles_bwd``: one program per block of positions loops over the heads, so ∂L/∂θ needs no atomics).
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from seqssm.kernels.selective_scan_common import inline_ptx
from seqssm.kernels.selective_scan_fwd_seq import sincos

BL = 32  # positions per program, and per angle block
WARPS = 8  # the backward holds ~12 (BL, R) fp32 tiles: 8 warps keep them in registers at R = 64
# About how many programs the head split aims at (``head_split``). Rotary SSD fwd+bwd at 1 x 32K (H200, graph;
# bench/results/ssd_chunks_2026-12-04_h200_rotary_split_blocks.md): 1024 4.84 ms, 4096 4.96, 16384 5.39.
PROGRAMS = 1024


@triton.jit
def _pairs(X, row, j, m2, BLOCK_L: tl.constexpr, BR: tl.constexpr):
    """The (even, odd) parts (BLOCK_L, BR) of the first 2·BR dims of rows ``row``, fp32: one contiguous
    row load, split in registers (strided even/odd loads and stores were 20x slower on the GPU)."""
    x = tl.load(X + row + j[None, :], mask=m2, other=0.0).to(tl.float32)
    return tl.split(tl.reshape(x, (BLOCK_L, BR, 2)))


@triton.jit
def _put(X, row, j, m2, even, odd, BLOCK_L: tl.constexpr, BR: tl.constexpr):
    """Store (even, odd) pairs interleaved into the first 2·BR dims of rows ``row``, in X's dtype."""
    tl.store(X + row + j[None, :], tl.reshape(tl.join(even, odd), (BLOCK_L, 2 * BR)).to(X.dtype.element_ty),
             mask=m2)


@triton.jit
def _block(L, BLOCK_L: tl.constexpr):
    """This program's block pid_l, second grid index (a head, or a group in the backward), batch, positions
    t (int64) and their mask."""
    pid_l, h, b = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    t = (pid_l * BLOCK_L + tl.arange(0, BLOCK_L)).to(tl.int64)
    return pid_l, h, b, t, t < L


@triton.jit
def _steps(DELTA, THETA, b, h, t, tm, k, L, H, R):
    """Δ_{t,h} (BLOCK_L,) and Δ_{t,h} θ_{t,k} (BLOCK_L, BR) in fp32, zero outside L and R."""
    delta = tl.load(DELTA + (b * L + t) * H + h, mask=tm, other=0.0).to(tl.float32)
    theta = tl.load(THETA + (b * L + t[:, None]) * R + k[None, :], mask=tm[:, None] & (k < R)[None, :], other=0.0)
    return delta, delta[:, None] * theta.to(tl.float32)


@triton.jit
def _group_rows(b, gs, t, tm, L, H, G, N, R, BR: tl.constexpr, BREST: tl.constexpr):
    """For a program = (block of positions, slice ``gs`` of a group's heads): its group g, first head and
    head count, the group rows of B, C (BLOCK_L, 1), pair columns j (2·BR) with their mask, pair
    indices k with their mask, the other dims n (BREST) with their mask."""
    split = tl.num_programs(1) // G
    g, part = gs // split, gs % split
    hpp = H // G // split  # heads per program
    src = ((b * L + t[:, None]) * G + g) * N
    j = tl.arange(0, 2 * BR)
    k = tl.arange(0, BR)
    n = 2 * R + tl.arange(0, BREST)[None, :]
    return (g * split + part) * hpp, hpp, src, j, tm[:, None] & (j < 2 * R)[None, :], k, \
        tm[:, None] & (k < R)[None, :], n, tm[:, None] & (n < N)


@triton.jit
def _head_angles(DELTA, OFF, theta, b, h, pid_l, t, tm, k, L, H, R, NBLK, FAST: tl.constexpr):
    """sin, cos of Θ_t = O[block] + Σ_{s≤t in block} Δ_{s,h} θ_s for head h, (BLOCK_L, BR) fp32."""
    delta = tl.load(DELTA + (b * L + t) * H + h, mask=tm, other=0.0).to(tl.float32)
    off = tl.load(OFF + ((b * H + h) * R + k) * NBLK + pid_l, mask=k < R, other=0.0)
    return sincos(tl.cumsum(delta[:, None] * theta, 0) + off[None, :], FAST)


@triton.jit
def _block_sums(
    DELTA, THETA, S, L, H, R, NBLK,
    BLOCK_L: tl.constexpr, BR: tl.constexpr,
):  # fmt: skip
    """S[b, h, :, j] = Σ_{t in block j} Δ_{t,h} θ_t."""
    pid_l, h, b, t, tm = _block(L, BLOCK_L)
    k = tl.arange(0, BR)
    _, step = _steps(DELTA, THETA, b, h, t, tm, k, L, H, R)
    tl.store(S + ((b * H + h) * R + k) * NBLK + pid_l, tl.sum(step, 0), mask=k < R)


@triton.jit
def _rotate_fwd(
    B, C, DELTA, THETA, OFF, BO, CO, L, H, G, N, R, NBLK,
    BLOCK_L: tl.constexpr, BR: tl.constexpr, BREST: tl.constexpr, FAST: tl.constexpr,
):  # fmt: skip
    """One program = a block of positions x a slice of a group's heads: the group's B, C rows and θ are
    read once, then each head's angles and rotated rows are computed and written."""
    pid_l, gs, b, t, tm = _block(L, BLOCK_L)
    h0, hpp, src, j, m2, k, mk, n, mr = _group_rows(b, gs, t, tm, L, H, G, N, R, BR, BREST)
    theta = tl.load(THETA + (b * L + t[:, None]) * R + k[None, :], mask=mk, other=0.0).to(tl.float32)
    b_e, b_o = _pairs(B, src, j, m2, BLOCK_L, BR)
    c_e, c_o = _pairs(C, src, j, m2, BLOCK_L, BR)
    b_r = tl.load(B + src + n, mask=mr, other=0.0)
    c_r = tl.load(C + src + n, mask=mr, other=0.0)
    for i in range(hpp):
        h = h0 + i
        sn, cs = _head_angles(DELTA, OFF, theta, b, h, pid_l, t, tm, k, L, H, R, NBLK, FAST)
        dst = ((b * L + t[:, None]) * H + h) * N
        _put(BO, dst, j, m2, b_e * cs + b_o * sn, b_o * cs - b_e * sn, BLOCK_L, BR)
        _put(CO, dst, j, m2, c_e * cs + c_o * sn, c_o * cs - c_e * sn, BLOCK_L, BR)
        tl.store(BO + dst + n, b_r, mask=mr)
        tl.store(CO + dst + n, c_r, mask=mr)


@triton.jit
def _rotate_bwd(
    B, C, DELTA, THETA, OFF, GBO, GCO, GB, GC, GANG, GS, L, H, G, N, R, NBLK,
    BLOCK_L: tl.constexpr, BR: tl.constexpr, BREST: tl.constexpr, FAST: tl.constexpr,
):  # fmt: skip
    """One program = a block of positions x one slice of a group's heads: GB, GC summed over the slice's
    heads in registers and written once (GB, GC: (SPLIT, batch, L, G, N), slices summed by the caller);
    ∂L/∂Θ per head and element (GANG) and its block sums (GS)."""
    pid_l, gs, b, t, tm = _block(L, BLOCK_L)
    h0, hpp, src, j, m2, k, mk, n, mr = _group_rows(b, gs, t, tm, L, H, G, N, R, BR, BREST)
    theta = tl.load(THETA + (b * L + t[:, None]) * R + k[None, :], mask=mk, other=0.0).to(tl.float32)
    b_e, b_o = _pairs(B, src, j, m2, BLOCK_L, BR)
    c_e, c_o = _pairs(C, src, j, m2, BLOCK_L, BR)
    zp = tl.zeros((BLOCK_L, BR), dtype=tl.float32)
    zr = tl.zeros((BLOCK_L, BREST), dtype=tl.float32)
    gb_e, gb_o, gb_r, gc_e, gc_o, gc_r = zp, zp, zr, zp, zp, zr
    for i in range(hpp):
        h = h0 + i
        sn, cs = _head_angles(DELTA, OFF, theta, b, h, pid_l, t, tm, k, L, H, R, NBLK, FAST)
        dst = ((b * L + t[:, None]) * H + h) * N
        ge, go = _pairs(GBO, dst, j, m2, BLOCK_L, BR)
        gb_e, gb_o = gb_e + ge * cs - go * sn, gb_o + ge * sn + go * cs
        dang = ge * (b_o * cs - b_e * sn) - go * (b_e * cs + b_o * sn)
        ge, go = _pairs(GCO, dst, j, m2, BLOCK_L, BR)
        gc_e, gc_o = gc_e + ge * cs - go * sn, gc_o + ge * sn + go * cs
        dang += ge * (c_o * cs - c_e * sn) - go * (c_e * cs + c_o * sn)
        gb_r += tl.load(GBO + dst + n, mask=mr, other=0.0).to(tl.float32)
        gc_r += tl.load(GCO + dst + n, mask=mr, other=0.0).to(tl.float32)
        tl.store(GANG + ((b * L + t[:, None]) * H + h) * R + k[None, :], dang, mask=mk)
        tl.store(GS + ((b * H + h) * R + k) * NBLK + pid_l, tl.sum(dang, 0), mask=k < R)
    offset = (gs % (tl.num_programs(1) // G)).to(tl.int64) * tl.num_programs(2) * L * G * N  # this slice's copy
    _put(GB + offset, src, j, m2, gb_e, gb_o, BLOCK_L, BR)
    _put(GC + offset, src, j, m2, gc_e, gc_o, BLOCK_L, BR)
    tl.store(GB + offset + src + n, gb_r, mask=mr)
    tl.store(GC + offset + src + n, gc_r, mask=mr)


@triton.jit
def _angles_bwd(
    DELTA, THETA, GANG, GOFF, GDELTA, GTHETA, L, H, R, NBLK,
    BLOCK_L: tl.constexpr, BR: tl.constexpr,
):  # fmt: skip
    """G_t = (in-block suffix sum of ∂L/∂Θ) + GOFF[block] per head; ∂L/∂Δ per head, ∂L/∂θ over heads."""
    pid_l, b = tl.program_id(0), tl.program_id(1)
    t = (pid_l * BLOCK_L + tl.arange(0, BLOCK_L)).to(tl.int64)
    tm = t < L
    k = tl.arange(0, BR)
    m = tm[:, None] & (k < R)[None, :]
    theta = tl.load(THETA + (b * L + t[:, None]) * R + k[None, :], mask=m, other=0.0).to(tl.float32)
    gtheta = tl.zeros((BLOCK_L, BR), dtype=tl.float32)
    for h in range(H):
        dang = tl.load(GANG + ((b * L + t[:, None]) * H + h) * R + k[None, :], mask=m, other=0.0)
        goff = tl.load(GOFF + ((b * H + h) * R + k) * NBLK + pid_l, mask=k < R, other=0.0)
        suffix = tl.sum(dang, 0)[None, :] - tl.cumsum(dang, 0) + dang + goff[None, :]  # Σ_{s≥t}
        delta = tl.load(DELTA + (b * L + t) * H + h, mask=tm, other=0.0).to(tl.float32)
        tl.store(GDELTA + (b * L + t) * H + h, tl.sum(suffix * theta, 1), mask=tm)
        gtheta += suffix * delta[:, None]
    tl.store(GTHETA + (b * L + t[:, None]) * R + k[None, :], gtheta, mask=m)


def _meta(N: int, R: int) -> dict:
    return dict(BLOCK_L=BL, BR=triton.next_power_of_2(R), BREST=triton.next_power_of_2(max(N - 2 * R, 1)))


def _fast(B: torch.Tensor) -> bool:
    """The GPU's sin.approx / cos.approx (absolute error ~1e-6 on the wrapped angles) for 16-bit B, C;
    libdevice for fp32 / float64 and under the interpreter."""
    return inline_ptx(B) and B.dtype in (torch.bfloat16, torch.float16)


def head_split(heads_per_group: int, programs: int) -> int:
    """Into how many slices both kernels cut each group's heads: the fewest that give about ``PROGRAMS``
    programs (fewer slices read B, C and θ fewer times; in the backward each slice's B, C gradients are
    a full fp32 copy summed afterwards); a divisor of ``heads_per_group``."""
    want = min(heads_per_group, max(1, -(-PROGRAMS // programs)))
    return next(d for d in range(want, heads_per_group + 1) if heads_per_group % d == 0)


def _offsets(S: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Block sums S (batch, heads, R, nblk) -> the offset entering each block and Θ_last (batch, heads,
    R), both wrapped into [0, 2π) after a float64 prefix sum, fp32."""
    S = S.double()
    inclusive = S.cumsum(-1)
    offsets = torch.remainder(inclusive - S, 2 * math.pi).float()
    return offsets, torch.remainder(inclusive[..., -1], 2 * math.pi).float()


def _suffix(GS: torch.Tensor, glast: torch.Tensor) -> torch.Tensor:
    """Gradient entering each block from the right, Σ_{i>j} GS[..., i] + ∂L/∂Θ_last, as the total minus
    the inclusive prefix sum in float64; GS (batch, heads, R, nblk), glast (batch, heads, R) -> fp32."""
    inclusive = GS.double().cumsum(-1)
    return (inclusive[..., -1:] - inclusive + glast[..., None].double()).float()


class _RotaryPrepass(torch.autograd.Function):
    @staticmethod
    def forward(ctx, B, C, delta, theta):
        batch, L, G, N = B.shape
        H, R = delta.shape[2], theta.shape[2]
        nblk, meta = triton.cdiv(L, BL), _meta(N, R)
        B, C, delta, theta = B.contiguous(), C.contiguous(), delta.contiguous(), theta.contiguous()
        S = torch.empty(batch, H, R, nblk, device=B.device, dtype=torch.float32)
        _block_sums[(nblk, H, batch)](delta, theta, S, L, H, R, nblk, BLOCK_L=BL, BR=meta["BR"])
        offsets, last = _offsets(S)
        BO = torch.empty(batch, L, H, N, device=B.device, dtype=B.dtype)
        CO = torch.empty(batch, L, H, N, device=C.device, dtype=C.dtype)
        split = head_split(H // G, nblk * G * batch)
        _rotate_fwd[(nblk, G * split, batch)](B, C, delta, theta, offsets, BO, CO, L, H, G, N, R, nblk, **meta,
                                              FAST=_fast(B), num_warps=WARPS)
        ctx.save_for_backward(B, C, delta, theta, offsets)
        return BO, CO, last.to(delta.dtype)

    @staticmethod
    def backward(ctx, gBO, gCO, glast):
        B, C, delta, theta, offsets = ctx.saved_tensors
        batch, L, G, N = B.shape
        H, R = delta.shape[2], theta.shape[2]
        nblk, meta = offsets.shape[-1], _meta(N, R)
        gBO = torch.zeros(batch, L, H, N, device=B.device, dtype=B.dtype) if gBO is None else gBO.contiguous()
        gCO = torch.zeros(batch, L, H, N, device=C.device, dtype=C.dtype) if gCO is None else gCO.contiguous()
        glast = torch.zeros(batch, H, R, device=B.device) if glast is None else glast.float()
        split = head_split(H // G, nblk * G * batch)
        GB = torch.empty(split, batch, L, G, N, device=B.device, dtype=torch.float32)
        GC = torch.empty_like(GB)
        gang = torch.empty(batch, L, H, R, device=B.device, dtype=torch.float32)
        GS = torch.empty_like(offsets)
        grid = (nblk, G * split, batch)  # a slice of a group's heads per program: B, C gradients summed in registers
        _rotate_bwd[grid](B, C, delta, theta, offsets, gBO, gCO, GB, GC, gang, GS, L, H, G, N, R, nblk, **meta,
                          FAST=_fast(B), num_warps=WARPS)
        GB, GC = (GB[0], GC[0]) if split == 1 else (GB.sum(0), GC.sum(0))
        gdelta = torch.empty(batch, L, H, device=B.device, dtype=torch.float32)
        gtheta = torch.empty(batch, L, R, device=B.device, dtype=torch.float32)
        _angles_bwd[(nblk, batch)](
            delta, theta, gang, _suffix(GS, glast), gdelta, gtheta, L, H, R, nblk, BLOCK_L=BL, BR=meta["BR"]
        )
        return GB.to(B.dtype), GC.to(C.dtype), gdelta.to(delta.dtype), gtheta.to(theta.dtype)


def rotary_prepass_triton(
    B: torch.Tensor, C: torch.Tensor, delta: torch.Tensor, theta: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """B, C (batch, L, groups, N); delta Δ (batch, L, heads); theta (batch, L, R) -> R(-Θ)B, R(-Θ)C
    (batch, L, heads, N) in B's and C's dtypes and Θ_last (batch, heads, R) wrapped into [0, 2π), in
    delta's dtype; differentiable in all four inputs. No (batch, L, heads, R) tensor in the forward."""
    return _RotaryPrepass.apply(B, C, delta, theta)
