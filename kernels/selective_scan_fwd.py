"""Selective-scan forward kernel (Mamba, Gu & Dao 2023, eq. 2a-2b; Algorithm 2).

For each batch b, channel d and state n::

    Δ_t   = softplus(delta_t + delta_bias)          (both optional)
    h_t   = exp(Δ_t A) h_{t-1} + Δ_t B_t u_t        (2a, zero-order hold of A, Euler for B)
    y_t   = C_t h_t + D u_t                          (2b; complex A: 2 Re(C_t h_t) + D u_t)
    out_t = y_t silu(z_t)

One program owns BLOCK_D channels x all N states of one sequence, for the whole sequence: the
state stays in registers. Time advances in chunks of BLOCK_L steps; inside a chunk the
recurrence is a parallel ``tl.associative_scan`` over (exp(Δ A), Δ B u) on a
(BLOCK_D, N, BLOCK_L) tile, and the chunk's last state is carried into the next. Nothing of size
batch x dim x L x N touches memory. With ``SAVE_CKPT`` the state at the start of every chunk is
written (batch, dim, n_chunks, N): the backward restarts each chunk from it.
"""

from __future__ import annotations

import triton
import triton.language as tl

from seqssm.kernels.selective_scan_common import first_order, first_order_complex, softplus


@triton.jit
def _load_bc(ptr, b64, g, offs_d64, offs_n, t, m_d, m_n, m_t,
             s_b, s_g, s_n, s_t, VAR: tl.constexpr, CPLX: tl.constexpr):
    """B or C for one chunk: (N, BLOCK_L) if time-varying (one group per program), else (BLOCK_D, N)
    (time-invariant, (dim, N)). Returns (real, imag); imag is 0 for real inputs."""
    if VAR:
        p = ptr + b64 * s_b + g * s_g + offs_n[:, None] * s_n + t[None, :] * s_t
        m = m_n[:, None] & m_t[None, :]
    else:
        p = ptr + offs_d64[:, None] * s_b + offs_n[None, :] * s_n
        m = m_d[:, None] & m_n[None, :]
    re = tl.load(p, mask=m, other=0.0).to(tl.float32)
    if CPLX:
        im = tl.load(p + 1, mask=m, other=0.0).to(tl.float32)
    else:
        im = re * 0.0
    return re, im


@triton.jit
def _expand_bc(x, VAR: tl.constexpr):
    """A (N, L) or (D, N) tile -> broadcastable against (D, N, L)."""
    if VAR:
        r = x[None, :, :]
    else:
        r = x[:, :, None]
    return r


@triton.jit
def selective_scan_fwd_kernel(
    u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, h0_ptr,
    out_ptr, hlast_ptr, ckpt_ptr,
    dim, L, ch_per_group, n_chunks,
    s_Bb, s_Bg, s_Bn, s_Bt,
    s_Cb, s_Cg, s_Cn, s_Ct,
    N: tl.constexpr, NP: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr,
    CPLX: tl.constexpr, VAR_B: tl.constexpr, VAR_C: tl.constexpr,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    HAS_H0: tl.constexpr, SAVE_CKPT: tl.constexpr,
):
    pid_d = tl.program_id(0)
    b64 = tl.program_id(1).to(tl.int64)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_d64 = offs_d.to(tl.int64)
    offs_n = tl.arange(0, NP)
    offs_l = tl.arange(0, BLOCK_L)
    m_d = offs_d < dim
    m_n = offs_n < N
    m_dn = m_d[:, None] & m_n[None, :]
    g = ((pid_d * BLOCK_D) // ch_per_group).to(tl.int64)
    K: tl.constexpr = 2 if CPLX else 1

    # A in log2 units so that exp(Δ A) is one exp2 per element.
    a_off = offs_d64[:, None] * (N * K) + offs_n[None, :] * K
    Ar = tl.load(A_ptr + a_off, mask=m_dn, other=0.0).to(tl.float32) * 1.4426950408889634
    if CPLX:
        Ai = tl.load(A_ptr + a_off + 1, mask=m_dn, other=0.0).to(tl.float32)
    if HAS_D:
        Dv = tl.load(D_ptr + offs_d, mask=m_d, other=0.0).to(tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d, mask=m_d, other=0.0).to(tl.float32)

    st_off = b64 * dim * (N * K) + a_off  # (batch, dim, N[, 2]) state layout
    hr = tl.zeros((BLOCK_D, NP), tl.float32)
    hi = tl.zeros((BLOCK_D, NP), tl.float32)
    if HAS_H0:
        hr = tl.load(h0_ptr + st_off, mask=m_dn, other=0.0)
        if CPLX:
            hi = tl.load(h0_ptr + st_off + 1, mask=m_dn, other=0.0)

    row = b64 * dim * L + offs_d64[:, None] * L  # (BLOCK_D, 1) offsets of (batch, dim, L) tensors
    ck_off = (b64 * dim + offs_d64[:, None]) * n_chunks * (N * K) + offs_n[None, :] * K
    for c in range(0, n_chunks):
        t = c * BLOCK_L + offs_l
        m_t = t < L
        m_dl = m_d[:, None] & m_t[None, :]
        if SAVE_CKPT:
            tl.store(ckpt_ptr + ck_off + c * (N * K), hr, mask=m_dn)
            if CPLX:
                tl.store(ckpt_ptr + ck_off + c * (N * K) + 1, hi, mask=m_dn)
        u = tl.load(u_ptr + row + t[None, :], mask=m_dl, other=0.0).to(tl.float32)
        dt = tl.load(dt_ptr + row + t[None, :], mask=m_dl, other=0.0).to(tl.float32)
        if HAS_BIAS:
            dt += bias[:, None]
        if SOFTPLUS:
            dt = softplus(dt)
        dt = tl.where(m_dl, dt, 0.0)  # padded steps: exp(0) = 1, input 0: the carry passes through
        Br, Bi = _load_bc(B_ptr, b64, g, offs_d64, offs_n, t, m_d, m_n, m_t,
                          s_Bb, s_Bg, s_Bn, s_Bt, VAR_B, CPLX)
        Cr, Ci = _load_bc(C_ptr, b64, g, offs_d64, offs_n, t, m_d, m_n, m_t,
                          s_Cb, s_Cg, s_Cn, s_Ct, VAR_C, CPLX)
        dtu = (dt * u)[:, None, :]
        dA_mag = tl.exp2(dt[:, None, :] * Ar[:, :, None])
        if CPLX:
            ang = dt[:, None, :] * Ai[:, :, None]
            ar = dA_mag * tl.cos(ang)
            ai = dA_mag * tl.sin(ang)
            br = dtu * _expand_bc(Br, VAR_B)
            bi = dtu * _expand_bc(Bi, VAR_B)
            ar, ai, br, bi = tl.associative_scan((ar, ai, br, bi), 2, first_order_complex)
            hsr = ar * hr[:, :, None] - ai * hi[:, :, None] + br
            hsi = ar * hi[:, :, None] + ai * hr[:, :, None] + bi
            y = 2.0 * tl.sum(hsr * _expand_bc(Cr, VAR_C) - hsi * _expand_bc(Ci, VAR_C), 1)
            last = offs_l[None, None, :] == BLOCK_L - 1
            hr = tl.sum(tl.where(last, hsr, 0.0), 2)
            hi = tl.sum(tl.where(last, hsi, 0.0), 2)
        else:
            bb = dtu * _expand_bc(Br, VAR_B)
            aa, bb = tl.associative_scan((dA_mag, bb), 2, first_order)
            hs = aa * hr[:, :, None] + bb
            y = tl.sum(hs * _expand_bc(Cr, VAR_C), 1)
            hr = tl.sum(tl.where(offs_l[None, None, :] == BLOCK_L - 1, hs, 0.0), 2)
        if HAS_D:
            y += Dv[:, None] * u
        if HAS_Z:
            zz = tl.load(z_ptr + row + t[None, :], mask=m_dl, other=0.0).to(tl.float32)
            y = y * zz * tl.sigmoid(zz)
        tl.store(out_ptr + row + t[None, :], y.to(out_ptr.dtype.element_ty), mask=m_dl)
    tl.store(hlast_ptr + st_off, hr, mask=m_dn)
    if CPLX:
        tl.store(hlast_ptr + st_off + 1, hi, mask=m_dn)


def launch_fwd(u, dt, A, B, C, D, z, bias, h0, out, hlast, ckpt, *, softplus_: bool, cplx: bool,
               ch_per_group: int, n_chunks: int, block_d: int, block_l: int, num_warps: int,
               num_stages: int = 1) -> None:
    """Launch the forward kernel on prepared (contiguous, packed) tensors; see selective_scan.py."""
    batch, dim, L = u.shape
    N = A.shape[1] // (2 if cplx else 1)
    var_b, var_c = B.dim() == 4, C.dim() == 4
    sb = _bc_strides(B, cplx)
    sc = _bc_strides(C, cplx)
    grid = (triton.cdiv(dim, block_d), batch)
    selective_scan_fwd_kernel[grid](
        u, dt, A, B, C, D, z, bias, h0, out, hlast, ckpt,
        dim, L, ch_per_group, n_chunks, *sb, *sc,
        N=N, NP=max(triton.next_power_of_2(N), 2), BLOCK_D=block_d, BLOCK_L=block_l,
        CPLX=cplx, VAR_B=var_b, VAR_C=var_c, HAS_D=D is not None, HAS_Z=z is not None,
        HAS_BIAS=bias is not None, SOFTPLUS=softplus_, HAS_H0=h0 is not None,
        SAVE_CKPT=ckpt is not None, num_warps=num_warps, num_stages=num_stages,
    )


def _bc_strides(M, cplx: bool) -> tuple[int, int, int, int]:
    """Element strides (batch, group, n, t) of a prepared B/C: variable (batch, groups, N, L[x2]),
    or time-invariant (dim, N[x2]) given as (dim-stride, 0, n-stride, 0)."""
    k = 2 if cplx else 1
    if M.dim() == 4:
        return M.stride(0), M.stride(1), M.stride(2), k
    return M.stride(0), 0, k, 0
