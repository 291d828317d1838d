"""SSD step 3: passing the state from chunk to chunk (section 6, the inter-chunk recurrence).

With S_c the chunk's own state (``ssd_chunk_state``), d_c = exp(acs_c,end) the decay over the
whole chunk, and k_c = 1 unless a sequence boundary (``seq_idx``) falls inside chunk c or at its
start (then the old state is dropped)::

    H_{-1} = initial state,   H_c = k_c d_c H_{c-1} + S_c,   final state = H_{nchunks-1}

This is a scalar-decay linear recurrence over nchunks steps, elementwise over (head_dim × N):
each program owns a block of state entries of one head and walks the chunks in order. It writes
``H_{c-1}`` (the state entering chunk c), which the output step multiplies by C.

The walk is serial, so at batch 1 and long L (4,096 chunks at 1M tokens) its time is chunks x the
latency of one global load, not bandwidth. Each program therefore loads GROUP chunks' blocks (and
their decays) at once, as one (GROUP, BLOCK) tile whose GROUP axis lies inside each thread, runs the
GROUP steps of the recurrence in registers and stores the GROUP results as one tile: one load
latency per GROUP chunks. Rows of the last group past the end are identity steps (masked loads
give S = 0 and acs = 0, so decay 1; the seq_idx positions are clamped, so no reset).

Backward, with G_c = ∂L/∂H_c (G_last = ∂L/∂final) and dH_prev,c from the output step::

    G_{c-1} = dH_prev,c + k_c d_c G_c,   ∂L/∂S_c = G_c,   ∂L/∂initial = G_{-1}
    ∂L/∂acs_c,end += k_c d_c ⟨G_c, H_{c-1}⟩

The walk holds G_c in fp32 and writes it in the inputs' dtype: its consumers (ssd_chunk_scan's dX,
ssd_bc_grad's dB) round it to that dtype for their tensor-core products anyway, and the fp32 dot
⟨G_c, H_{c-1}⟩ is taken here, from the registers.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _carry(seq_ptr, s_qb, s_ql, b, c, L, CS: tl.constexpr, HAS_SEQ: tl.constexpr):
    """1.0 where the state entering chunk c (a tensor of chunk indices) belongs to the sequence
    the chunk ends in, else 0.0."""
    if HAS_SEQ:
        # positions clamped to [0, L): rows of a group past either end read a valid position
        q_prev = tl.load(seq_ptr + b * s_qb + tl.minimum(tl.maximum(c * CS - 1, 0), L - 1) * s_ql)
        q_end = tl.load(seq_ptr + b * s_qb + tl.minimum(tl.maximum(c * CS + CS - 1, 0), L - 1) * s_ql)
        return (q_prev == q_end).to(tl.float32)
    else:
        return tl.full(c.shape, 1.0, tl.float32)


@triton.jit
def _row(tile, rows, k):
    """Row k of a (GROUP, BLOCK) tile whose GROUP axis is held inside each thread (no shuffles)."""
    return tl.sum(tl.where(rows[:, None] == k, tile, 0.0), axis=0)


@triton.jit
def _state_passing_fwd_kernel(
    S_ptr, init_ptr, acs_ptr, seq_ptr, hprev_ptr, final_ptr,
    L, H, PN, nchunks, s_qb, s_ql,
    HAS_INIT: tl.constexpr, HAS_SEQ: tl.constexpr, CS: tl.constexpr, BLOCK: tl.constexpr,
    GROUP: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1).to(tl.int64)
    e = tl.program_id(2) * BLOCK + tl.arange(0, BLOCK)
    rows = tl.arange(0, GROUP)
    m = e < PN
    if HAS_INIT:
        state = tl.load(init_ptr + (b * H + h) * PN + e, mask=m, other=0.0).to(tl.float32)
    else:
        state = tl.zeros((BLOCK,), dtype=tl.float32)
    for c0 in range(0, nchunks, GROUP):
        c = c0 + rows
        mc = c < nchunks
        off = ((b * nchunks + c[:, None]) * H + h) * PN + e[None, :]
        m2 = mc[:, None] & m[None, :]
        S = tl.load(S_ptr + off, mask=m2, other=0.0)
        kd = _carry(seq_ptr, s_qb, s_ql, b, c, L, CS, HAS_SEQ) * tl.exp(
            tl.load(acs_ptr + ((b * H + h) * nchunks + c) * CS + CS - 1, mask=mc, other=0.0))
        kd = tl.broadcast_to(kd[:, None], (GROUP, BLOCK))  # in the tile's layout: rows without shuffles
        hp = tl.zeros((GROUP, BLOCK), dtype=tl.float32)
        for k in tl.static_range(GROUP):
            hp = tl.where(rows[:, None] == k, state[None, :], hp)
            state = _row(kd, rows, k) * state + _row(S, rows, k)
        tl.store(hprev_ptr + off, hp.to(hprev_ptr.dtype.element_ty), mask=m2)
    tl.store(final_ptr + (b * H + h) * PN + e, state, mask=m)


@triton.jit
def _state_passing_bwd_kernel(
    dh_ptr, dfinal_ptr, acs_ptr, seq_ptr, hprev_ptr, G_ptr, gacs_ptr, dinit_ptr,
    L, H, PN, nchunks, s_qb, s_ql,
    HAS_DFINAL: tl.constexpr, HAS_DINIT: tl.constexpr, HAS_SEQ: tl.constexpr,
    CS: tl.constexpr, BLOCK: tl.constexpr, GROUP: tl.constexpr,
):
    # dh_ptr: dH_prev,c; G_ptr: G_c. Chunks are walked last to first, GROUP at a time: row k of a
    # group is chunk c_top - k.
    b = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1).to(tl.int64)
    e = tl.program_id(2) * BLOCK + tl.arange(0, BLOCK)
    rows = tl.arange(0, GROUP)
    m = e < PN
    if HAS_DFINAL:
        g = tl.load(dfinal_ptr + (b * H + h) * PN + e, mask=m, other=0.0).to(tl.float32)
    else:
        g = tl.zeros((BLOCK,), dtype=tl.float32)
    for i0 in range(0, nchunks, GROUP):
        c = nchunks - 1 - i0 - rows
        mc = c >= 0
        off = ((b * nchunks + c[:, None]) * H + h) * PN + e[None, :]
        m2 = mc[:, None] & m[None, :]
        dhp = tl.load(dh_ptr + off, mask=m2, other=0.0)
        a_end = ((b * H + h) * nchunks + c) * CS + CS - 1
        kdv = _carry(seq_ptr, s_qb, s_ql, b, c, L, CS, HAS_SEQ) * tl.exp(
            tl.load(acs_ptr + a_end, mask=mc, other=0.0))
        kd = tl.broadcast_to(kdv[:, None], (GROUP, BLOCK))
        out = tl.zeros((GROUP, BLOCK), dtype=tl.float32)
        for k in tl.static_range(GROUP):
            out = tl.where(rows[:, None] == k, g[None, :], out)
            g = _row(dhp, rows, k) + _row(kd, rows, k) * g
        tl.store(G_ptr + off, out.to(G_ptr.dtype.element_ty), mask=m2)
        hp = tl.load(hprev_ptr + off, mask=m2, other=0.0).to(tl.float32)
        tl.atomic_add(gacs_ptr + a_end, kdv * tl.sum(out * hp, axis=1), mask=mc)
    if HAS_DINIT:
        tl.store(dinit_ptr + (b * H + h) * PN + e, g, mask=m)


_BLOCK = 1024
_GROUP = 8  # chunks per load in the serial walk (one load latency per GROUP chunks)


def state_passing_fwd(
    S: torch.Tensor, acs: torch.Tensor, initial_states: torch.Tensor | None,
    seq_idx: torch.Tensor | None, out_dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor]:
    """S (batch, nchunks, heads, P, N) fp32 -> (states entering each chunk, same shape, out_dtype;
    final state fp32 (batch, heads, P, N))."""
    b, nc, H, P, N = S.shape
    cs = acs.shape[3]
    L = seq_idx.shape[1] if seq_idx is not None else nc * cs
    hprev = torch.empty(b, nc, H, P, N, device=S.device, dtype=out_dtype)
    final = torch.empty(b, H, P, N, device=S.device, dtype=torch.float32)
    init = initial_states.contiguous() if initial_states is not None else S
    q = seq_idx if seq_idx is not None else acs
    sq = (q.stride(0), q.stride(1)) if seq_idx is not None else (0, 0)
    grid = (b, H, triton.cdiv(P * N, _BLOCK))
    _state_passing_fwd_kernel[grid](
        S, init, acs, q, hprev, final, L, H, P * N, nc, *sq,
        HAS_INIT=initial_states is not None, HAS_SEQ=seq_idx is not None, CS=cs, BLOCK=_BLOCK,
        GROUP=_GROUP, num_warps=4,
    )
    return hprev, final


def state_passing_bwd(
    dhprev: torch.Tensor, dfinal: torch.Tensor | None, acs: torch.Tensor,
    seq_idx: torch.Tensor | None, need_dinit: bool, hprev: torch.Tensor, g_acs: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``dhprev`` (batch, nchunks, heads, P, N) fp32 -> (G = ∂L/∂S_c, same shape, in hprev's dtype;
    ∂L/∂initial fp32 or None); adds the chunk-end decay term k d ⟨G_c, H_{c-1}⟩ into ``g_acs``."""
    b, nc, H, P, N = dhprev.shape
    cs = acs.shape[3]
    L = seq_idx.shape[1] if seq_idx is not None else nc * cs
    G = torch.empty(dhprev.shape, device=dhprev.device, dtype=hprev.dtype)
    dinit = torch.empty(b, H, P, N, device=dhprev.device, dtype=torch.float32) if need_dinit else None
    df = dfinal.contiguous() if dfinal is not None else dhprev
    q = seq_idx if seq_idx is not None else acs
    sq = (q.stride(0), q.stride(1)) if seq_idx is not None else (0, 0)
    grid = (b, H, triton.cdiv(P * N, _BLOCK))
    _state_passing_bwd_kernel[grid](
        dhprev, df, acs, q, hprev, G, g_acs, dinit if need_dinit else dhprev, L, H, P * N, nc, *sq,
        HAS_DFINAL=dfinal is not None, HAS_DINIT=need_dinit, HAS_SEQ=seq_idx is not None,
        CS=cs, BLOCK=_BLOCK, GROUP=_GROUP, num_warps=4,
    )
    return G, dinit
