"""Selective-scan backward, time-sequential inside each thread (real or complex A, time-varying B/C).

Math (Gu & Dao 2023, eq. 2a-2b; the adjoint of the recurrence), for batch b, channel d, state n, with
a_t = exp(Δ_t A), w_t = Δ_t u_t B_t, h_t = a_t h_{t-1} + w_t, y_t = C_t h_t + D u_t, out_t = y_t silu(z_t)::

    g_t   = ḡout_t · silu(z_t)                      (gradient of y_t; ḡout_t without z)
    ḡz_t  = ḡout_t · y_t · σ(z_t) (1 + z_t (1 - σ(z_t)))
    λ_t   = C_t g_t + μ_t,   μ_{t-1} = a_t λ_t,   μ_{L-1} = ḡ(last state)      (λ_t = ∂loss/∂h_t)
    ḡq_t  = (h_t - w_t) λ_t = a_t h_{t-1} λ_t       (q_t = Δ_t A, per n)
    ḡΔ_t  = Σ_n A ḡq_t + u_t Σ_n B_t λ_t           (times σ(delta + bias) after softplus)
    ḡu_t  = Δ_t Σ_n B_t λ_t + D g_t
    ḡA    = Σ_t Δ_t ḡq_t      ḡD = Σ_t g_t u_t      ḡbias = Σ_t ḡdelta_t
    ḡB_t  = Σ_d Δ_t u_t λ_t   ḡC_t = Σ_d g_t h_t    ḡh0 = μ_{-1} = a_0 λ_0

Complex A (``CPLX``; mamba_ssm's complex Mamba-1: complex A, B_t, C_t, h, y_t = 2 Re(Σ_n C_t h_t) + D u_t).
Real inputs, complex state: the gradient of the real loss with respect to a complex z = x + i y is
taken as the complex number ∂/∂x + i ∂/∂y (PyTorch's convention for complex leaves, the chunked
backward's and the oracle's); then for w = p z, ∂/∂z = conj(p) ∂/∂w, and Re(c z) has gradient conj(c).
With ^* the conjugate::

    λ_t   = 2 g_t C_t^* + μ_t,   μ_{t-1} = a_t^* λ_t,   μ_{L-1} = ḡ(last state)      (a_t = exp(Δ_t A))
    P_t   = a_t h_{t-1} = h_t - w_t,   ḡq_t = P_t^* λ_t                           (q_t = Δ_t A)
    ḡΔ_t  = Σ_n (Re ḡq_t Re A + Im ḡq_t Im A) + u_t Σ_n Re(λ_t B_t^*)   (times σ(delta + bias))
    ḡu_t  = Δ_t Σ_n Re(λ_t B_t^*) + D g_t        Re(λ B^*) = λr Br + λi Bi
    ḡA    = Σ_t Δ_t ḡq_t  (complex)   ḡB_t = Σ_d Δ_t u_t λ_t   ḡC_t = Σ_d 2 g_t h_t^*   ḡh0 = a_0^* λ_0

(ḡΔ: q = Δ A, so ∂q/∂Δ = A and the real chain rule gives Re ḡq Re A + Im ḡq Im A.) h, μ, λ, ḡA are
(re, im) pairs of (BLOCK_D, N) tiles; ḡB_t, ḡC_t go to (batch, groups, L, 2N) = (..., L, (re, im), N)
(the staging layout of B, C); ḡA, states, μ (..., dim, 2N) as (re, im) pairs. The segment carry of μ
multiplies by conj(exp(A Σ Δ)): the ``LOCAL`` pass writes that conjugate as its decay, so
``propagate(reverse=True, cplx=True)`` is the forward's complex product. Fewer steps per tile (bwd_T_cplx)
than for real A: the T recomputed states are twice the registers.

Layout (as the forward, ``selective_scan_fwd_seq``): one program = (sequence, BLOCK_D = 32·num_warps
channels, one time segment); each thread owns one channel and all N states, so h, λ and ḡA are (BLOCK_D,
N) register tiles and every Σ_n is inside the thread. u, Δ, z, ḡout are read as (BLOCK_D, T) tiles (T
steps of a channel in one vector load), ḡu, ḡdelta, ḡz written as such tiles; B_t, C_t are broadcast
N-vectors from (batch, groups, L, N). ḡB_t, ḡC_t are sums over channels: each warp sums its 32
channels by the butterfly reduce-scatter of ``warp_sum`` (N - 1 exchanges per sum for N <= 32, after
which each lane holds one state's sum; no shared memory; ``tl.sum``'s 5·N-shuffle all-reduce when a
program has fewer than 32 channels) and adds the sums atomically into an fp32 (batch, groups, L, N)
buffer (dim/32 adds per address; the order of the adds is not fixed).

Time runs backwards chunk by chunk (CK steps, the forward's checkpoint interval). For each chunk the
state at its start is read from the forward's checkpoints and run forward once, writing the state at
each T-step tile start to a per-program scratch (thread-private, L1/L2-resident); then the tiles are
walked in reverse: the tile's T states are recomputed from its scratch entry into registers (a tuple of
T (BLOCK_D, N) tiles) and the T steps run backwards carrying μ in registers.

Segments: with ``LOCAL`` the kernel only carries μ through its segment from μ = 0 (no states needed:
λ uses Δ, C, z, ḡout) and writes the μ leaving the segment's start and the segment's decay
exp(A Σ Δ); ``selective_scan_seg.propagate(reverse=True)`` gives each segment the μ entering it from
later time, and the full pass starts from it. States, μ and per-segment parameter partials are
(batch, S, dim, N) / (batch, S, dim), fp32.
"""

from __future__ import annotations

import triton
import triton.language as tl

from seqssm.kernels.selective_scan_common import batch_inner, inline_ptx
from seqssm.kernels.selective_scan_fwd_seq import bc_at, col, delta_tile, exp_complex, put, step, step_complex
from seqssm.kernels.warp_sum import warp_sum_scatter

# ḡB_t, ḡC_t per warp by the butterfly reduce-scatter of ``warp_sum`` (N - 1 exchanges per sum for N <= 32)
# rather than tl.sum's all-reduce (5·N shuffles); bench/scan.py --plan-sweep times both
SCATTER_SUMS = True


@triton.jit
def tile_out(y, gdd, guu, uu, gy, go, zz, sz, x, Dv, gD, gb, offs, m, gu_ptr, gdt_ptr, gz_ptr,
             HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """End of a (BLOCK_D, T) tile of the full pass: the D terms, ḡz, σ(x) for softplus; stores ḡu, ḡdelta,
    ḡz; returns ḡD, ḡbias with the tile's sums added. y: Σ_n part of the output, gdd / guu: the
    state's parts of ḡΔ / ḡu."""
    if HAS_D:
        y += Dv[:, None] * uu
        guu += Dv[:, None] * gy
        gD += tl.sum(gy * uu, axis=1)
    if HAS_Z:
        gzz = go * y * sz * (1.0 + zz * (1.0 - sz))
        tl.store(gz_ptr + offs, gzz.to(gz_ptr.dtype.element_ty), mask=m)
    if SOFTPLUS:  # dΔ/dx = σ(x)
        gdd = gdd * tl.sigmoid(x)
    gdd = tl.where(m, gdd, 0.0)
    if HAS_BIAS:
        gb += tl.sum(gdd, axis=1)
    tl.store(gu_ptr + offs, guu.to(gu_ptr.dtype.element_ty), mask=m)
    tl.store(gdt_ptr + offs, gdd.to(gdt_ptr.dtype.element_ty), mask=m)
    return gD, gb


@triton.jit
def adjoint_step_complex(lr, li, A2, Ai, dj, FAST: tl.constexpr):
    """μ_{t-1} = conj(exp(Δ_t A)) λ_t on (re, im) tiles; A2 = Re A·log2(e), Ai = Im A."""
    ar, ai = exp_complex(dj[:, None] * A2, dj[:, None] * Ai, FAST)
    return ar * lr + ai * li, ar * li - ai * lr


@triton.jit
def scan_bwd_seq_kernel(
    u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, ckpt_ptr, gout_ptr, min_ptr,
    gu_ptr, gdt_ptr, gz_ptr, gA_ptr, gB_ptr, gC_ptr, gD_ptr, gbias_ptr, mout_ptr, decay_ptr, scr_ptr,
    dim, L, seg_len, n_seg, ch_per_group, G,
    N: tl.constexpr, NP: tl.constexpr, BLOCK_D: tl.constexpr, T: tl.constexpr, CK: tl.constexpr,
    LOCAL: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr, HAS_MIN: tl.constexpr, CPLX: tl.constexpr = False, FAST_TRIG: tl.constexpr = False,
    SCATTER: tl.constexpr = False, BATCH_INNER: tl.constexpr = False,
):
    pid_d = tl.program_id(0)
    n_dblk = tl.num_programs(0)
    b64 = tl.program_id(1).to(tl.int64)
    s = tl.program_id(2)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_d64 = offs_d.to(tl.int64)
    offs_n = tl.arange(0, NP)
    offs_t = tl.arange(0, T)
    m_d = offs_d < dim
    m_n = offs_n < N
    m_dn = m_d[:, None] & m_n[None, :]
    g = ((pid_d * BLOCK_D) // ch_per_group).to(tl.int64)
    LN2: tl.constexpr = 0.6931471805599453
    W: tl.constexpr = (BLOCK_D + 31) // 32  # warps (channel groups of the ḡB/ḡC sums)

    K: tl.constexpr = 2 if CPLX else 1  # complex: (re, im) pairs in A, states, μ, ḡA
    if CPLX:
        a_off = offs_d64[:, None] * (2 * N) + offs_n[None, :] * 2
        A2 = tl.load(A_ptr + a_off, mask=m_dn, other=0.0) * 1.4426950408889634
        Ai = tl.load(A_ptr + a_off + 1, mask=m_dn, other=0.0)
    else:
        A2 = tl.load(A_ptr + offs_d64[:, None] * N + offs_n[None, :], mask=m_dn, other=0.0) * 1.4426950408889634
        Ai = A2
    Dv = tl.zeros((BLOCK_D,), tl.float32)
    if HAS_D:
        Dv = tl.load(D_ptr + offs_d, mask=m_d, other=0.0).to(tl.float32)
    bias = tl.zeros((BLOCK_D,), tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d, mask=m_d, other=0.0).to(tl.float32)

    st_off = ((b64 * n_seg + s) * dim + offs_d64[:, None]) * N + offs_n[None, :]  # (batch, S, dim, N)
    if CPLX:  # (batch, S, dim, N, 2)
        st_off = ((b64 * n_seg + s) * dim + offs_d64[:, None]) * (2 * N) + offs_n[None, :] * 2
    mu = tl.zeros((BLOCK_D, NP), tl.float32)  # μ: gradient reaching the current step from later time
    mui = tl.zeros((BLOCK_D, NP), tl.float32)  # its imaginary part (complex A)
    if HAS_MIN:
        mu = tl.load(min_ptr + st_off, mask=m_dn, other=0.0)
        if CPLX:
            mui = tl.load(min_ptr + st_off + 1, mask=m_dn, other=0.0)
    gA = tl.zeros((BLOCK_D, NP), tl.float32)
    gAi = tl.zeros((BLOCK_D, NP), tl.float32)
    gD = tl.zeros((BLOCK_D,), tl.float32)
    gb = tl.zeros((BLOCK_D,), tl.float32)
    dsum = tl.zeros((BLOCK_D,), tl.float32)

    if BATCH_INNER:  # (dim, batch, L) in memory: mamba_ssm's (dim, batch·L) projections
        row = (offs_d64 * tl.num_programs(1) + b64) * L
    else:  # (batch, dim, L)
        row = (b64 * dim + offs_d64) * L
    # start of this (batch, group) in (batch, groups, L, N); complex (batch, groups, L, 2, N) (as the forward)
    bc_row = (b64 * G + g) * L * N
    if CPLX:
        bc_row = (b64 * G + g) * L * (2 * N)
    # scratch: the state at each tile start of one chunk, (programs, CK/T, K, N, BLOCK_D) from element 1.
    # Channel-fastest and 4-byte aligned on purpose: the coalescing pass then gives the access one element
    # per thread and lanes along channels, i.e. the thread that owns a channel's N states in the loop
    # reads and writes them (no layout conversion through shared memory, each access 128 B per warp).
    pid = (b64 * n_seg + s) * n_dblk + pid_d
    SCR: tl.constexpr = K * BLOCK_D * NP  # scratch elements per tile start
    scr = scr_ptr + 1 + pid * (CK // T) * SCR + offs_n[None, :] * BLOCK_D + tl.arange(0, BLOCK_D)[:, None]
    start = s * seg_len
    end = tl.minimum(start + seg_len, L)
    n_ck = tl.cdiv(end - start, CK)
    for i in range(0, n_ck):
        c0 = start + (n_ck - 1 - i) * CK
        c1 = tl.minimum(c0 + CK, end)
        n_tiles = tl.cdiv(c1 - c0, T)
        if not LOCAL:
            # forward over the chunk from its checkpoint: the state at every tile start -> scratch
            if CPLX:
                c_off = (((b64 * tl.cdiv(L, CK) + c0 // CK) * dim + offs_d64[:, None]) * (2 * N)
                         + offs_n[None, :] * 2)
                h = tl.load(ckpt_ptr + c_off, mask=m_dn, other=0.0)
                hi = tl.load(ckpt_ptr + c_off + 1, mask=m_dn, other=0.0)
            else:
                c_off = ((b64 * tl.cdiv(L, CK) + c0 // CK) * dim + offs_d64[:, None]) * N + offs_n[None, :]
                h = tl.load(ckpt_ptr + c_off, mask=m_dn, other=0.0)
                hi = h
            tl.debug_barrier()  # the previous chunk's scratch reads are done
            for k in range(0, n_tiles):
                t0 = c0 + k * T
                tl.store(scr + k * SCR, h)
                if CPLX:
                    tl.store(scr + k * SCR + BLOCK_D * NP, hi)
                t = t0 + offs_t
                m = m_d[:, None] & (t[None, :] < L)
                offs = row[:, None] + t[None, :]
                uu = tl.load(u_ptr + offs, mask=m, other=0.0).to(tl.float32)
                dd, _ = delta_tile(dt_ptr, offs, m, bias, HAS_BIAS, SOFTPLUS)
                for j in tl.static_range(T):
                    if CPLX:
                        h, hi = step_complex(h, hi, A2, Ai, col(dd, offs_t, j), col(uu, offs_t, j),
                                             bc_at(B_ptr, bc_row, t0 + j, L, offs_n, m_n, 2 * N),
                                             bc_at(B_ptr, bc_row + N, t0 + j, L, offs_n, m_n, 2 * N), FAST_TRIG)
                    else:
                        h = step(h, A2, col(dd, offs_t, j), col(uu, offs_t, j),
                                 bc_at(B_ptr, bc_row, t0 + j, L, offs_n, m_n, N))
            tl.debug_barrier()  # scratch writes visible to every thread of the program
        for k2 in range(0, n_tiles):
            k = n_tiles - 1 - k2
            t0 = c0 + k * T
            t = t0 + offs_t
            m = m_d[:, None] & (t[None, :] < L)
            offs = row[:, None] + t[None, :]
            dd, x = delta_tile(dt_ptr, offs, m, bias, HAS_BIAS, SOFTPLUS)
            go = tl.load(gout_ptr + offs, mask=m, other=0.0).to(tl.float32)
            gy = go
            zz = go
            sz = go
            if HAS_Z:
                zz = tl.load(z_ptr + offs, mask=m, other=0.0).to(tl.float32)
                sz = tl.sigmoid(zz)
                gy = go * zz * sz
            if LOCAL:
                dsum += tl.sum(dd, axis=1)
                for j in tl.static_range(T - 1, -1, -1):
                    if CPLX:  # λ = 2 g conj(C) + μ, μ <- conj(a) λ
                        dj = col(dd, offs_t, j)
                        g2 = 2.0 * col(gy, offs_t, j)[:, None]
                        lr = g2 * bc_at(C_ptr, bc_row, t0 + j, L, offs_n, m_n, 2 * N)[None, :] + mu
                        li = mui - g2 * bc_at(C_ptr, bc_row + N, t0 + j, L, offs_n, m_n, 2 * N)[None, :]
                        mu, mui = adjoint_step_complex(lr, li, A2, Ai, dj, FAST_TRIG)
                    else:
                        cj = bc_at(C_ptr, bc_row, t0 + j, L, offs_n, m_n, N)
                        lam = col(gy, offs_t, j)[:, None] * cj[None, :] + mu
                        mu = tl.exp2(col(dd, offs_t, j)[:, None] * A2) * lam
            elif CPLX:
                uu = tl.load(u_ptr + offs, mask=m, other=0.0).to(tl.float32)
                h = tl.load(scr + k * SCR)
                hi = tl.load(scr + k * SCR + BLOCK_D * NP)
                hsc = ()  # (re, im) of the tile's T states
                for j in tl.static_range(T):
                    h, hi = step_complex(h, hi, A2, Ai, col(dd, offs_t, j), col(uu, offs_t, j),
                                         bc_at(B_ptr, bc_row, t0 + j, L, offs_n, m_n, 2 * N),
                                         bc_at(B_ptr, bc_row + N, t0 + j, L, offs_n, m_n, 2 * N), FAST_TRIG)
                    hsc = hsc + (h, hi)
                y = tl.zeros((BLOCK_D, T), tl.float32)
                gdd = tl.zeros((BLOCK_D, T), tl.float32)
                guu = tl.zeros((BLOCK_D, T), tl.float32)
                for j in tl.static_range(T - 1, -1, -1):
                    m_j = m_n & (t0 + j < L)
                    br = bc_at(B_ptr, bc_row, t0 + j, L, offs_n, m_n, 2 * N)
                    bi = bc_at(B_ptr, bc_row + N, t0 + j, L, offs_n, m_n, 2 * N)
                    cr = bc_at(C_ptr, bc_row, t0 + j, L, offs_n, m_n, 2 * N)
                    ci = bc_at(C_ptr, bc_row + N, t0 + j, L, offs_n, m_n, 2 * N)
                    dj = col(dd, offs_t, j)
                    uj = col(uu, offs_t, j)
                    g2 = 2.0 * col(gy, offs_t, j)[:, None]
                    hr = hsc[2 * j]
                    hj = hsc[2 * j + 1]
                    lr = g2 * cr[None, :] + mu  # λ = 2 g conj(C) + μ
                    li = mui - g2 * ci[None, :]
                    dju = dj * uj
                    pr = hr - dju[:, None] * br[None, :]  # P = h - Δ u B = a h_{t-1}
                    pi = hj - dju[:, None] * bi[None, :]
                    gqr = pr * lr + pi * li  # ḡq = conj(P) λ
                    gqi = pr * li - pi * lr
                    gA += dj[:, None] * gqr
                    gAi += dj[:, None] * gqi
                    lb = tl.sum(lr * br[None, :] + li * bi[None, :], axis=1)  # Σ_n Re(λ conj(B))
                    y = put(y, offs_t, j, 2.0 * tl.sum(hr * cr[None, :] - hj * ci[None, :], axis=1))
                    gdd = put(gdd, offs_t, j, tl.sum(gqr * A2, axis=1) * LN2 + tl.sum(gqi * Ai, axis=1) + uj * lb)
                    guu = put(guu, offs_t, j, dj * lb)
                    # ḡB_t = Σ_d Δ u λ, ḡC_t = Σ_d 2 g conj(h): per-warp sums into the (batch, groups, L,
                    # (re, im), N) layout (real parts at +n, imaginary ones at +N + n)
                    if SCATTER:
                        sbr, n_s, rep = warp_sum_scatter(dju[:, None] * lr)
                        sbi, _, _ = warp_sum_scatter(dju[:, None] * li)
                        scc, _, _ = warp_sum_scatter(g2 * hr)
                        sci, _, _ = warp_sum_scatter(g2 * hj)
                        ps = bc_row + (t0 + j) * (2 * N) + n_s
                        ms = rep & (n_s < N) & (t0 + j < L)
                        tl.atomic_add(gB_ptr + ps, sbr, mask=ms, sem="relaxed")
                        tl.atomic_add(gB_ptr + ps + N, sbi, mask=ms, sem="relaxed")
                        tl.atomic_add(gC_ptr + ps, scc, mask=ms, sem="relaxed")
                        tl.atomic_add(gC_ptr + ps + N, -sci, mask=ms, sem="relaxed")
                    else:  # row 0 of the (W, 2, N) tile the real parts, row 1 the imaginary ones
                        r2 = tl.arange(0, 2)[None, :, None]
                        pw = (bc_row + (t0 + j) * (2 * N) + r2 * N + tl.zeros((W, 2, 1), tl.int32)
                              + offs_n[None, None, :])
                        mw = m_j[None, None, :] & (r2 >= 0)
                        xbr = tl.sum(tl.reshape(dju[:, None] * lr, (W, BLOCK_D // W, NP)), axis=1)
                        xbi = tl.sum(tl.reshape(dju[:, None] * li, (W, BLOCK_D // W, NP)), axis=1)
                        xcr = tl.sum(tl.reshape(g2 * hr, (W, BLOCK_D // W, NP)), axis=1)
                        xci = tl.sum(tl.reshape(g2 * hj, (W, BLOCK_D // W, NP)), axis=1)
                        tl.atomic_add(gB_ptr + pw, tl.where(r2 == 0, xbr[:, None, :], xbi[:, None, :]), mask=mw,
                                      sem="relaxed")
                        tl.atomic_add(gC_ptr + pw, tl.where(r2 == 0, xcr[:, None, :], -xci[:, None, :]), mask=mw,
                                      sem="relaxed")
                    mu, mui = adjoint_step_complex(lr, li, A2, Ai, dj, FAST_TRIG)
                gD, gb = tile_out(y, gdd, guu, uu, gy, go, zz, sz, x, Dv, gD, gb, offs, m, gu_ptr, gdt_ptr, gz_ptr,
                                  HAS_D, HAS_Z, HAS_BIAS, SOFTPLUS)
            else:
                uu = tl.load(u_ptr + offs, mask=m, other=0.0).to(tl.float32)
                # the tile's T states, recomputed from its start into registers
                h = tl.load(scr + k * BLOCK_D * NP)
                hs = ()
                for j in tl.static_range(T):
                    h = step(h, A2, col(dd, offs_t, j), col(uu, offs_t, j),
                             bc_at(B_ptr, bc_row, t0 + j, L, offs_n, m_n, N))
                    hs = hs + (h,)
                y = tl.zeros((BLOCK_D, T), tl.float32)
                gdd = tl.zeros((BLOCK_D, T), tl.float32)
                guu = tl.zeros((BLOCK_D, T), tl.float32)
                for j in tl.static_range(T - 1, -1, -1):
                    m_j = m_n & (t0 + j < L)
                    bj = bc_at(B_ptr, bc_row, t0 + j, L, offs_n, m_n, N)
                    cj = bc_at(C_ptr, bc_row, t0 + j, L, offs_n, m_n, N)
                    dj = col(dd, offs_t, j)
                    uj = col(uu, offs_t, j)
                    gj = col(gy, offs_t, j)
                    hj = hs[j]
                    lam = gj[:, None] * cj[None, :] + mu
                    dju = dj * uj
                    gq = (hj - dju[:, None] * bj[None, :]) * lam
                    gA += dj[:, None] * gq
                    lb = tl.sum(lam * bj[None, :], axis=1)
                    y = put(y, offs_t, j, tl.sum(hj * cj[None, :], axis=1))
                    gdd = put(gdd, offs_t, j, tl.sum(gq * A2, axis=1) * LN2 + uj * lb)
                    guu = put(guu, offs_t, j, dj * lb)
                    # ḡB_t, ḡC_t: sums over each warp's channels, added atomically
                    if SCATTER:  # reduce-scatter (warp_sum): one sum per lane, 16 exchanges at N 16
                        sb, n_s, rep = warp_sum_scatter(dju[:, None] * lam)
                        sc, _, _ = warp_sum_scatter(hj * gj[:, None])
                        ps = bc_row + (t0 + j) * N + n_s
                        ms = rep & (n_s < N) & (t0 + j < L)
                        tl.atomic_add(gB_ptr + ps, sb, mask=ms, sem="relaxed")
                        tl.atomic_add(gC_ptr + ps, sc, mask=ms, sem="relaxed")
                    else:  # fewer than 32 channels: tl.sum. The (W, 2, N) pointer tile (second row
                        # masked off) keeps each warp's sums in that warp
                        pw = bc_row + (t0 + j) * N + tl.zeros((W, 2, 1), tl.int32) + offs_n[None, None, :]
                        mw = m_j[None, None, :] & (tl.arange(0, 2)[None, :, None] == 0)
                        xb = tl.sum(tl.reshape(dju[:, None] * lam, (W, BLOCK_D // W, NP)), axis=1)
                        xc = tl.sum(tl.reshape(hj * gj[:, None], (W, BLOCK_D // W, NP)), axis=1)
                        tl.atomic_add(gB_ptr + pw, tl.broadcast_to(xb[:, None, :], (W, 2, NP)), mask=mw,
                                      sem="relaxed")
                        tl.atomic_add(gC_ptr + pw, tl.broadcast_to(xc[:, None, :], (W, 2, NP)), mask=mw,
                                      sem="relaxed")
                    mu = tl.exp2(dj[:, None] * A2) * lam
                gD, gb = tile_out(y, gdd, guu, uu, gy, go, zz, sz, x, Dv, gD, gb, offs, m, gu_ptr, gdt_ptr, gz_ptr,
                                  HAS_D, HAS_Z, HAS_BIAS, SOFTPLUS)
    tl.store(mout_ptr + st_off, mu, mask=m_dn)
    if CPLX:
        tl.store(mout_ptr + st_off + 1, mui, mask=m_dn)
    if LOCAL:
        if CPLX:  # the adjoint's segment multiplier: conj(exp(A Σ Δ))
            pr, pi = exp_complex(A2 * dsum[:, None], Ai * dsum[:, None], FAST_TRIG)
            tl.store(decay_ptr + st_off, pr, mask=m_dn)
            tl.store(decay_ptr + st_off + 1, -pi, mask=m_dn)
        else:
            tl.store(decay_ptr + st_off, tl.exp2(A2 * dsum[:, None]), mask=m_dn)
    else:
        tl.store(gA_ptr + st_off, gA, mask=m_dn)
        if CPLX:
            tl.store(gA_ptr + st_off + 1, gAi, mask=m_dn)
        row1 = (b64 * n_seg + s) * dim + offs_d64
        if HAS_D:
            tl.store(gD_ptr + row1, gD, mask=m_d)
        if HAS_BIAS:
            tl.store(gbias_ptr + row1, gb, mask=m_d)


def launch_bwd_seq(u, dt, A, Bt, Ct, D, z, bias, ckpt, gout, mu_in, grads, mout, decay, scratch, *,
                   local: bool, softplus_: bool, seg_len: int, n_seg: int, ch_per_group: int, block_d: int,
                   t: int, ck: int, num_warps: int, cplx: bool = False) -> None:
    """u, dt, z, gout, gu, gdt, gz: (batch, dim, L), all laid out as u: (batch, dim, L) contiguous, or
    (dim, batch, L) in memory (``batch_inner``); A: (dim, N) fp32; Bt, Ct: (batch, groups, L, N); ckpt:
    (batch, cdiv(L, ck), dim, N) fp32; mu_in, mout, decay: (batch, S, dim, N) fp32; grads: (gu, gdt, gz, gA, gB,
    gC, gD, gbias) buffers (see ``selective_scan_seq.bwd_seq``), unused in the ``local`` pass. Complex
    (``cplx``): A, ckpt, mu_in, mout, decay and gA (..., 2N) as (re, im) pairs; Bt, Ct, gB, gC (batch,
    groups, L, 2N) = (..., L, (re, im), N) (``bc_seq(M, cplx=True)``); decay holds conj(exp(A Σ Δ))."""
    batch, dim, L = u.shape
    N = A.shape[1] // (2 if cplx else 1)
    gu, gdt, gz, gA, gB, gC, gD, gbias = grads
    grid = (triton.cdiv(dim, block_d), batch, n_seg)
    scan_bwd_seq_kernel[grid](
        u, dt, A, Bt, Ct, D, z, bias, ckpt, gout, mu_in,
        gu, gdt, gz, gA, gB, gC, gD, gbias, mout, decay, scratch,
        dim, L, seg_len, n_seg, ch_per_group, Bt.shape[1],
        N=N, NP=max(triton.next_power_of_2(N), 2), BLOCK_D=block_d, T=t, CK=ck, LOCAL=local,
        HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=bias is not None, SOFTPLUS=softplus_,
        HAS_MIN=mu_in is not None, CPLX=cplx, FAST_TRIG=cplx and inline_ptx(u),
        SCATTER=SCATTER_SUMS and block_d % 32 == 0, BATCH_INNER=batch_inner(u), num_warps=num_warps,
    )
