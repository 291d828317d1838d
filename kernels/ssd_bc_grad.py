"""SSD backward for B and C (section 6: the gradients of the two factors that carry N).

B enters through the intra-chunk Gram matrix and the chunk state; C through the Gram matrix and
the inter-chunk output. Per chunk, group g, heads h of the group (w_s = exp(acs_end − acs_s) Δ_s,
k_t = exp(acs_t) if t belongs to the sequence of the entering state, else 0)::

    dB_s = Σ_{t ≥ s} d(CBᵀ)[t, s] C_t  +  Σ_h w_h,s  X_h,s G_h          ((S × T)(T × N), (S × P)(P × N))
    dC_t = Σ_{s ≤ t} d(CBᵀ)[t, s] B_s  +  Σ_h k_h,t  dY_h,t H_prev,h     ((T × S)(S × N), (T × P)(P × N))

and the inter-chunk part of ∂L/∂acs_t = ⟨dY_t, Y_off,t⟩ = ⟨k_t dY_t H_prev, C_t⟩, read off the
second sum of dC per head, and the state passing's ∂L/∂acs_end += k d ⟨G_c, H_prev,c⟩ (G and H_prev
are loaded here anyway).

With one head per group (groups = heads, as in the rotary SSD) d(CBᵀ) = W of that head (see
``ssd_bmm``), so it is not read from memory but formed here block by block, W[t, s] = L[t, s] Δ_s
⟨dY_t, X_s⟩, from dY and X: once with t running over the column blocks (for dB) and once with s
running over the row blocks (for dC, where the row part of ∂L/∂acs_t, Σ_s W[t, s] (CBᵀ)[t, s], is
summed too, with C Bᵀ formed from the C and B rows). That skips the ``ssd_bmm`` kernel and its
per-head (batch, chunks, heads, Q, Q) fp32 tensor, written once and read twice.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from seqssm.kernels.ssd_common import dot_block, mma, tune


@tune(key=["H", "G", "P", "N", "CS", "FUSED"], restore=["gacs_ptr"])
@triton.jit
def _bc_bwd_kernel(
    x_ptr, dy_ptr, B_ptr, C_ptr, dcb_ptr, gst_ptr, hprev_ptr, dtp_ptr, acs_ptr, seq_ptr,
    dB_ptr, dC_ptr, gacs_ptr,
    L, H, G, P, N, nchunks,
    s_xb, s_xl, s_xh, s_xp, s_yb, s_yl, s_yh, s_yp, s_bb, s_bl, s_bg, s_bn, s_cb, s_cl, s_cg, s_cn,
    s_qb, s_ql, s_gb, s_gl, s_gg, s_gn,
    HAS_SEQ: tl.constexpr, FUSED: tl.constexpr, CS: tl.constexpr, BM: tl.constexpr, BT: tl.constexpr,
    BP: tl.constexpr, BN: tl.constexpr, BPF: tl.constexpr,
):
    pid_bc = tl.program_id(2).to(tl.int64)
    g = tl.program_id(1).to(tl.int64)
    mb = tl.program_id(0)
    b = pid_bc // nchunks
    c = pid_bc % nchunks
    m = mb * BM + tl.arange(0, BM)
    pm = c * CS + m
    mmask = pm < L
    n = tl.arange(0, BN)
    nmask = n < N
    mn = mmask[:, None] & nmask[None, :]
    Bp = B_ptr + b * s_bb + g * s_bg
    Cp = C_ptr + b * s_cb + g * s_cg
    dB = tl.zeros((BM, BN), dtype=tl.float32)
    dC = tl.zeros((BM, BN), dtype=tl.float32)
    cm_in = tl.load(Cp + pm[:, None] * s_cl + n[None, :] * s_cn, mask=mn, other=0.0)
    cm = cm_in.to(tl.float32)
    if HAS_SEQ:
        qm = tl.load(seq_ptr + b * s_qb + pm * s_ql, mask=mmask, other=-2)
        q_end = tl.load(seq_ptr + b * s_qb + tl.minimum(c * CS + CS - 1, L - 1) * s_ql)
        q_prev = tl.load(seq_ptr + b * s_qb + tl.maximum(c * CS - 1, 0) * s_ql)
    if FUSED:  # one head per group (h = g): W blocks from dY and X, no d(CBᵀ) in memory
        base = (b * H + g) * nchunks * CS + c * CS
        a_m = tl.load(acs_ptr + base + m)
        dt_m = tl.load(dtp_ptr + base + m)
        pf = tl.arange(0, BPF)
        xp = x_ptr + b * s_xb + g * s_xh + pf[None, :] * s_xp
        dyp = dy_ptr + b * s_yb + g * s_yh + pf[None, :] * s_yp
        mpf = mmask[:, None] & (pf[None, :] < P)
        xm = tl.load(xp + pm[:, None] * s_xl, mask=mpf, other=0.0)
        dym = tl.load(dyp + pm[:, None] * s_yl, mask=mpf, other=0.0)
        for t0 in range(mb * BM, CS, BT):  # dB_m += Σ_t W[t, m] C_t
            t = t0 + tl.arange(0, BT)
            pt = c * CS + t
            tmask = pt < L
            dyt = tl.load(dyp + pt[:, None] * s_yl, mask=tmask[:, None] & (pf[None, :] < P), other=0.0)
            a_t = tl.load(acs_ptr + base + t)
            keep = t[:, None] >= m[None, :]
            if HAS_SEQ:
                qt = tl.load(seq_ptr + b * s_qb + pt * s_ql, mask=tmask, other=-1)
                keep &= qt[:, None] == qm[None, :]
            w = mma(dyt, tl.trans(xm).to(dyt.dtype)) * tl.exp(tl.minimum(a_t[:, None] - a_m[None, :], 0.0))
            w = tl.where(keep, w * dt_m[None, :], 0.0)  # W[t, m]
            ct = tl.load(Cp + pt[:, None] * s_cl + n[None, :] * s_cn, mask=tmask[:, None] & nmask[None, :],
                         other=0.0)
            dB += mma(tl.trans(w).to(ct.dtype), ct)
        row = tl.zeros((BM,), dtype=tl.float32)  # Σ_s W[m, s] (CBᵀ)[m, s]
        for s0 in range(0, (mb + 1) * BM, BT):  # dC_m += Σ_s W[m, s] B_s
            s = s0 + tl.arange(0, BT)
            ps = c * CS + s
            smask = ps < L
            xs = tl.load(xp + ps[:, None] * s_xl, mask=smask[:, None] & (pf[None, :] < P), other=0.0)
            a_s = tl.load(acs_ptr + base + s)
            dt_s = tl.load(dtp_ptr + base + s)
            keep = m[:, None] >= s[None, :]
            if HAS_SEQ:
                qs = tl.load(seq_ptr + b * s_qb + ps * s_ql, mask=smask, other=-2)
                keep &= qm[:, None] == qs[None, :]
            w = mma(dym, tl.trans(xs).to(dym.dtype)) * tl.exp(tl.minimum(a_m[:, None] - a_s[None, :], 0.0))
            w = tl.where(keep, w * dt_s[None, :], 0.0)  # W[m, s]
            bs = tl.load(Bp + ps[:, None] * s_bl + n[None, :] * s_bn, mask=smask[:, None] & nmask[None, :],
                         other=0.0)
            row += tl.sum(w * mma(cm_in, tl.trans(bs).to(cm_in.dtype)), axis=1)
            dC += mma(w.to(bs.dtype), bs)
        tl.atomic_add(gacs_ptr + base + m, row)
    else:
        dcbp = dcb_ptr + (pid_bc * G + g) * CS * CS
        for t0 in range(mb * BM, CS, BT):  # dB_m += Σ_t d(CBᵀ)[t, m] C_t
            t = t0 + tl.arange(0, BT)
            pt = c * CS + t
            dcbT = tl.load(dcbp + t[None, :] * CS + m[:, None])
            ct = tl.load(Cp + pt[:, None] * s_cl + n[None, :] * s_cn,
                         mask=(pt[:, None] < L) & nmask[None, :], other=0.0)
            dB += mma(dcbT.to(ct.dtype), ct)
        for s0 in range(0, (mb + 1) * BM, BT):  # dC_m += Σ_s d(CBᵀ)[m, s] B_s
            s = s0 + tl.arange(0, BT)
            ps = c * CS + s
            dcb = tl.load(dcbp + m[:, None] * CS + s[None, :])
            bs = tl.load(Bp + ps[:, None] * s_bl + n[None, :] * s_bn,
                         mask=(ps[:, None] < L) & nmask[None, :], other=0.0)
            dC += mma(dcb.to(bs.dtype), bs)
    hpg = H // G
    for i in range(0, hpg):
        h = g * hpg + i
        base = (b * H + h) * nchunks * CS + c * CS
        a_m = tl.load(acs_ptr + base + m)
        wB = tl.exp(tl.load(acs_ptr + base + CS - 1) - a_m) * tl.load(dtp_ptr + base + m)
        wC = tl.exp(a_m)
        if HAS_SEQ:
            wB = tl.where(qm == q_end, wB, 0.0)
            wC = tl.where(qm == q_prev, wC, 0.0)
        accB = tl.zeros((BM, BN), dtype=tl.float32)
        accC = tl.zeros((BM, BN), dtype=tl.float32)
        gh = tl.zeros((BP, BN), dtype=tl.float32)
        st_off = ((pid_bc * H + h) * P) * N
        for p0 in range(0, P, BP):
            p = p0 + tl.arange(0, BP)
            mp = mmask[:, None] & (p[None, :] < P)
            pn = (p[:, None] < P) & nmask[None, :]
            xm = tl.load(x_ptr + b * s_xb + h * s_xh + pm[:, None] * s_xl + p[None, :] * s_xp,
                         mask=mp, other=0.0)
            gs = tl.load(gst_ptr + st_off + p[:, None] * N + n[None, :], mask=pn, other=0.0)
            accB += mma(xm, gs.to(xm.dtype))
            dym = tl.load(dy_ptr + b * s_yb + h * s_yh + pm[:, None] * s_yl + p[None, :] * s_yp,
                          mask=mp, other=0.0)
            hp = tl.load(hprev_ptr + st_off + p[:, None] * N + n[None, :], mask=pn, other=0.0)
            accC += mma(dym, hp.to(dym.dtype))
            gh += gs * hp.to(tl.float32)
        dB += accB * wB[:, None]
        accC *= wC[:, None]
        dC += accC
        tl.atomic_add(gacs_ptr + base + m, tl.sum(accC * cm, axis=1))
        if mb == 0:  # the state passing's decay: ∂L/∂acs_end += k d ⟨G_c, H_prev⟩
            kd = tl.exp(tl.load(acs_ptr + base + CS - 1))
            if HAS_SEQ:
                kd = tl.where(q_prev == q_end, kd, 0.0)
            tl.atomic_add(gacs_ptr + base + CS - 1, kd * tl.sum(tl.sum(gh, axis=1), axis=0))
    o_off = b * s_gb + g * s_gg + pm[:, None] * s_gl + n[None, :] * s_gn  # dB, dC: contiguous
    tl.store(dB_ptr + o_off, dB.to(dB_ptr.dtype.element_ty), mask=mn)
    tl.store(dC_ptr + o_off, dC.to(dC_ptr.dtype.element_ty), mask=mn)


def bc_bwd(
    x: torch.Tensor, dy: torch.Tensor, B: torch.Tensor, C: torch.Tensor, dcb: torch.Tensor | None,
    gst: torch.Tensor, hprev: torch.Tensor, dtp: torch.Tensor, acs: torch.Tensor,
    seq_idx: torch.Tensor | None, g_acs: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(dB, dC), contiguous, in B's and C's dtypes; adds the inter-chunk ∂L/∂acs into ``g_acs``.
    ``dcb`` (``ssd_bmm.chunk_cb_bwd``) when a group has several heads; None with one head per group:
    the W blocks are formed here, and the row part of ∂L/∂acs is added too."""
    b, L, H, P = x.shape
    G, N = B.shape[2], B.shape[3]
    nc, cs = acs.shape[2], acs.shape[3]
    dB = torch.empty(B.shape, device=B.device, dtype=B.dtype)
    dC = torch.empty(C.shape, device=C.device, dtype=C.dtype)
    BM = BT = min(cs, 64)
    BP = dot_block(P, 64)
    BN = dot_block(N)
    q = seq_idx if seq_idx is not None else acs
    sq = (q.stride(0), q.stride(1)) if seq_idx is not None else (0, 0)
    fused = dcb is None
    if fused and H != G:
        raise ValueError(f"bc_bwd without d(CBᵀ) needs one head per group, got {H} heads, {G} groups")
    grid = (cs // BM, G, b * nc)
    _bc_bwd_kernel[grid](
        x, dy, B, C, g_acs if fused else dcb, gst, hprev, dtp, acs, q, dB, dC, g_acs, L, H, G, P, N, nc,
        *x.stride(), *dy.stride(), *B.stride(), *C.stride(), *sq, *dB.stride(),
        HAS_SEQ=seq_idx is not None, FUSED=fused, CS=cs, BM=BM, BT=BT, BP=BP, BN=BN, BPF=dot_block(P),
    )
    return dB, dC
