"""Selective-scan backward kernel: the adjoint recurrence, chunk by chunk in reverse.

With the forward's ``h_t = a_t h_{t-1} + w_t`` (a_t = exp(Δ_t A), w_t = Δ_t u_t B_t) and
``s_t = C_t h_t`` (y_t = s_t, or 2 Re s_t for complex A), the gradient of the loss with respect to
h_t is the reverse recurrence (``^*``: complex conjugate; identity for real A)::

    λ_t = C_t^* ḡ_s_t + a_{t+1}^* λ_{t+1},        λ_{L-1} starts from the last state's gradient

and every input gradient is a local product with λ_t (q_t = Δ_t A, P_t = a_t h_{t-1} = h_t - w_t)::

    ḡ_q = P_t^* λ_t            ḡ_A = Σ_t Δ_t ḡ_q               ḡ_Δ_t = Σ_n Re(ḡ_q A^*) + u_t Σ_n Re(λ_t B_t^*)
    ḡ_u_t = Δ_t Σ_n Re(λ_t B_t^*) + D ḡ_y_t      ḡ_B_t = Σ_d Δ_t u_t λ_t      ḡ_C_t = Σ_d h_t^* ḡ_s_t
    ḡ_h0 = a_0^* λ_0

One program owns BLOCK_D channels of one sequence and walks its chunks from last to first. For each
chunk it reloads the state at the chunk's start (saved by the forward), recomputes the chunk's
states with the forward scan, recomputes y for the gate's gradient, and runs the reverse scan for
λ with the multipliers a_{t+1} (from Δ one step ahead, read again from memory rather than shifted
in registers). Gradients of a time-varying B/C are sums over channels: each program adds its
partial sums with atomics into one of S fp32 slots (fewer programs per address), summed after.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from seqssm.kernels.selective_scan_common import first_order, first_order_complex, softplus
from seqssm.kernels.selective_scan_fwd import _bc_strides, _expand_bc, _load_bc


@triton.jit
def _softplus_grad(x, SOFTPLUS: tl.constexpr):
    """(Δ, dΔ/dx)."""
    if SOFTPLUS:
        d, s = softplus(x), tl.sigmoid(x)
    else:
        d, s = x, x * 0.0 + 1.0
    return d, s


@triton.jit
def _add_bc_grad(buf_ptr, vr, vi, b64, slot, g, offs_n, t, m_n, m_t,
                 S, G, L, N: tl.constexpr, CPLX: tl.constexpr):
    """Atomically add a (N, BLOCK_L) partial gradient of a time-varying B/C into its fp32 slot of
    the (batch, S, groups, N, L[x2]) buffer."""
    K: tl.constexpr = 2 if CPLX else 1
    base = ((b64 * S + slot) * G + g) * N * L * K
    p = buf_ptr + base + offs_n[:, None] * (L * K) + t[None, :] * K
    m = m_n[:, None] & m_t[None, :]
    tl.atomic_add(p, vr, mask=m, sem="relaxed")
    if CPLX:
        tl.atomic_add(p + 1, vi, mask=m, sem="relaxed")


@triton.jit
def selective_scan_bwd_kernel(
    u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, ckpt_ptr, gout_ptr, glast_ptr,
    gu_ptr, gdt_ptr, gz_ptr, gA_ptr, gB_ptr, gC_ptr, gD_ptr, gbias_ptr, gh0_ptr,
    dim, L, ch_per_group, n_chunks, S, G,
    s_Bb, s_Bg, s_Bn, s_Bt,
    s_Cb, s_Cg, s_Cn, s_Ct,
    N: tl.constexpr, NP: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr,
    CPLX: tl.constexpr, VAR_B: tl.constexpr, VAR_C: tl.constexpr,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    HAS_GLAST: tl.constexpr, WANT_H0: tl.constexpr,
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
    slot = (pid_d % S).to(tl.int64)
    K: tl.constexpr = 2 if CPLX else 1
    LOG2E: tl.constexpr = 1.4426950408889634

    a_off = offs_d64[:, None] * (N * K) + offs_n[None, :] * K
    An = tl.load(A_ptr + a_off, mask=m_dn, other=0.0).to(tl.float32)  # real part, natural units
    Ar = An * LOG2E
    Ai = An * 0.0
    if CPLX:
        Ai = tl.load(A_ptr + a_off + 1, mask=m_dn, other=0.0).to(tl.float32)
    Dv = tl.zeros((BLOCK_D,), tl.float32)
    if HAS_D:
        Dv = tl.load(D_ptr + offs_d, mask=m_d, other=0.0).to(tl.float32)
    bias = tl.zeros((BLOCK_D,), tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d, mask=m_d, other=0.0).to(tl.float32)

    st_off = b64 * dim * (N * K) + a_off
    # λ carried from the chunk after (starts as the last state's gradient)
    lr = tl.zeros((BLOCK_D, NP), tl.float32)
    li = tl.zeros((BLOCK_D, NP), tl.float32)
    if HAS_GLAST:
        lr = tl.load(glast_ptr + st_off, mask=m_dn, other=0.0)
        if CPLX:
            li = tl.load(glast_ptr + st_off + 1, mask=m_dn, other=0.0)
    gAr = tl.zeros((BLOCK_D, NP), tl.float32)
    gAi = tl.zeros((BLOCK_D, NP), tl.float32)
    gBr_acc = tl.zeros((BLOCK_D, NP), tl.float32)
    gBi_acc = tl.zeros((BLOCK_D, NP), tl.float32)
    gCr_acc = tl.zeros((BLOCK_D, NP), tl.float32)
    gCi_acc = tl.zeros((BLOCK_D, NP), tl.float32)
    gD_acc = tl.zeros((BLOCK_D,), tl.float32)
    gb_acc = tl.zeros((BLOCK_D,), tl.float32)

    row = b64 * dim * L + offs_d64[:, None] * L
    ck_off = (b64 * dim + offs_d64[:, None]) * n_chunks * (N * K) + offs_n[None, :] * K
    for i in range(0, n_chunks):
        c = n_chunks - 1 - i
        t = c * BLOCK_L + offs_l
        m_t = t < L
        m_dl = m_d[:, None] & m_t[None, :]
        t1 = t + 1
        m_t1 = t1 < L
        m_dl1 = m_d[:, None] & m_t1[None, :]
        h0r = tl.load(ckpt_ptr + ck_off + c * (N * K), mask=m_dn, other=0.0)
        u = tl.load(u_ptr + row + t[None, :], mask=m_dl, other=0.0).to(tl.float32)
        dt = tl.load(dt_ptr + row + t[None, :], mask=m_dl, other=0.0).to(tl.float32) + bias[:, None]
        dt, sig = _softplus_grad(dt, SOFTPLUS)
        dt = tl.where(m_dl, dt, 0.0)
        dtn = tl.load(dt_ptr + row + t1[None, :], mask=m_dl1, other=0.0).to(tl.float32) + bias[:, None]
        dtn, _ = _softplus_grad(dtn, SOFTPLUS)
        dtn = tl.where(m_dl1, dtn, 0.0)  # past the end: a = 1 (complex too: no rotation)
        go = tl.load(gout_ptr + row + t[None, :], mask=m_dl, other=0.0).to(tl.float32)
        Br, Bi = _load_bc(B_ptr, b64, g, offs_d64, offs_n, t, m_d, m_n, m_t,
                          s_Bb, s_Bg, s_Bn, s_Bt, VAR_B, CPLX)
        Cr, Ci = _load_bc(C_ptr, b64, g, offs_d64, offs_n, t, m_d, m_n, m_t,
                          s_Cb, s_Cg, s_Cn, s_Ct, VAR_C, CPLX)
        Brx = _expand_bc(Br, VAR_B)
        Crx = _expand_bc(Cr, VAR_C)
        dtu = dt * u
        dtu3 = dtu[:, None, :]
        mag = tl.exp2(dt[:, None, :] * Ar[:, :, None])
        magn = tl.exp2(dtn[:, None, :] * Ar[:, :, None])
        if CPLX:
            h0i = tl.load(ckpt_ptr + ck_off + c * (N * K) + 1, mask=m_dn, other=0.0)
            Bix = _expand_bc(Bi, VAR_B)
            Cix = _expand_bc(Ci, VAR_C)
            ang = dt[:, None, :] * Ai[:, :, None]
            wr = dtu3 * Brx
            wi = dtu3 * Bix
            ar, ai, br, bi = tl.associative_scan(
                (mag * tl.cos(ang), mag * tl.sin(ang), wr, wi), 2, first_order_complex)
            hr = ar * h0r[:, :, None] - ai * h0i[:, :, None] + br
            hi = ar * h0i[:, :, None] + ai * h0r[:, :, None] + bi
            y = 2.0 * tl.sum(hr * Crx - hi * Cix, 1)
        else:
            wr = dtu3 * Brx
            ar, br = tl.associative_scan((mag, wr), 2, first_order)
            hr = ar * h0r[:, :, None] + br
            y = tl.sum(hr * Crx, 1)
        y += Dv[:, None] * u
        if HAS_Z:
            zz = tl.load(z_ptr + row + t[None, :], mask=m_dl, other=0.0).to(tl.float32)
            sz = tl.sigmoid(zz)
            tl.store(gz_ptr + row + t[None, :], (go * y * sz * (1.0 + zz * (1.0 - sz))).to(
                gz_ptr.dtype.element_ty), mask=m_dl)
            gy = go * zz * sz
        else:
            gy = go
        gD_acc += tl.sum(gy * u, 1)
        gy3 = gy[:, None, :]
        # reverse scan: λ_t = c_t + conj(a_{t+1}) λ_{t+1}
        if CPLX:
            angn = dtn[:, None, :] * Ai[:, :, None]
            pr, pi, qr, qi = tl.associative_scan(
                (magn * tl.cos(angn), -magn * tl.sin(angn), 2.0 * gy3 * Crx, -2.0 * gy3 * Cix),
                2, first_order_complex, reverse=True)
            lamr = qr + pr * lr[:, :, None] - pi * li[:, :, None]
            lami = qi + pr * li[:, :, None] + pi * lr[:, :, None]
            first = offs_l[None, None, :] == 0
            lr = tl.sum(tl.where(first, lamr, 0.0), 2)
            li = tl.sum(tl.where(first, lami, 0.0), 2)
            Pr = hr - wr
            Pi = hi - wi
            gqr = Pr * lamr + Pi * lami
            gqi = Pr * lami - Pi * lamr
            gAr += tl.sum(dt[:, None, :] * gqr, 2)
            gAi += tl.sum(dt[:, None, :] * gqi, 2)
            lb = tl.sum(lamr * Brx + lami * Bix, 1)
            gdt = tl.sum(gqr * An[:, :, None] + gqi * Ai[:, :, None], 1) + u * lb
            gbr = dtu3 * lamr
            gbi = dtu3 * lami
            gcr = 2.0 * gy3 * hr
            gci = -2.0 * gy3 * hi
        else:
            pr, qr = tl.associative_scan((magn, gy3 * Crx), 2, first_order, reverse=True)
            lamr = qr + pr * lr[:, :, None]
            lr = tl.sum(tl.where(offs_l[None, None, :] == 0, lamr, 0.0), 2)
            gqr = (hr - wr) * lamr
            gAr += tl.sum(dt[:, None, :] * gqr, 2)
            lb = tl.sum(lamr * Brx, 1)
            gdt = tl.sum(gqr * An[:, :, None], 1) + u * lb
            gbr = dtu3 * lamr
            gbi = gbr
            gcr = gy3 * hr
            gci = gcr
        gu = dt * lb + gy * Dv[:, None]
        gdt = tl.where(m_dl, gdt * sig, 0.0)
        gb_acc += tl.sum(gdt, 1)
        tl.store(gu_ptr + row + t[None, :], gu.to(gu_ptr.dtype.element_ty), mask=m_dl)
        tl.store(gdt_ptr + row + t[None, :], gdt.to(gdt_ptr.dtype.element_ty), mask=m_dl)
        if VAR_B:
            _add_bc_grad(gB_ptr, tl.sum(gbr, 0), tl.sum(gbi, 0), b64, slot, g, offs_n, t, m_n, m_t,
                         S, G, L, N, CPLX)
        else:
            gBr_acc += tl.sum(gbr, 2)
            gBi_acc += tl.sum(gbi, 2)
        if VAR_C:
            _add_bc_grad(gC_ptr, tl.sum(gcr, 0), tl.sum(gci, 0), b64, slot, g, offs_n, t, m_n, m_t,
                         S, G, L, N, CPLX)
        else:
            gCr_acc += tl.sum(gcr, 2)
            gCi_acc += tl.sum(gci, 2)

    # per-sequence partial sums of the parameter gradients, (batch, dim, ...) -> summed over batch
    tl.store(gA_ptr + st_off, gAr, mask=m_dn)
    if CPLX:
        tl.store(gA_ptr + st_off + 1, gAi, mask=m_dn)
    if not VAR_B:
        tl.store(gB_ptr + st_off, gBr_acc, mask=m_dn)
        if CPLX:
            tl.store(gB_ptr + st_off + 1, gBi_acc, mask=m_dn)
    if not VAR_C:
        tl.store(gC_ptr + st_off, gCr_acc, mask=m_dn)
        if CPLX:
            tl.store(gC_ptr + st_off + 1, gCi_acc, mask=m_dn)
    row1 = b64 * dim + offs_d64
    if HAS_D:
        tl.store(gD_ptr + row1, gD_acc, mask=m_d)
    if HAS_BIAS:
        tl.store(gbias_ptr + row1, gb_acc, mask=m_d)
    if WANT_H0:  # ḡ_h0 = conj(a_0) λ_0
        dt0 = tl.load(dt_ptr + row1 * L, mask=m_d, other=0.0).to(tl.float32) + bias
        dt0, _ = _softplus_grad(dt0, SOFTPLUS)
        mag0 = tl.exp2(dt0[:, None] * Ar)
        if CPLX:
            a0r = mag0 * tl.cos(dt0[:, None] * Ai)
            a0i = mag0 * tl.sin(dt0[:, None] * Ai)
            tl.store(gh0_ptr + st_off, a0r * lr + a0i * li, mask=m_dn)
            tl.store(gh0_ptr + st_off + 1, a0r * li - a0i * lr, mask=m_dn)
        else:
            tl.store(gh0_ptr + st_off, mag0 * lr, mask=m_dn)


def _bc_grad_buffer(M: torch.Tensor, batch: int, dim: int, S: int, NK: int) -> torch.Tensor:
    if M.dim() == 4:  # (batch, S, groups, N, L[x2]) atomics target
        return torch.zeros(batch, S, *M.shape[1:], device=M.device, dtype=torch.float32)
    return torch.empty(batch, dim, NK, device=M.device, dtype=torch.float32)


def launch_bwd(u, dt, A, B, C, D, z, bias, ckpt, gout, glast, *, softplus_: bool, cplx: bool,
               ch_per_group: int, n_chunks: int, block_d: int, block_l: int, num_warps: int,
               want_h0: bool, slots: int = 8):
    """Run the backward kernel on the forward's prepared tensors. Returns the gradients in kernel
    layout: (gu, gdelta, gA, gB, gC, gD, gz, gbias, gh0), parameter gradients summed over batch."""
    batch, dim, L = u.shape
    K = 2 if cplx else 1
    N = A.shape[1] // K
    n_prog = triton.cdiv(dim, block_d)
    G = dim // ch_per_group
    S = max(1, min(slots, n_prog // G))
    f32 = dict(device=u.device, dtype=torch.float32)
    gu = torch.empty_like(u)
    gdt = torch.empty_like(dt)
    gz = torch.empty_like(z) if z is not None else None
    gA = torch.empty(batch, dim, N * K, **f32)
    gB = _bc_grad_buffer(B, batch, dim, S, N * K)
    gC = _bc_grad_buffer(C, batch, dim, S, N * K)
    gD = torch.empty(batch, dim, **f32) if D is not None else None
    gbias = torch.empty(batch, dim, **f32) if bias is not None else None
    gh0 = torch.empty(batch, dim, N * K, **f32) if want_h0 else None
    grid = (n_prog, batch)
    selective_scan_bwd_kernel[grid](
        u, dt, A, B, C, D, z, bias, ckpt, gout, glast,
        gu, gdt, gz, gA, gB, gC, gD, gbias, gh0,
        dim, L, ch_per_group, n_chunks, S, G, *_bc_strides(B, cplx), *_bc_strides(C, cplx),
        N=N, NP=max(triton.next_power_of_2(N), 2), BLOCK_D=block_d, BLOCK_L=block_l,
        CPLX=cplx, VAR_B=B.dim() == 4, VAR_C=C.dim() == 4, HAS_D=D is not None,
        HAS_Z=z is not None, HAS_BIAS=bias is not None, SOFTPLUS=softplus_,
        HAS_GLAST=glast is not None, WANT_H0=want_h0, num_warps=num_warps,
    )
    gA = gA.sum(0)
    gB = gB.sum(1) if B.dim() == 4 else gB.sum(0)
    gC = gC.sum(1) if C.dim() == 4 else gC.sum(0)
    gD = gD.sum(0) if gD is not None else None
    gbias = gbias.sum(0) if gbias is not None else None
    return gu, gdt, gA, gB, gC, gD, gz, gbias, gh0
