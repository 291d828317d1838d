"""SSD step 2: the state each chunk produces on its own (section 6, the "right factor" of eq. 16).

For chunk c with positions s and per-chunk cumulative log-decay ``acs``::

    S_c = Σ_{s in chunk, same sequence as the chunk's end} exp(acs_end − acs_s) Δ_s X_s B_sᵀ
          (heads, head_dim, N) = a (P × Q)(Q × N) matrix product per head

The same kernel with the other weight computes, in the backward pass, the gradient of the state
that enters the chunk (the "left factor" C of the inter-chunk output ``Y_off = exp(acs_t) C_t H``)::

    dH_prev,c = Σ_{t in chunk, same sequence as the state} exp(acs_t) dY_t C_tᵀ

``varlen_states`` evaluates the state at the last token of every packed sequence (``cu_seqlens``):
the state entering that chunk, decayed to the token, plus that chunk's own terms up to the token.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from seqssm.kernels.ssd_common import dot_block, mma, tune


@tune(key=["P", "N", "CS", "TO_END"])
@triton.jit
def _chunk_state_kernel(
    X_ptr, Y_ptr, dtp_ptr, acs_ptr, seq_ptr, out_ptr,
    L, H, G, P, N, nchunks,
    s_xb, s_xl, s_xh, s_xp, s_yb, s_yl, s_yg, s_yn, s_qb, s_ql,
    TO_END: tl.constexpr, HAS_SEQ: tl.constexpr,
    CS: tl.constexpr, BP: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
):
    pid_bc = tl.program_id(2).to(tl.int64)
    h = tl.program_id(1).to(tl.int64)
    g = h // (H // G)
    n_nb = tl.cdiv(N, BN)
    pb = tl.program_id(0) // n_nb
    nb = tl.program_id(0) % n_nb
    b = pid_bc // nchunks
    c = pid_bc % nchunks
    p = pb * BP + tl.arange(0, BP)
    n = nb * BN + tl.arange(0, BN)
    base = (b * H + h) * nchunks * CS + c * CS
    a_end = tl.load(acs_ptr + base + CS - 1)
    if HAS_SEQ:
        if TO_END:
            q_ref = tl.load(seq_ptr + b * s_qb + tl.minimum(c * CS + CS - 1, L - 1) * s_ql)
        else:
            q_ref = tl.load(seq_ptr + b * s_qb + tl.maximum(c * CS - 1, 0) * s_ql)
    Xp = X_ptr + b * s_xb + h * s_xh
    Yp = Y_ptr + b * s_yb + g * s_yg
    acc = tl.zeros((BP, BN), dtype=tl.float32)
    for k0 in range(0, CS, BK):
        k = k0 + tl.arange(0, BK)
        pk = c * CS + k
        xk = tl.load(Xp + pk[None, :] * s_xl + p[:, None] * s_xp,
                     mask=(pk[None, :] < L) & (p[:, None] < P), other=0.0)
        yk = tl.load(Yp + pk[:, None] * s_yl + n[None, :] * s_yn,
                     mask=(pk[:, None] < L) & (n[None, :] < N), other=0.0)
        a_k = tl.load(acs_ptr + base + k)
        if TO_END:
            w = tl.exp(a_end - a_k) * tl.load(dtp_ptr + base + k)
        else:
            w = tl.exp(a_k)
        if HAS_SEQ:
            qk = tl.load(seq_ptr + b * s_qb + pk * s_ql, mask=pk < L, other=-1)
            w = tl.where(qk == q_ref, w, 0.0)
        acc += mma((xk * w[None, :]).to(yk.dtype), yk)
    off = ((pid_bc * H + h) * P + p[:, None]) * N + n[None, :]
    tl.store(out_ptr + off, acc, mask=(p[:, None] < P) & (n[None, :] < N))


@triton.jit
def _varlen_state_kernel(
    x_ptr, B_ptr, dtp_ptr, acs_ptr, cu_ptr, states_ptr, out_ptr,
    H, G, P, N, nchunks,
    s_xl, s_xh, s_xp, s_bl, s_bg, s_bn,
    CS: tl.constexpr, BP: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
):
    i = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1).to(tl.int64)
    g = h // (H // G)
    n_nb = tl.cdiv(N, BN)
    p = (tl.program_id(2) // n_nb) * BP + tl.arange(0, BP)
    n = (tl.program_id(2) % n_nb) * BN + tl.arange(0, BN)
    start = tl.load(cu_ptr + i).to(tl.int64)
    e = tl.load(cu_ptr + i + 1).to(tl.int64) - 1
    c = e // CS
    base = h * nchunks * CS + c * CS
    a_e = tl.load(acs_ptr + base + e - c * CS)
    pn_mask = (p[:, None] < P) & (n[None, :] < N)
    acc = tl.zeros((BP, BN), dtype=tl.float32)
    for k0 in range(0, CS, BK):
        k = k0 + tl.arange(0, BK)
        pk = c * CS + k
        valid = (pk <= e) & (pk >= start)
        xk = tl.load(x_ptr + h * s_xh + pk[None, :] * s_xl + p[:, None] * s_xp,
                     mask=valid[None, :] & (p[:, None] < P), other=0.0)
        bk = tl.load(B_ptr + g * s_bg + pk[:, None] * s_bl + n[None, :] * s_bn,
                     mask=valid[:, None] & (n[None, :] < N), other=0.0)
        w = tl.exp(tl.minimum(a_e - tl.load(acs_ptr + base + k), 0.0)) * tl.load(dtp_ptr + base + k)
        w = tl.where(valid, w, 0.0)
        acc += mma((xk * w[None, :]).to(bk.dtype), bk)
    if (start < c * CS) | (start == 0):  # the state entering the chunk belongs to this sequence
        hp = tl.load(states_ptr + ((c * H + h) * P + p[:, None]) * N + n[None, :], mask=pn_mask, other=0.0)
        acc += tl.exp(a_e) * hp.to(tl.float32)
    tl.store(out_ptr + ((i * H + h) * P + p[:, None]) * N + n[None, :], acc, mask=pn_mask)


def _pn_blocks(P: int, N: int) -> tuple[int, int]:
    return dot_block(P, 64), dot_block(N, 128)


def chunk_state(
    X: torch.Tensor, Y: torch.Tensor, dtp: torch.Tensor, acs: torch.Tensor,
    seq_idx: torch.Tensor | None, to_end: bool = True,
) -> torch.Tensor:
    """Per-chunk states fp32 (batch, nchunks, heads, P, N). X (batch, L, heads, P); Y (batch, L,
    groups, N). ``to_end=True``: S_c (weights exp(acs_end − acs_s) Δ_s); ``False``: dH_prev
    (weights exp(acs_t), X = dY, Y = C)."""
    b, L, H, P = X.shape
    G, N = Y.shape[2], Y.shape[3]
    nc, cs = acs.shape[2], acs.shape[3]
    out = torch.empty(b, nc, H, P, N, device=X.device, dtype=torch.float32)
    BP, BN = _pn_blocks(P, N)
    BK = min(cs, 64)
    q = seq_idx if seq_idx is not None else acs
    sq = (q.stride(0), q.stride(1)) if seq_idx is not None else (0, 0)
    grid = (triton.cdiv(P, BP) * triton.cdiv(N, BN), H, b * nc)
    _chunk_state_kernel[grid](
        X, Y, dtp, acs, q, out, L, H, G, P, N, nc, *X.stride(), *Y.stride(), *sq,
        TO_END=to_end, HAS_SEQ=seq_idx is not None, CS=cs, BP=BP, BN=BN, BK=BK,
    )
    return out


def varlen_states(
    x: torch.Tensor, B: torch.Tensor, dtp: torch.Tensor, acs: torch.Tensor,
    states: torch.Tensor, cu_seqlens: torch.Tensor,
) -> torch.Tensor:
    """State after the last token of every sequence packed in a batch of one: fp32 (num_seqs,
    heads, P, N). ``states`` (1, nchunks, heads, P, N) holds the state entering each chunk."""
    _, L, H, P = x.shape
    G, N = B.shape[2], B.shape[3]
    nc, cs = acs.shape[2], acs.shape[3]
    nseq = cu_seqlens.numel() - 1
    out = torch.empty(nseq, H, P, N, device=x.device, dtype=torch.float32)
    BP, BN = _pn_blocks(P, N)
    grid = (nseq, H, triton.cdiv(P, BP) * triton.cdiv(N, BN))
    _varlen_state_kernel[grid](
        x, B, dtp, acs, cu_seqlens, states, out, H, G, P, N, nc, *x.stride()[1:], *B.stride()[1:],
        CS=cs, BP=BP, BN=BN, BK=min(cs, 64), num_warps=4,
    )
    return out
