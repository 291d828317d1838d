"""Selective-scan forward, time-sequential inside each thread (real or complex A, time-varying B/C).

Math (Gu & Dao 2023, eq. 2a-2b; Algorithm 2), for batch b, channel d, state n::

    Δ_t   = softplus(delta_t + delta_bias)          (both optional)
    h_t   = exp(Δ_t A) h_{t-1} + Δ_t u_t B_t        (2a)
    y_t   = C_t h_t + D u_t                          (2b)
    out_t = y_t silu(z_t)

Layout: one program owns BLOCK_D = 32·num_warps channels of one sequence for one time segment. The
state is a (BLOCK_D, N) tile: each thread holds one channel and all N states, so the recurrence is
N independent fused multiply-adds per step and y = Σ_n C h is a sum inside the thread (no shuffles).
u, Δ, z are read as (BLOCK_D, T) tiles, each thread loading its channel's T steps as one 16-byte
vector (T = 8 for bf16: Triton's coalescing then keeps T inside the thread), and the T steps of a
tile are unrolled; columns are picked out of the
tile with compile-time selects. B_t and C_t are N-vectors read from (batch, groups, L, N) copies
(one broadcast vector load per step); y is gathered into a (BLOCK_D, T) tile and stored coalesced.

Segments (parallelism when batch·dim/BLOCK_D is small): with ``LOCAL`` the kernel runs its segment
from h = 0 and writes only the segment's final state and its total decay ∏_t exp(Δ_t A) =
exp(A Σ_t Δ_t); ``selective_scan_seg.propagate`` then gives every segment its true initial state and
the kernel runs again (not ``LOCAL``) from it, writing ``out``. States are (batch, S, dim, N), fp32.
With ``SAVE_CKPT`` the state at the start of every CK-step chunk is written to (batch, n_ck, dim, N)
for the backward.

Complex A (``CPLX``, mamba_ssm's complex Mamba-1): the state is two (BLOCK_D, N) tiles (real, imag),
exp(Δ A) = 2^(Δ Re A log2 e)·(cos(Δ Im A), sin(Δ Im A)) (one ex2, one sin, one cos per element and step),
h_t = exp(Δ_t A) h_{t-1} + Δ_t u_t B_t with complex B_t, y_t = 2 Re(Σ_n C_t h_t) + D u_t. B, C come as
(batch, groups, L, 2N): per step the real N-vector, then the imaginary one. A (dim, 2N), states,
checkpoints and decays (..., dim, 2N) hold (re, im) pairs: the layout of the chunked kernels, whose
backward takes these checkpoints.
"""

from __future__ import annotations

import triton
import triton.language as tl

from seqssm.kernels.selective_scan_common import batch_inner, inline_ptx, softplus


@triton.jit
def col(tile, offs_t, j: tl.constexpr):
    """Column j of a (BLOCK_D, T) tile whose T axis lies inside each thread: folds to a register
    read (adding -0.0 is exact, so the compiler drops the other T - 1 terms)."""
    return tl.sum(tl.where(offs_t[None, :] == j, tile, -0.0), axis=1)


@triton.jit
def put(tile, offs_t, j: tl.constexpr, v):
    """The tile with column j replaced by v (a compile-time select, as in ``col``)."""
    return tl.where(offs_t[None, :] == j, v[:, None], tile)


@triton.jit
def delta_tile(dt_ptr, offs, m, bias, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """(Δ, x) of a (BLOCK_D, T) tile: x = delta + bias, Δ = softplus(x) (or x), Δ = 0 on masked steps
    (exp(0) = 1 and no input: the state passes through)."""
    x = tl.load(dt_ptr + offs, mask=m, other=0.0).to(tl.float32)
    if HAS_BIAS:
        x += bias[:, None]
    dd = x
    if SOFTPLUS:
        dd = softplus(x)
    return tl.where(m, dd, 0.0), x


@triton.jit
def bc_at(ptr, bc_row, t, L, offs_n, m_n, N: tl.constexpr):
    """B_t or C_t as an fp32 N-vector from the (batch, groups, L, N) copy; zero past the end."""
    return tl.load(ptr + bc_row + t * N + offs_n, mask=m_n & (t < L), other=0.0).to(tl.float32)


@triton.jit
def step(h, A2, dj, uj, bj):
    """h_t = exp(Δ_t A) h_{t-1} + Δ_t u_t B_t (eq. 2a) for a (BLOCK_D, N) state; A2 = A·log2(e)."""
    return tl.exp2(dj[:, None] * A2) * h + (dj * uj)[:, None] * bj[None, :]


@triton.jit
def sincos(x, FAST: tl.constexpr):
    """(sin x, cos x); FAST: the GPU's sin.approx / cos.approx (MUFU, as mamba_ssm's --use_fast_math
    sincosf; absolute error ~1e-6 for the |x| < 100 of Δ·Im A), else libdevice / numpy (interpreter)."""
    if FAST:
        sn = tl.inline_asm_elementwise("sin.approx.f32 $0, $1;", "=f,f", [x], dtype=tl.float32, is_pure=True,
                                       pack=1)
        cs = tl.inline_asm_elementwise("cos.approx.f32 $0, $1;", "=f,f", [x], dtype=tl.float32, is_pure=True,
                                       pack=1)
    else:
        sn = tl.sin(x)
        cs = tl.cos(x)
    return sn, cs


@triton.jit
def exp_complex(x2, xi, FAST: tl.constexpr):
    """exp(x) for complex x as (re, im): 2^(x2)·(cos xi, sin xi), x2 = Re x·log2(e), xi = Im x."""
    mag = tl.exp2(x2)
    sn, cs = sincos(xi, FAST)
    return mag * cs, mag * sn


@triton.jit
def step_complex(hr, hi, A2, Ai, dj, uj, br, bi, FAST: tl.constexpr):
    """Complex h_t = exp(Δ_t A) h_{t-1} + Δ_t u_t B_t on (real, imag) tiles; A2 = Re A·log2(e), Ai = Im A."""
    ar, ai = exp_complex(dj[:, None] * A2, dj[:, None] * Ai, FAST)
    du = (dj * uj)[:, None]
    return ar * hr - ai * hi + du * br[None, :], ar * hi + ai * hr + du * bi[None, :]


@triton.jit
def scan_fwd_seq_kernel(
    u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, hin_ptr,
    out_ptr, hout_ptr, decay_ptr, ckpt_ptr,
    dim, L, seg_len, n_seg, ch_per_group, G,
    N: tl.constexpr, NP: tl.constexpr, BLOCK_D: tl.constexpr, T: tl.constexpr, CK: tl.constexpr,
    LOCAL: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr, HAS_HIN: tl.constexpr, SAVE_CKPT: tl.constexpr,
    CPLX: tl.constexpr = False, FAST_TRIG: tl.constexpr = False, BATCH_INNER: tl.constexpr = False,
):
    pid_d = tl.program_id(0)
    b64 = tl.program_id(1).to(tl.int64)
    s = tl.program_id(2)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_d64 = offs_d.to(tl.int64)
    offs_n = tl.arange(0, NP)
    offs_t = tl.arange(0, T)
    m_d = offs_d < dim
    m_n = offs_n < N
    g = ((pid_d * BLOCK_D) // ch_per_group).to(tl.int64)

    # A in log2 units: exp(Δ A) is one exp2 per (d, n). A is (dim, N), complex (dim, N, 2) = (re, im).
    K: tl.constexpr = 2 if CPLX else 1
    m_dn = m_d[:, None] & m_n[None, :]
    a_off = offs_d64[:, None] * (N * K) + offs_n[None, :] * K
    A2 = tl.load(A_ptr + a_off, mask=m_dn, other=0.0) * 1.4426950408889634
    Ai = A2
    if CPLX:
        Ai = tl.load(A_ptr + a_off + 1, mask=m_dn, other=0.0)
    if HAS_D:
        Dv = tl.load(D_ptr + offs_d, mask=m_d, other=0.0).to(tl.float32)
    bias = tl.zeros((BLOCK_D,), tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d, mask=m_d, other=0.0).to(tl.float32)

    # states (batch, S, dim, N[, 2]): complex as (re, im) pairs
    st_off = ((b64 * n_seg + s) * dim + offs_d64[:, None]) * (N * K) + offs_n[None, :] * K
    h = tl.zeros((BLOCK_D, NP), tl.float32)
    hi = tl.zeros((BLOCK_D, NP), tl.float32)
    if HAS_HIN:
        h = tl.load(hin_ptr + st_off, mask=m_dn, other=0.0)
        if CPLX:
            hi = tl.load(hin_ptr + st_off + 1, mask=m_dn, other=0.0)
    dsum = tl.zeros((BLOCK_D,), tl.float32)

    if BATCH_INNER:  # (dim, batch, L) in memory: mamba_ssm's (dim, batch·L) projections
        row = (offs_d64 * tl.num_programs(1) + b64) * L
    else:  # (batch, dim, L)
        row = (b64 * dim + offs_d64) * L
    # start of this (batch, group) in (batch, groups, L, N); complex (batch, groups, L, 2, N): the step's
    # real N-vector, then its imaginary one
    bc_row = (b64 * G + g) * L * (N * K)
    start = s * seg_len
    end = tl.minimum(start + seg_len, L)
    for t0 in range(start, end, T):
        t = t0 + offs_t
        m = m_d[:, None] & (t[None, :] < L)
        offs = row[:, None] + t[None, :]
        if SAVE_CKPT:
            if t0 % CK == 0:
                c_off = (((b64 * tl.cdiv(L, CK) + t0 // CK) * dim + offs_d64[:, None]) * (N * K)
                         + offs_n[None, :] * K)
                tl.store(ckpt_ptr + c_off, h, mask=m_dn)
                if CPLX:
                    tl.store(ckpt_ptr + c_off + 1, hi, mask=m_dn)
        uu = tl.load(u_ptr + offs, mask=m, other=0.0).to(tl.float32)
        dd, _ = delta_tile(dt_ptr, offs, m, bias, HAS_BIAS, SOFTPLUS)
        if LOCAL:
            dsum += tl.sum(dd, axis=1)
        acc = tl.zeros((BLOCK_D, T), tl.float32)
        for j in tl.static_range(T):
            if CPLX:
                h, hi = step_complex(h, hi, A2, Ai, col(dd, offs_t, j), col(uu, offs_t, j),
                                     bc_at(B_ptr, bc_row, t0 + j, L, offs_n, m_n, 2 * N),
                                     bc_at(B_ptr, bc_row + N, t0 + j, L, offs_n, m_n, 2 * N), FAST_TRIG)
                if not LOCAL:  # y = 2 Re(C h)
                    cr = bc_at(C_ptr, bc_row, t0 + j, L, offs_n, m_n, 2 * N)
                    ci = bc_at(C_ptr, bc_row + N, t0 + j, L, offs_n, m_n, 2 * N)
                    acc = put(acc, offs_t, j, 2.0 * tl.sum(h * cr[None, :] - hi * ci[None, :], axis=1))
            else:
                h = step(h, A2, col(dd, offs_t, j), col(uu, offs_t, j),
                         bc_at(B_ptr, bc_row, t0 + j, L, offs_n, m_n, N))
                if not LOCAL:
                    cj = bc_at(C_ptr, bc_row, t0 + j, L, offs_n, m_n, N)
                    acc = put(acc, offs_t, j, tl.sum(h * cj[None, :], axis=1))
        if not LOCAL:
            if HAS_D:
                acc += Dv[:, None] * uu
            if HAS_Z:
                zz = tl.load(z_ptr + offs, mask=m, other=0.0).to(tl.float32)
                acc = acc * zz * tl.sigmoid(zz)
            tl.store(out_ptr + offs, acc.to(out_ptr.dtype.element_ty), mask=m)
    tl.store(hout_ptr + st_off, h, mask=m_dn)
    if CPLX:
        tl.store(hout_ptr + st_off + 1, hi, mask=m_dn)
    if LOCAL:  # the segment's decay exp(A Σ Δ)
        if CPLX:
            pr, pi = exp_complex(A2 * dsum[:, None], Ai * dsum[:, None], FAST_TRIG)
            tl.store(decay_ptr + st_off, pr, mask=m_dn)
            tl.store(decay_ptr + st_off + 1, pi, mask=m_dn)
        else:
            tl.store(decay_ptr + st_off, tl.exp2(A2 * dsum[:, None]), mask=m_dn)


def launch_fwd_seq(u, dt, A, Bt, Ct, D, z, bias, hin, out, hout, decay, ckpt, *, local: bool,
                   softplus_: bool, seg_len: int, n_seg: int, ch_per_group: int, block_d: int, t: int,
                   ck: int, num_warps: int, cplx: bool = False) -> None:
    """u, dt, z, out: (batch, dim, L), all laid out as u: (batch, dim, L) contiguous, or (dim, batch, L) in
    memory (``batch_inner``); A: (dim, N) fp32; Bt, Ct: (batch, groups, L, N); hin, hout, decay: (batch, S,
    dim, N) fp32; ckpt: (batch, cdiv(L, ck), dim, N) fp32 or None. Complex (``cplx``): A
    (dim, 2N) = (dim, N, (re, im)), Bt, Ct (batch, groups, L, 2N) = (..., L, (re, im), N), and the states
    (..., dim, 2N) as (re, im) pairs."""
    batch, dim, L = u.shape
    N = A.shape[1] // (2 if cplx else 1)
    grid = (triton.cdiv(dim, block_d), batch, n_seg)
    scan_fwd_seq_kernel[grid](
        u, dt, A, Bt, Ct, D, z, bias, hin, out, hout, decay, ckpt,
        dim, L, seg_len, n_seg, ch_per_group, Bt.shape[1],
        N=N, NP=max(triton.next_power_of_2(N), 2), BLOCK_D=block_d, T=t, CK=ck, LOCAL=local,
        HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=bias is not None, SOFTPLUS=softplus_,
        HAS_HIN=hin is not None, SAVE_CKPT=ckpt is not None, CPLX=cplx,
        FAST_TRIG=cplx and inline_ptx(u), BATCH_INNER=batch_inner(u), num_warps=num_warps,
    )
