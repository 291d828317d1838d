"""Sums over the 32 lanes of a warp for tiles laid out one row per lane, as a reduce-scatter.

The time-sequential scan kernels hold a (BLOCK_D, NP) tile with one channel (row) per thread and all NP
states of that channel in the thread; ḡB_t and ḡC_t are sums over channels. ``tl.sum`` over the
channels of a warp is an all-reduce: 5 butterfly levels, each shuffling all NP values (5·NP shuffles,
80 at NP = 16), and every lane ends with all NP sums although each address needs one atomic add.

``warp_sum_scatter`` is the butterfly reduce-scatter instead. At the level with lane distance k
(k = 16, 8, 4, 2, 1) a lane keeps one half of its values (the upper half if its lane bit k is set),
sends the other half to lane ^ k and adds what it receives: the number of values halves at each level,
so the exchanges are NP/2 + NP/4 + ... (NP - 1 when NP <= 32, 15 at NP = 16; then one more level per
lane bit left). Afterwards lane l holds the warp's sums for the R = max(NP / 32, 1) states
n = l·NP/32 + r (integer division, r < R); for NP < 32 the 32/NP lanes with the same n hold the same
sum, and the one with l·NP divisible by 32 is the representative.

The exchange "row d takes row d ^ k" is written in Triton (a reshape and ``tl.flip`` of the size-2 axis
that is lane bit k), so the compiler lowers it for whatever layout it picks: with rows on lanes, one
shuffle per value. (An inline-PTX ``shfl.sync.bfly`` version, which is only right when the operand's rows
lie on lanes in order, gave a wrong ḡB on the H200 with triton 3.6 while ḡC was right: 2026-12-04.)
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def xor_rows(x, k: tl.constexpr):
    """Row d of the (BLOCK_D, R) tile ``x`` replaced by row d ^ k (k a power of two below BLOCK_D)."""
    BD: tl.constexpr = x.shape[0]
    R: tl.constexpr = x.shape[1]
    return tl.reshape(tl.flip(tl.reshape(x, (BD // (2 * k), 2, k, R)), 1), (BD, R))


@triton.jit
def halves(x):
    """(lower, upper) halves of the second axis of a (BLOCK_D, M) tile (in-thread: no data moves)."""
    BD: tl.constexpr = x.shape[0]
    M: tl.constexpr = x.shape[1]
    return tl.split(tl.permute(tl.reshape(x, (BD, 2, M // 2)), (0, 2, 1)))


@triton.jit
def warp_sum_scatter(x):
    """Reduce-scatter of a (BLOCK_D, NP) fp32 tile over each warp's 32 rows (module docstring); BLOCK_D a
    multiple of 32.

    Returns (s, n, rep): s (BLOCK_D, R) the sums this lane holds, n (BLOCK_D, R) their state indices,
    rep (BLOCK_D, 1) true on one lane of each group that holds the same sums."""
    BD: tl.constexpr = x.shape[0]
    NP: tl.constexpr = x.shape[1]
    lane = (tl.arange(0, BD) % 32)[:, None]
    s = x
    for i in tl.static_range(5):  # lane distance 16 >> i
        if (NP >> i) >= 2:  # halve: keep one half, send the other
            lo, hi = halves(s)
            up = (lane & (16 >> i)) != 0
            s = tl.where(up, hi, lo) + xor_rows(tl.where(up, lo, hi), 16 >> i)
        else:  # one value left: plain butterfly add
            s = s + xor_rows(s, 16 >> i)
    R: tl.constexpr = (NP + 31) // 32
    n = (lane * NP) // 32 + tl.arange(0, R)[None, :]
    rep = (lane * NP) % 32 == 0
    return s, n, rep
