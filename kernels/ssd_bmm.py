"""SSD step 1: the per-chunk Gram matrix ``CBᵀ`` (forward) and its gradient (backward).

Inside one chunk the SSD output is the quadratic (attention-like) form of section 6, eq. (16)::

    Y_intra = (L ∘ C Bᵀ) (Δ ∘ X),   L[t, s] = exp(acs_t − acs_s) for s ≤ t (same sequence), else 0

``C Bᵀ`` depends only on the group, not the head, so it is computed once per (chunk, group) on
tensor cores and shared by the ``heads / groups`` heads of the group.

Backward: with ``dY`` the gradient of Y_intra and ``W_h[t, s] = L_h[t, s] Δ_h,s ⟨dY_h,t, X_h,s⟩``::

    d(CBᵀ)[t, s] = Σ_{heads h of the group} W_h[t, s]            (then dC = d(CBᵀ) B, dB = d(CBᵀ)ᵀ C)
    g_acs_h,t  += Σ_s W_h[t, s] (CBᵀ)[t, s]                       (the "row" part of ∂L/∂acs)

The column part (−Σ_t …, the gradient through ``acs_s``) equals ``−Δ_s · g_Δ_s`` and is added
by the ``dt_cumsum`` backward, so it is not computed here.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from seqssm.kernels.ssd_common import dot_block, mma, tune


@tune(key=["N", "CS", "BT"])
@triton.jit
def _cb_fwd_kernel(
    C_ptr, B_ptr, out_ptr, L, G, N, nchunks,
    s_cb, s_cl, s_cg, s_cn, s_bb, s_bl, s_bg, s_bn,
    CS: tl.constexpr, BT: tl.constexpr, BS: tl.constexpr, BK: tl.constexpr,
):
    pid_bc = tl.program_id(2).to(tl.int64)
    g = tl.program_id(1).to(tl.int64)
    n_sb = CS // BS
    tb = tl.program_id(0) // n_sb
    sb = tl.program_id(0) % n_sb
    b = pid_bc // nchunks
    c = pid_bc % nchunks
    t = tb * BT + tl.arange(0, BT)
    s = sb * BS + tl.arange(0, BS)
    acc = tl.zeros((BT, BS), dtype=tl.float32)
    if sb * BS <= tb * BT + BT - 1:  # the upper triangle stays zero
        pt = c * CS + t
        ps = c * CS + s
        Cp = C_ptr + b * s_cb + g * s_cg + pt[:, None] * s_cl
        Bp = B_ptr + b * s_bb + g * s_bg + ps[None, :] * s_bl
        for k0 in range(0, N, BK):
            k = k0 + tl.arange(0, BK)
            ct = tl.load(Cp + k[None, :] * s_cn, mask=(pt[:, None] < L) & (k[None, :] < N), other=0.0)
            bs = tl.load(Bp + k[:, None] * s_bn, mask=(ps[None, :] < L) & (k[:, None] < N), other=0.0)
            acc += mma(ct, bs)
    off = (pid_bc * G + g) * CS * CS + t[:, None] * CS + s[None, :]
    tl.store(out_ptr + off, acc.to(out_ptr.dtype.element_ty))


@tune(key=["H", "G", "P", "CS", "BT"], restore=["gacs_ptr"])
@triton.jit
def _cb_bwd_kernel(
    x_ptr, dy_ptr, cb_ptr, dtp_ptr, acs_ptr, seq_ptr, dcb_ptr, gacs_ptr,
    L, H, G, P, nchunks,
    s_xb, s_xl, s_xh, s_xp, s_yb, s_yl, s_yh, s_yp, s_qb, s_ql,
    HAS_SEQ: tl.constexpr, CS: tl.constexpr, BT: tl.constexpr, BS: tl.constexpr, BP: tl.constexpr,
    NPB: tl.constexpr,
):
    pid_bc = tl.program_id(2).to(tl.int64)
    g = tl.program_id(1).to(tl.int64)
    n_sb = CS // BS
    tb = tl.program_id(0) // n_sb
    sb = tl.program_id(0) % n_sb
    b = pid_bc // nchunks
    c = pid_bc % nchunks
    t = tb * BT + tl.arange(0, BT)
    s = sb * BS + tl.arange(0, BS)
    pt = c * CS + t
    ps = c * CS + s
    off_cb = (pid_bc * G + g) * CS * CS + t[:, None] * CS + s[None, :]
    if sb * BS > tb * BT + BT - 1:  # above the diagonal: never read (ssd_bc_grad reads t >= s blocks)
        return
    keep = t[:, None] >= s[None, :]
    if HAS_SEQ:
        qt = tl.load(seq_ptr + b * s_qb + pt * s_ql, mask=pt < L, other=-1)
        qs = tl.load(seq_ptr + b * s_qb + ps * s_ql, mask=ps < L, other=-2)
        keep &= qt[:, None] == qs[None, :]
    cb = tl.load(cb_ptr + off_cb).to(tl.float32)
    acc = tl.zeros((BT, BS), dtype=tl.float32)
    # One pass over (head, head_dim block) pairs: W and its ∂L/∂acs share are linear in them, so the loop
    # carries only the sum and is the innermost one, whose loads Triton pipelines.
    for k in range(0, (H // G) * NPB):
        h = g * (H // G) + k // NPB
        p = (k % NPB) * BP + tl.arange(0, BP)
        base = (b * H + h) * nchunks * CS + c * CS
        a_t = tl.load(acs_ptr + base + t)
        a_s = tl.load(acs_ptr + base + s)
        dt_s = tl.load(dtp_ptr + base + s)
        dy = tl.load(dy_ptr + b * s_yb + h * s_yh + pt[:, None] * s_yl + p[None, :] * s_yp,
                     mask=(pt[:, None] < L) & (p[None, :] < P), other=0.0)
        xs = tl.load(x_ptr + b * s_xb + h * s_xh + ps[None, :] * s_xl + p[:, None] * s_xp,
                     mask=(ps[None, :] < L) & (p[:, None] < P), other=0.0)
        dyx = mma(dy, xs.to(dy.dtype))
        decay = tl.exp(tl.minimum(a_t[:, None] - a_s[None, :], 0.0))
        w = tl.where(keep, dyx * decay * dt_s[None, :], 0.0)
        acc += w
        tl.atomic_add(gacs_ptr + base + t, tl.sum(w * cb, axis=1))
    tl.store(dcb_ptr + off_cb, acc.to(dcb_ptr.dtype.element_ty))


def _blocks(cs: int) -> int:
    return min(cs, 64)


def chunk_cb(C: torch.Tensor, B: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """(C Bᵀ) per chunk: C, B (batch, L, groups, N) -> (batch, nchunks, groups, Q, Q) in C's dtype
    (fp32 accumulation), zero above the diagonal blocks."""
    b, L, G, N = C.shape
    nc = triton.cdiv(L, chunk_size)
    out = torch.empty(b, nc, G, chunk_size, chunk_size, device=C.device, dtype=C.dtype)
    BT = BS = _blocks(chunk_size)
    BK = dot_block(N, 64)
    grid = ((chunk_size // BT) * (chunk_size // BS), G, b * nc)
    _cb_fwd_kernel[grid](
        C, B, out, L, G, N, nc, *C.stride(), *B.stride(), CS=chunk_size, BT=BT, BS=BS, BK=BK,
    )
    return out


def chunk_cb_bwd(
    x: torch.Tensor, dy: torch.Tensor, cb: torch.Tensor, dtp: torch.Tensor, acs: torch.Tensor,
    seq_idx: torch.Tensor | None, g_acs: torch.Tensor,
) -> torch.Tensor:
    """d(CBᵀ) (batch, nchunks, groups, Q, Q) in CBᵀ's dtype (fp32 sums; ``bc_bwd`` rounds it to that dtype
    for its products anyway), blocks above the diagonal left unwritten; adds the row part of ∂L/∂acs into
    ``g_acs``."""
    b, L, H, P = x.shape
    nc, G, cs = cb.shape[1], cb.shape[2], cb.shape[3]
    dcb = torch.empty_like(cb)
    BT = BS = _blocks(cs)
    BP = dot_block(P, 64)
    q = seq_idx if seq_idx is not None else dtp
    sq = (q.stride(0), q.stride(1)) if seq_idx is not None else (0, 0)
    grid = ((cs // BT) * (cs // BS), G, b * nc)
    _cb_bwd_kernel[grid](
        x, dy, cb, dtp, acs, q, dcb, g_acs, L, H, G, P, nc, *x.stride(), *dy.stride(), *sq,
        HAS_SEQ=seq_idx is not None, CS=cs, BT=BT, BS=BS, BP=BP, NPB=triton.cdiv(P, BP),
    )
    return dcb
