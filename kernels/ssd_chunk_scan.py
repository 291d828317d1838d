"""SSD step 4: the output, and its gradient w.r.t. X and Δ (section 6, eq. 16 with the skip and gate).

For position t of chunk c (state entering the chunk H_prev, k_t = 1 if t belongs to its sequence)::

    Y_t = k_t exp(acs_t) H_prev C_t                              (inter-chunk: (T × N)(N × P))
        + Σ_{s ≤ t} (C_t·B_s) exp(acs_t − acs_s) Δ_s X_s          (intra-chunk: (T × S)(S × P))
        + D ⊙ X_t
    out_t = Y_t ⊙ silu(z_t)                                        (if z is given)

Backward (this file): with G = ∂L/∂S_c from the state passing and dY = ∂L/∂Y::

    U_s = Σ_{t ≥ s} (C_t·B_s) exp(acs_t − acs_s) dY_t  +  exp(acs_end − acs_s) G B_s
    dX_s = Δ_s U_s + D ⊙ dY_s,     ∂L/∂Δ_s = ⟨X_s, U_s⟩,     dD = Σ dY ⊙ X

and the gate: dY = dout ⊙ silu(z), dz = dout ⊙ Y ⊙ σ(z)(1 + z(1 − σ(z))).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from seqssm.kernels.ssd_common import dot_block, mma, tune

# The forward's tiles: FWD_ROWS output positions x FWD_COLS source positions per intra-chunk step.
# Measured (H200, bf16, 32 heads x 64, N 128, chunk 256; bench/results/ssd_chunks_2026-12-04_h200_fwd_tiles.md):
# 64 x 32 forward 0.284 / 2.12 ms at 4K x 4 / 32K x 4, 64 x 64 0.311 / 2.33, 64 x 128 0.350 / 2.65,
# 128 x 64 0.371 / 2.79, 128 x 128 0.407 / 3.09.
FWD_ROWS = 64
FWD_COLS = 32


@tune(key=["P", "N", "CS", "HAS_Z", "STORE_Y", "BT", "BS"])
@triton.jit
def _chunk_scan_fwd_kernel(
    x_ptr, C_ptr, cb_ptr, hprev_ptr, dtp_ptr, acs_ptr, seq_ptr, D_ptr, z_ptr, out_ptr, y_ptr,
    L, H, G, P, N, nchunks,
    s_xb, s_xl, s_xh, s_xp, s_cb, s_cl, s_cg, s_cn, s_zb, s_zl, s_zh, s_zp,
    s_ob, s_ol, s_oh, s_op, s_qb, s_ql, s_dh, s_dp,
    HAS_SEQ: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr, STORE_Y: tl.constexpr,
    CS: tl.constexpr, BT: tl.constexpr, BS: tl.constexpr, BP: tl.constexpr, BN: tl.constexpr,
):
    pid_bc = tl.program_id(2).to(tl.int64)
    h = tl.program_id(1).to(tl.int64)
    g = h // (H // G)
    n_pb = tl.cdiv(P, BP)
    tb = tl.program_id(0) // n_pb
    pb = tl.program_id(0) % n_pb
    b = pid_bc // nchunks
    c = pid_bc % nchunks
    t = tb * BT + tl.arange(0, BT)
    p = pb * BP + tl.arange(0, BP)
    pt = c * CS + t
    tmask = pt < L
    pmask = p < P
    base = (b * H + h) * nchunks * CS + c * CS
    a_t = tl.load(acs_ptr + base + t)
    scale = tl.exp(a_t)
    if HAS_SEQ:
        qt = tl.load(seq_ptr + b * s_qb + pt * s_ql, mask=tmask, other=-1)
        q_prev = tl.load(seq_ptr + b * s_qb + tl.maximum(c * CS - 1, 0) * s_ql)
        scale = tl.where(qt == q_prev, scale, 0.0)
    # inter-chunk: exp(acs_t) C_t H_prev
    acc = tl.zeros((BT, BP), dtype=tl.float32)
    Cp = C_ptr + b * s_cb + g * s_cg + pt[:, None] * s_cl
    Hp = hprev_ptr + ((pid_bc * H + h) * P + p[None, :]) * N
    for n0 in range(0, N, BN):
        n = n0 + tl.arange(0, BN)
        ct = tl.load(Cp + n[None, :] * s_cn, mask=tmask[:, None] & (n[None, :] < N), other=0.0)
        hp = tl.load(Hp + n[:, None], mask=pmask[None, :] & (n[:, None] < N), other=0.0)
        acc += mma(ct, hp.to(ct.dtype))
    acc *= scale[:, None]
    # intra-chunk: (L ∘ C Bᵀ)(Δ X)
    xp = x_ptr + b * s_xb + h * s_xh
    cbp = cb_ptr + (pid_bc * G + g) * CS * CS + t[:, None] * CS
    for s0 in range(0, (tb + 1) * BT, BS):
        s = s0 + tl.arange(0, BS)
        ps = c * CS + s
        cb = tl.load(cbp + s[None, :])
        a_s = tl.load(acs_ptr + base + s)
        dt_s = tl.load(dtp_ptr + base + s)
        keep = t[:, None] >= s[None, :]
        if HAS_SEQ:
            qs = tl.load(seq_ptr + b * s_qb + ps * s_ql, mask=ps < L, other=-2)
            keep &= qt[:, None] == qs[None, :]
        w = cb * tl.exp(tl.minimum(a_t[:, None] - a_s[None, :], 0.0)) * dt_s[None, :]
        w = tl.where(keep, w, 0.0)
        xs = tl.load(xp + ps[:, None] * s_xl + p[None, :] * s_xp,
                     mask=(ps[:, None] < L) & pmask[None, :], other=0.0)
        acc += mma(w.to(xs.dtype), xs)
    m2 = tmask[:, None] & pmask[None, :]
    if HAS_D:
        d = tl.load(D_ptr + h * s_dh + p * s_dp, mask=pmask, other=0.0).to(tl.float32)
        xt = tl.load(xp + pt[:, None] * s_xl + p[None, :] * s_xp, mask=m2, other=0.0)
        acc += xt.to(tl.float32) * d[None, :]
    o_off = b * s_ob + h * s_oh + pt[:, None] * s_ol + p[None, :] * s_op
    if HAS_Z:
        if STORE_Y:
            tl.store(y_ptr + o_off, acc.to(y_ptr.dtype.element_ty), mask=m2)
        zt = tl.load(z_ptr + b * s_zb + h * s_zh + pt[:, None] * s_zl + p[None, :] * s_zp,
                     mask=m2, other=0.0).to(tl.float32)
        acc = acc * zt * tl.sigmoid(zt)
    tl.store(out_ptr + o_off, acc.to(out_ptr.dtype.element_ty), mask=m2)


@tune(key=["P", "N", "CS"], restore=["gacs_ptr"])
@triton.jit
def _chunk_scan_bwd_dx_kernel(
    x_ptr, dy_ptr, B_ptr, cb_ptr, gst_ptr, dtp_ptr, acs_ptr, seq_ptr, D_ptr,
    dx_ptr, gdt_ptr, dD_ptr, gacs_ptr,
    L, H, G, P, N, nchunks,
    s_xb, s_xl, s_xh, s_xp, s_yb, s_yl, s_yh, s_yp, s_bb, s_bl, s_bg, s_bn, s_qb, s_ql, s_dh, s_dp,
    s_ob, s_ol, s_oh, s_op,
    HAS_SEQ: tl.constexpr, HAS_D: tl.constexpr,
    CS: tl.constexpr, BS: tl.constexpr, BT: tl.constexpr, BP: tl.constexpr, BN: tl.constexpr,
):
    pid_bc = tl.program_id(2).to(tl.int64)
    h = tl.program_id(1).to(tl.int64)
    sb = tl.program_id(0)
    g = h // (H // G)
    b = pid_bc // nchunks
    c = pid_bc % nchunks
    s = sb * BS + tl.arange(0, BS)
    p = tl.arange(0, BP)
    ps = c * CS + s
    smask = ps < L
    pmask = p < P
    m2 = smask[:, None] & pmask[None, :]
    base = (b * H + h) * nchunks * CS + c * CS
    a_s = tl.load(acs_ptr + base + s)
    dt_s = tl.load(dtp_ptr + base + s)
    a_end = tl.load(acs_ptr + base + CS - 1)
    w_end = tl.exp(a_end - a_s)
    if HAS_SEQ:
        qs = tl.load(seq_ptr + b * s_qb + ps * s_ql, mask=smask, other=-2)
        q_end = tl.load(seq_ptr + b * s_qb + tl.minimum(c * CS + CS - 1, L - 1) * s_ql)
        w_end = tl.where(qs == q_end, w_end, 0.0)
    # state term: exp(acs_end − acs_s) B_s Gᵀ
    acc = tl.zeros((BS, BP), dtype=tl.float32)
    Bp = B_ptr + b * s_bb + g * s_bg + ps[:, None] * s_bl
    Gp = gst_ptr + ((pid_bc * H + h) * P + p[None, :]) * N
    for n0 in range(0, N, BN):
        n = n0 + tl.arange(0, BN)
        bs = tl.load(Bp + n[None, :] * s_bn, mask=smask[:, None] & (n[None, :] < N), other=0.0)
        gt = tl.load(Gp + n[:, None], mask=pmask[None, :] & (n[:, None] < N), other=0.0)
        acc += mma(bs, gt.to(bs.dtype))
    acc *= w_end[:, None]
    xs = tl.load(x_ptr + b * s_xb + h * s_xh + ps[:, None] * s_xl + p[None, :] * s_xp,
                 mask=m2, other=0.0).to(tl.float32)
    # the chunk-end decay sees Σ_s Δ_s ⟨X_s, state term⟩ (∂S_c/∂acs_end)
    tl.atomic_add(gacs_ptr + base + CS - 1, tl.sum(tl.sum(xs * acc, axis=1) * dt_s, axis=0))
    # intra term: Σ_{t ≥ s} (C_t·B_s) exp(acs_t − acs_s) dY_t
    dyp = dy_ptr + b * s_yb + h * s_yh
    cbp = cb_ptr + (pid_bc * G + g) * CS * CS + s[:, None]
    for t0 in range(sb * BS, CS, BT):
        t = t0 + tl.arange(0, BT)
        pt = c * CS + t
        cbT = tl.load(cbp + t[None, :] * CS)  # (BS, BT) = (C Bᵀ)[t, s]ᵀ
        a_t = tl.load(acs_ptr + base + t)
        keep = t[None, :] >= s[:, None]
        if HAS_SEQ:
            qt = tl.load(seq_ptr + b * s_qb + pt * s_ql, mask=pt < L, other=-1)
            keep &= qt[None, :] == qs[:, None]
        w = tl.where(keep, cbT * tl.exp(tl.minimum(a_t[None, :] - a_s[:, None], 0.0)), 0.0)
        dyt = tl.load(dyp + pt[:, None] * s_yl + p[None, :] * s_yp,
                      mask=(pt[:, None] < L) & pmask[None, :], other=0.0)
        acc += mma(w.to(dyt.dtype), dyt)
    gdt = tl.sum(xs * acc, axis=1)
    tl.store(gdt_ptr + base + s, gdt)
    dx = acc * dt_s[:, None]
    if HAS_D:
        dys = tl.load(dyp + ps[:, None] * s_yl + p[None, :] * s_yp, mask=m2, other=0.0).to(tl.float32)
        d = tl.load(D_ptr + h * s_dh + p * s_dp, mask=pmask, other=0.0).to(tl.float32)
        dx += dys * d[None, :]
        n_sb = CS // BS
        tl.store(dD_ptr + ((pid_bc * n_sb + sb) * H + h) * P + p, tl.sum(dys * xs, axis=0), mask=pmask)
    tl.store(dx_ptr + b * s_ob + h * s_oh + ps[:, None] * s_ol + p[None, :] * s_op,
             dx.to(dx_ptr.dtype.element_ty), mask=m2)


@triton.jit
def _gate_bwd_kernel(
    dout_ptr, y_ptr, z_ptr, dy_ptr, dz_ptr, R, LEN, H, P,
    s_ob, s_ol, s_oh, s_op, s_zb, s_zl, s_zh, s_zp,
    BR: tl.constexpr, BP: tl.constexpr,
):
    # rows r = b * LEN + l; y, dy and dz are contiguous (batch, L, heads, P), like x
    r = tl.program_id(0).to(tl.int64) * BR + tl.arange(0, BR)
    h = tl.program_id(1).to(tl.int64)
    p = tl.arange(0, BP)
    m = (r[:, None] < R) & (p[None, :] < P)
    bi = r // LEN
    li = r % LEN
    off = (r[:, None] * H + h) * P + p[None, :]
    do = tl.load(dout_ptr + bi[:, None] * s_ob + li[:, None] * s_ol + h * s_oh + p[None, :] * s_op,
                 mask=m, other=0.0).to(tl.float32)
    z = tl.load(z_ptr + bi[:, None] * s_zb + li[:, None] * s_zl + h * s_zh + p[None, :] * s_zp,
                mask=m, other=0.0).to(tl.float32)
    y = tl.load(y_ptr + off, mask=m, other=0.0).to(tl.float32)
    sg = tl.sigmoid(z)
    tl.store(dy_ptr + off, (do * z * sg).to(dy_ptr.dtype.element_ty), mask=m)
    tl.store(dz_ptr + off, (do * y * sg * (1.0 + z * (1.0 - sg))).to(dz_ptr.dtype.element_ty), mask=m)


def _d_strides(D: torch.Tensor | None) -> tuple[int, int]:
    if D is None:
        return 0, 0
    return (D.stride(0), 0) if D.dim() == 1 else (D.stride(0), D.stride(1))


def chunk_scan_fwd(
    x: torch.Tensor, C: torch.Tensor, cb: torch.Tensor, hprev: torch.Tensor, dtp: torch.Tensor,
    acs: torch.Tensor, seq_idx: torch.Tensor | None, D: torch.Tensor | None, z: torch.Tensor | None,
    store_y: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Returns (out (batch, L, heads, P) in x's dtype, Y before the gate if ``z`` and ``store_y``)."""
    b, L, H, P = x.shape
    G, N = C.shape[2], C.shape[3]
    nc, cs = acs.shape[2], acs.shape[3]
    out = torch.empty(b, L, H, P, device=x.device, dtype=x.dtype)
    y = torch.empty_like(out) if (z is not None and store_y) else None
    BT, BS = min(cs, FWD_ROWS), min(cs, FWD_COLS)
    BP = dot_block(P, 64)
    BN = dot_block(N, 64)
    q = seq_idx if seq_idx is not None else acs
    sq = (q.stride(0), q.stride(1)) if seq_idx is not None else (0, 0)
    zz = z if z is not None else x
    grid = ((cs // BT) * triton.cdiv(P, BP), H, b * nc)  # chunk slowest: C, CBᵀ shared in L2
    _chunk_scan_fwd_kernel[grid](
        x, C, cb, hprev, dtp, acs, q, D if D is not None else x, zz, out, y if y is not None else out,
        L, H, G, P, N, nc, *x.stride(), *C.stride(), *zz.stride(), *out.stride(), *sq, *_d_strides(D),
        HAS_SEQ=seq_idx is not None, HAS_D=D is not None, HAS_Z=z is not None, STORE_Y=y is not None,
        CS=cs, BT=BT, BS=BS, BP=BP, BN=BN,
    )
    return out, y


def chunk_scan_bwd_dx(
    x: torch.Tensor, dy: torch.Tensor, B: torch.Tensor, cb: torch.Tensor, gst: torch.Tensor,
    dtp: torch.Tensor, acs: torch.Tensor, seq_idx: torch.Tensor | None, D: torch.Tensor | None,
    g_acs: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Returns (dx like x, ∂L/∂Δ fp32 (batch, heads, nchunks, Q), dD shaped like D or None); adds
    the chunk-end decay gradient into ``g_acs``."""
    b, L, H, P = x.shape
    G, N = B.shape[2], B.shape[3]
    nc, cs = acs.shape[2], acs.shape[3]
    dx = torch.empty(x.shape, device=x.device, dtype=x.dtype)
    gdt = torch.empty_like(dtp)
    BS = BT = min(cs, 64)
    BP = dot_block(P)
    BN = dot_block(N, 64)
    n_sb = cs // BS
    dD = torch.empty(b * nc * n_sb, H, P, device=x.device, dtype=torch.float32) if D is not None else None
    q = seq_idx if seq_idx is not None else acs
    sq = (q.stride(0), q.stride(1)) if seq_idx is not None else (0, 0)
    grid = (n_sb, H, b * nc)
    _chunk_scan_bwd_dx_kernel[grid](
        x, dy, B, cb, gst, dtp, acs, q, D if D is not None else x, dx, gdt,
        dD if dD is not None else gdt, g_acs, L, H, G, P, N, nc,
        *x.stride(), *dy.stride(), *B.stride(), *sq, *_d_strides(D), *dx.stride(),
        HAS_SEQ=seq_idx is not None, HAS_D=D is not None, CS=cs, BS=BS, BT=BT, BP=BP, BN=BN,
    )
    if dD is not None:
        dD = dD.sum(0)
        dD = dD.sum(-1) if D.dim() == 1 else dD
    return dx, gdt, dD


def gate_bwd(
    dout: torch.Tensor, y: torch.Tensor, z: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """out = y ⊙ silu(z): returns (dY, dz), both contiguous in y's dtype."""
    b, L, H, P = y.shape
    dy = torch.empty_like(y)
    dz = torch.empty_like(y)
    BR = 64
    BP = dot_block(P)
    grid = (triton.cdiv(b * L, BR), H)
    _gate_bwd_kernel[grid](
        dout, y, z, dy, dz, b * L, L, H, P, *dout.stride(), *z.stride(), BR=BR, BP=BP, num_warps=4,
    )
    return dy, dz
