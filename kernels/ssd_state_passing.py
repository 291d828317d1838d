"""SSD step 3: passing the state from chunk to chunk (section 6, the inter-chunk recurrence).

With S_c the chunk's own state (``ssd_chunk_state``), d_c = exp(acs_c,end) the decay over the
whole chunk, and k_c = 1 unless a sequence boundary (``seq_idx``) falls inside chunk c or at its
start (then the old state is dropped)::

    H_{-1} = initial state,   H_c = k_c d_c H_{c-1} + S_c,   final state = H_{nchunks-1}

This is a scalar-decay linear recurrence over nchunks steps, elementwise over (head_dim × N):
each program owns a block of state entries of one head and walks the chunks in order. It writes
``H_{c-1}`` (the state entering chunk c), which the output step multiplies by C.

Backward, with G_c = ∂L/∂H_c (G_last = ∂L/∂final) and dH_prev,c from the output step::

    G_{c-1} = dH_prev,c + k_c d_c G_c,   ∂L/∂S_c = G_c,   ∂L/∂initial = G_{-1}
    ∂L/∂acs_c,end += k_c d_c ⟨G_c, H_{c-1}⟩   (added by ssd_bc_grad, which reads G and H anyway)
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _carry(seq_ptr, s_qb, s_ql, b, c, L, CS: tl.constexpr, HAS_SEQ: tl.constexpr):
    """1.0 if the state entering chunk c belongs to the sequence the chunk ends in."""
    if HAS_SEQ:
        q_prev = tl.load(seq_ptr + b * s_qb + tl.maximum(c * CS - 1, 0) * s_ql)
        q_end = tl.load(seq_ptr + b * s_qb + tl.minimum(c * CS + CS - 1, L - 1) * s_ql)
        return (q_prev == q_end).to(tl.float32)
    else:
        return 1.0


@triton.jit
def _state_passing_fwd_kernel(
    S_ptr, init_ptr, acs_ptr, seq_ptr, hprev_ptr, final_ptr,
    L, H, PN, nchunks, s_qb, s_ql,
    HAS_INIT: tl.constexpr, HAS_SEQ: tl.constexpr, CS: tl.constexpr, BLOCK: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1).to(tl.int64)
    e = tl.program_id(2) * BLOCK + tl.arange(0, BLOCK)
    m = e < PN
    if HAS_INIT:
        state = tl.load(init_ptr + (b * H + h) * PN + e, mask=m, other=0.0).to(tl.float32)
    else:
        state = tl.zeros((BLOCK,), dtype=tl.float32)
    for c in range(0, nchunks):
        off = ((b * nchunks + c) * H + h) * PN + e
        tl.store(hprev_ptr + off, state.to(hprev_ptr.dtype.element_ty), mask=m)
        decay = tl.exp(tl.load(acs_ptr + ((b * H + h) * nchunks + c) * CS + CS - 1))
        k = _carry(seq_ptr, s_qb, s_ql, b, c, L, CS, HAS_SEQ)
        state = k * decay * state + tl.load(S_ptr + off, mask=m, other=0.0)
    tl.store(final_ptr + (b * H + h) * PN + e, state, mask=m)


@triton.jit
def _state_passing_bwd_kernel(
    G_ptr, dfinal_ptr, acs_ptr, seq_ptr, dinit_ptr,
    L, H, PN, nchunks, s_qb, s_ql,
    HAS_DFINAL: tl.constexpr, HAS_DINIT: tl.constexpr, HAS_SEQ: tl.constexpr,
    CS: tl.constexpr, BLOCK: tl.constexpr,
):
    # G_ptr holds dH_prev,c on entry and G_c on exit (in place).
    b = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1).to(tl.int64)
    e = tl.program_id(2) * BLOCK + tl.arange(0, BLOCK)
    m = e < PN
    if HAS_DFINAL:
        g = tl.load(dfinal_ptr + (b * H + h) * PN + e, mask=m, other=0.0).to(tl.float32)
    else:
        g = tl.zeros((BLOCK,), dtype=tl.float32)
    for i in range(0, nchunks):
        c = nchunks - 1 - i
        off = ((b * nchunks + c) * H + h) * PN + e
        dhp = tl.load(G_ptr + off, mask=m, other=0.0)
        tl.store(G_ptr + off, g, mask=m)
        a_off = ((b * H + h) * nchunks + c) * CS + CS - 1
        kd = _carry(seq_ptr, s_qb, s_ql, b, c, L, CS, HAS_SEQ) * tl.exp(tl.load(acs_ptr + a_off))
        g = dhp + kd * g
    if HAS_DINIT:
        tl.store(dinit_ptr + (b * H + h) * PN + e, g, mask=m)


_BLOCK = 1024


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
        num_warps=4,
    )
    return hprev, final


def state_passing_bwd(
    dhprev: torch.Tensor, dfinal: torch.Tensor | None, acs: torch.Tensor,
    seq_idx: torch.Tensor | None, need_dinit: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Turns ``dhprev`` (batch, nchunks, heads, P, N) fp32 into G (∂L/∂S_c) in place; returns
    (G, ∂L/∂initial fp32 or None)."""
    b, nc, H, P, N = dhprev.shape
    cs = acs.shape[3]
    L = seq_idx.shape[1] if seq_idx is not None else nc * cs
    dinit = torch.empty(b, H, P, N, device=dhprev.device, dtype=torch.float32) if need_dinit else None
    df = dfinal.contiguous() if dfinal is not None else dhprev
    q = seq_idx if seq_idx is not None else acs
    sq = (q.stride(0), q.stride(1)) if seq_idx is not None else (0, 0)
    grid = (b, H, triton.cdiv(P * N, _BLOCK))
    _state_passing_bwd_kernel[grid](
        dhprev, df, acs, q, dinit if need_dinit else dhprev, L, H, P * N, nc, *sq,
        HAS_DFINAL=dfinal is not None, HAS_DINIT=need_dinit, HAS_SEQ=seq_idx is not None,
        CS=cs, BLOCK=_BLOCK, num_warps=4,
    )
    return dhprev, dinit
