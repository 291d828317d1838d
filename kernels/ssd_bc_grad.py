"""SSD backward for B and C (section 6: the gradients of the two factors that carry N).

B enters through the intra-chunk Gram matrix and the chunk state; C through the Gram matrix and
the inter-chunk output. Per chunk, group g, heads h of the group (w_s = exp(acs_end − acs_s) Δ_s,
k_t = exp(acs_t) if t belongs to the sequence of the entering state, else 0)::

    dB_s = Σ_{t ≥ s} d(CBᵀ)[t, s] C_t  +  Σ_h w_h,s  X_h,s G_h          ((S × T)(T × N), (S × P)(P × N))
    dC_t = Σ_{s ≤ t} d(CBᵀ)[t, s] B_s  +  Σ_h k_h,t  dY_h,t H_prev,h     ((T × S)(S × N), (T × P)(P × N))

and the inter-chunk part of ∂L/∂acs_t = ⟨dY_t, Y_off,t⟩ = ⟨k_t dY_t H_prev, C_t⟩, read off the
second sum of dC per head.

From ``SPLIT_MIN_N`` state dimensions on, dB and dC are two launches (``DO_B`` / ``DO_C``), each with
one (BM, N) fp32 accumulator: at N 256 the two accumulators of one program spill (H200, 8K x 4:
forward+backward 3.87 vs 5.27 ms); at N 128 one program for both is 4-5% faster at 2-4K tokens.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from seqssm.kernels.ssd_common import dot_block, mma, tune

SPLIT_MIN_N = 256
# Rows of B and C per program (and steps per inner block): 64 fills a tensor-core tile; 32 (twice the programs)
# measured slower on the H200 (4K x 4 fwd+bwd 1.64 vs 1.34 ms of GPU time).
ROW_BLOCK = 64


@tune(key=["H", "G", "P", "N", "CS", "DO_B", "DO_C"], restore=["gacs_ptr"])
@triton.jit
def _bc_bwd_kernel(
    x_ptr, dy_ptr, B_ptr, C_ptr, dcb_ptr, gst_ptr, hprev_ptr, dtp_ptr, acs_ptr, seq_ptr,
    dB_ptr, dC_ptr, gacs_ptr,
    L, H, G, P, N, nchunks,
    s_xb, s_xl, s_xh, s_xp, s_yb, s_yl, s_yh, s_yp, s_bb, s_bl, s_bg, s_bn, s_cb, s_cl, s_cg, s_cn,
    s_qb, s_ql, s_gb, s_gl, s_gg, s_gn,
    HAS_SEQ: tl.constexpr, DO_B: tl.constexpr, DO_C: tl.constexpr, CS: tl.constexpr, BM: tl.constexpr,
    BT: tl.constexpr, BP: tl.constexpr, BN: tl.constexpr, NPB: tl.constexpr,
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
    dcbp = dcb_ptr + (pid_bc * G + g) * CS * CS
    dB = tl.zeros((BM, BN), dtype=tl.float32)
    dC = tl.zeros((BM, BN), dtype=tl.float32)
    if DO_B:
        for t0 in range(mb * BM, CS, BT):  # dB_m += Σ_t d(CBᵀ)[t, m] C_t
            t = t0 + tl.arange(0, BT)
            pt = c * CS + t
            dcbT = tl.load(dcbp + t[None, :] * CS + m[:, None])
            ct = tl.load(Cp + pt[:, None] * s_cl + n[None, :] * s_cn,
                         mask=(pt[:, None] < L) & nmask[None, :], other=0.0)
            dB += mma(dcbT.to(ct.dtype), ct)
    if DO_C:
        for s0 in range(0, (mb + 1) * BM, BT):  # dC_m += Σ_s d(CBᵀ)[m, s] B_s
            s = s0 + tl.arange(0, BT)
            ps = c * CS + s
            dcb = tl.load(dcbp + m[:, None] * CS + s[None, :])
            bs = tl.load(Bp + ps[:, None] * s_bl + n[None, :] * s_bn,
                         mask=(ps[:, None] < L) & nmask[None, :], other=0.0)
            dC += mma(dcb.to(bs.dtype), bs)
    if DO_C:  # C at the block's own rows: the inter-chunk part of ∂L/∂acs
        cm = tl.load(Cp + pm[:, None] * s_cl + n[None, :] * s_cn, mask=mn, other=0.0).to(tl.float32)
    if HAS_SEQ:
        qm = tl.load(seq_ptr + b * s_qb + pm * s_ql, mask=mmask, other=-2)
        q_end = tl.load(seq_ptr + b * s_qb + tl.minimum(c * CS + CS - 1, L - 1) * s_ql)
        q_prev = tl.load(seq_ptr + b * s_qb + tl.maximum(c * CS - 1, 0) * s_ql)
    # One pass over (head, head_dim block) pairs: every term below is linear in them, so nothing is carried
    # from one pass to the next and the loop is the innermost one, whose loads Triton pipelines.
    for k in range(0, (H // G) * NPB):
        h = g * (H // G) + k // NPB
        p = (k % NPB) * BP + tl.arange(0, BP)
        base = (b * H + h) * nchunks * CS + c * CS
        a_m = tl.load(acs_ptr + base + m)
        st_off = ((pid_bc * H + h) * P) * N
        mp = mmask[:, None] & (p[None, :] < P)
        pn = (p[:, None] < P) & nmask[None, :]
        if DO_B:
            wB = tl.exp(tl.load(acs_ptr + base + CS - 1) - a_m) * tl.load(dtp_ptr + base + m)
            if HAS_SEQ:
                wB = tl.where(qm == q_end, wB, 0.0)
            gs = tl.load(gst_ptr + st_off + p[:, None] * N + n[None, :], mask=pn, other=0.0)
            xm = tl.load(x_ptr + b * s_xb + h * s_xh + pm[:, None] * s_xl + p[None, :] * s_xp,
                         mask=mp, other=0.0)
            dB += mma(xm, gs.to(xm.dtype)) * wB[:, None]
        if DO_C:
            wC = tl.exp(a_m)
            if HAS_SEQ:
                wC = tl.where(qm == q_prev, wC, 0.0)
            dym = tl.load(dy_ptr + b * s_yb + h * s_yh + pm[:, None] * s_yl + p[None, :] * s_yp,
                          mask=mp, other=0.0)
            hp = tl.load(hprev_ptr + st_off + p[:, None] * N + n[None, :], mask=pn, other=0.0)
            accC = mma(dym, hp.to(dym.dtype)) * wC[:, None]
            dC += accC
            tl.atomic_add(gacs_ptr + base + m, tl.sum(accC * cm, axis=1))
    o_off = b * s_gb + g * s_gg + pm[:, None] * s_gl + n[None, :] * s_gn  # dB, dC: contiguous
    if DO_B:
        tl.store(dB_ptr + o_off, dB.to(dB_ptr.dtype.element_ty), mask=mn)
    if DO_C:
        tl.store(dC_ptr + o_off, dC.to(dC_ptr.dtype.element_ty), mask=mn)


def bc_bwd(
    x: torch.Tensor, dy: torch.Tensor, B: torch.Tensor, C: torch.Tensor, dcb: torch.Tensor,
    gst: torch.Tensor, hprev: torch.Tensor, dtp: torch.Tensor, acs: torch.Tensor,
    seq_idx: torch.Tensor | None, g_acs: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(dB, dC), contiguous, in B's and C's dtypes; adds the inter-chunk ∂L/∂acs into ``g_acs``."""
    b, L, H, P = x.shape
    G, N = B.shape[2], B.shape[3]
    nc, cs = acs.shape[2], acs.shape[3]
    dB = torch.empty(B.shape, device=B.device, dtype=B.dtype)
    dC = torch.empty(C.shape, device=C.device, dtype=C.dtype)
    BM = BT = min(cs, ROW_BLOCK)
    BP = dot_block(P, 64)
    BN = dot_block(N)
    q = seq_idx if seq_idx is not None else acs
    sq = (q.stride(0), q.stride(1)) if seq_idx is not None else (0, 0)
    grid = (cs // BM, G, b * nc)
    parts = [(True, False), (False, True)] if N >= SPLIT_MIN_N else [(True, True)]
    for do_b, do_c in parts:
        _bc_bwd_kernel[grid](
            x, dy, B, C, dcb, gst, hprev, dtp, acs, q, dB, dC, g_acs, L, H, G, P, N, nc,
            *x.stride(), *dy.stride(), *B.stride(), *C.stride(), *sq, *dB.stride(),
            HAS_SEQ=seq_idx is not None, DO_B=do_b, DO_C=do_c, CS=cs, BM=BM, BT=BT, BP=BP, BN=BN,
            NPB=triton.cdiv(P, BP),
        )
    return dB, dC
