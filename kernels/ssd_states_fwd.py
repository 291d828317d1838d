"""SSD steps 2 and 3 of the forward in one kernel: each chunk's own state and the passing of the state
from chunk to chunk (section 6, eq. 16's right factor and the inter-chunk recurrence).

For chunk c (positions s, per-chunk cumulative log-decay ``acs``, d_c = exp(acs_c,end), k_c = 0 where a
sequence boundary (``seq_idx``) falls inside the chunk or at its start, else 1)::

    S_c = Σ_{s in chunk, same sequence as the chunk's end} exp(acs_end − acs_s) Δ_s X_s B_sᵀ
    H_{-1} = initial state,   H_c = k_c d_c H_{c-1} + S_c,   final state = H_{nchunks-1}

One program owns a (BP × BN) block of one head's (head_dim × N) state and walks the chunks in order:
S_c is a (P × Q)(Q × N) product on tensor cores, added to the fp32 state held in registers, and the
state entering each chunk, H_{c-1}, is written in the inputs' dtype (the output step rounds it to that
dtype for its own products). S_c never goes to memory: the two-kernel form wrote it in fp32 and read
it back (4 bytes x 2 per state entry and chunk, twice the stored states). The loads of the next chunk
do not depend on the state, so the walk pipelines; its length is the number of chunks, and the block
sizes shrink until the programs fill the GPU.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from seqssm.kernels.ssd_common import dot_block, mma, tune


@tune(key=["P", "N", "CS", "HAS_SEQ", "HAS_INIT", "BP", "BN"])
@triton.jit
def _states_fwd_kernel(
    x_ptr, B_ptr, dtp_ptr, acs_ptr, seq_ptr, init_ptr, hprev_ptr, final_ptr,
    L, H, G, P, N, nchunks,
    s_xb, s_xl, s_xh, s_xp, s_bb, s_bl, s_bg, s_bn, s_qb, s_ql,
    HAS_INIT: tl.constexpr, HAS_SEQ: tl.constexpr,
    CS: tl.constexpr, BP: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
):
    b = tl.program_id(2).to(tl.int64)
    h = tl.program_id(1).to(tl.int64)
    g = h // (H // G)
    n_nb = tl.cdiv(N, BN)
    p = (tl.program_id(0) // n_nb) * BP + tl.arange(0, BP)
    n = (tl.program_id(0) % n_nb) * BN + tl.arange(0, BN)
    pn_mask = (p[:, None] < P) & (n[None, :] < N)
    pn = p[:, None] * N + n[None, :]
    if HAS_INIT:
        state = tl.load(init_ptr + (b * H + h) * P * N + pn, mask=pn_mask, other=0.0).to(tl.float32)
    else:
        state = tl.zeros((BP, BN), dtype=tl.float32)
    Xp = x_ptr + b * s_xb + h * s_xh
    Bp = B_ptr + b * s_bb + g * s_bg
    for c in range(0, nchunks):
        base = ((b * H + h) * nchunks + c) * CS
        tl.store(hprev_ptr + ((b * nchunks + c) * H + h) * P * N + pn, state.to(hprev_ptr.dtype.element_ty),
                 mask=pn_mask)
        a_end = tl.load(acs_ptr + base + CS - 1)
        kd = tl.exp(a_end)
        if HAS_SEQ:
            q_prev = tl.load(seq_ptr + b * s_qb + tl.minimum(tl.maximum(c * CS - 1, 0), L - 1) * s_ql)
            q_end = tl.load(seq_ptr + b * s_qb + tl.minimum(c * CS + CS - 1, L - 1) * s_ql)
            kd = tl.where(q_prev == q_end, kd, 0.0)
        acc = tl.zeros((BP, BN), dtype=tl.float32)
        for k0 in tl.static_range(0, CS, BK):
            k = k0 + tl.arange(0, BK)
            pk = c * CS + k.to(tl.int64)  # 64-bit positions: L x heads x P may exceed 2^31
            xk = tl.load(Xp + pk[None, :] * s_xl + p[:, None] * s_xp,
                         mask=(pk[None, :] < L) & (p[:, None] < P), other=0.0)
            bk = tl.load(Bp + pk[:, None] * s_bl + n[None, :] * s_bn,
                         mask=(pk[:, None] < L) & (n[None, :] < N), other=0.0)
            w = tl.exp(a_end - tl.load(acs_ptr + base + k)) * tl.load(dtp_ptr + base + k)
            if HAS_SEQ:
                qk = tl.load(seq_ptr + b * s_qb + pk * s_ql, mask=pk < L, other=-1)
                w = tl.where(qk == q_end, w, 0.0)
            acc += mma((xk * w[None, :]).to(bk.dtype), bk)
        state = kd * state + acc
    tl.store(final_ptr + (b * H + h) * P * N + pn, state, mask=pn_mask)


def states_fwd(
    x: torch.Tensor, B: torch.Tensor, dtp: torch.Tensor, acs: torch.Tensor,
    initial_states: torch.Tensor | None, seq_idx: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """x (batch, L, heads, P), B (batch, L, groups, N), dtp/acs (batch, heads, nchunks, Q) ->
    (the state entering each chunk, (batch, nchunks, heads, P, N) in x's dtype; the final state fp32
    (batch, heads, P, N))."""
    b, L, H, P = x.shape
    G, N = B.shape[2], B.shape[3]
    nc, cs = acs.shape[2], acs.shape[3]
    hprev = torch.empty(b, nc, H, P, N, device=x.device, dtype=x.dtype)
    final = torch.empty(b, H, P, N, device=x.device, dtype=torch.float32)
    BP, BN = dot_block(P, 64), dot_block(N, 64)
    programs = lambda: b * H * triton.cdiv(P, BP) * triton.cdiv(N, BN)  # noqa: E731
    target = 2 * (torch.cuda.get_device_properties(x.device).multi_processor_count if x.is_cuda else 1)
    while programs() < target and max(BP, BN) > 32:  # smaller blocks: more programs for short batches
        BN, BP = (BN // 2, BP) if BN >= BP else (BN, BP // 2)
    init = initial_states.contiguous() if initial_states is not None else final
    q = seq_idx if seq_idx is not None else acs
    sq = (q.stride(0), q.stride(1)) if seq_idx is not None else (0, 0)
    grid = (triton.cdiv(P, BP) * triton.cdiv(N, BN), H, b)
    _states_fwd_kernel[grid](
        x, B, dtp, acs, q, init, hprev, final, L, H, G, P, N, nc, *x.stride(), *B.stride(), *sq,
        HAS_INIT=initial_states is not None, HAS_SEQ=seq_idx is not None, CS=cs, BP=BP, BN=BN,
        BK=min(cs, 64),
    )
    return hprev, final
