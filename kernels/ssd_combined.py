"""Mamba-2's SSD layer in Triton: the chunked algorithm of the SSD paper (Dao & Gu 2024, section 6),
forward and backward, with variable-length packing and state passing.

Model (eq. 1 with a scalar decay per head; h: (head_dim, N) per head)::

    Δ_t = clamp(softplus(dt_t + dt_bias), dt_limit)
    h_t = exp(Δ_t A) h_{t-1} + Δ_t x_t B_tᵀ,   y_t = h_t C_t + D x_t,   out_t = y_t silu(z_t)

Chunked evaluation (chunk length Q; section 6, Listing 1 and eq. 16-20), one kernel per step:

    0. ssd_cumsum        Δ and the within-chunk cumulative log-decay acs
    1. ssd_bmm           C Bᵀ per chunk and group (the "attention" matrix, before the mask L)
    2. ssd_chunk_state   each chunk's own final state S_c (assuming a zero entering state)
    3. ssd_state_passing H_c = d_c H_{c-1} + S_c across chunks (a short scalar recurrence)
    4. ssd_chunk_scan    Y = (L ∘ C Bᵀ)(Δ X) + exp(acs) C H_prev + D X, then the z gate

The backward runs the same steps in reverse (see each module); ssd_bc_grad gathers dB and dC.
All positions and strides are 64-bit inside the kernels, so L × d_inner may exceed 2^31.

``seq_idx`` (batch, L) restarts the state wherever it changes (packed sequences); it must be
constant over each sequence. ``cu_seqlens`` (with batch 1) gives the same packing as cumulative
lengths and, with ``varlen_states``, the state after every sequence's last token (not
differentiable, as in mamba_ssm).
"""

from __future__ import annotations

import torch
import triton

from seqssm.kernels.ssd_bc_grad import bc_bwd
from seqssm.kernels.ssd_bmm import chunk_cb, chunk_cb_bwd
from seqssm.kernels.ssd_chunk_scan import chunk_scan_bwd_dx, chunk_scan_fwd, gate_bwd
from seqssm.kernels.ssd_chunk_state import chunk_state, varlen_states
from seqssm.kernels.ssd_cumsum import dt_cumsum_bwd, dt_cumsum_fwd
from seqssm.kernels.ssd_state_passing import state_passing_bwd, state_passing_fwd


def ssd_fwd(
    x, dt, A, B, C, chunk_size, D=None, z=None, dt_bias=None, initial_states=None, seq_idx=None,
    dt_softplus=False, dt_limit=(0.0, float("inf")), store_y=False,
):
    """Forward steps 0-4. Returns (out, final_states fp32, saved) where saved holds what the
    backward needs."""
    dtp, acs = dt_cumsum_fwd(dt, A, chunk_size, dt_bias, dt_softplus, dt_limit)
    cb = chunk_cb(C, B, chunk_size)
    S = chunk_state(x, B, dtp, acs, seq_idx, to_end=True)
    hprev, final = state_passing_fwd(S, acs, initial_states, seq_idx, out_dtype=x.dtype)
    del S
    out, y = chunk_scan_fwd(x, C, cb, hprev, dtp, acs, seq_idx, D, z, store_y)
    return out, final, (dtp, acs, cb, hprev, y)


def ssd_bwd(dout, dfinal, x, dt, A, B, C, D, z, dt_bias, initial_states, seq_idx, dt_softplus,
            dt_limit, dtp, acs, cb, hprev, y):
    """Backward steps 4-0. Returns (dx, ddt, dA, dB, dC, dD, dz, ddt_bias, dinitial)."""
    dz = None
    if z is not None:
        dy, dz = gate_bwd(dout, y, z)
    else:
        dy = dout
    g_acs = torch.zeros_like(acs)
    dhprev = chunk_state(dy, C, dtp, acs, seq_idx, to_end=False)
    G, dinit = state_passing_bwd(dhprev, dfinal, acs, seq_idx, initial_states is not None, hprev, g_acs)
    del dhprev
    dcb = chunk_cb_bwd(x, dy, cb, dtp, acs, seq_idx, g_acs)
    dx, gdt, dD = chunk_scan_bwd_dx(x, dy, B, cb, G, dtp, acs, seq_idx, D, g_acs)
    dB, dC = bc_bwd(x, dy, B, C, dcb, G, hprev, dtp, acs, seq_idx, g_acs)
    ddt, dA, dbias = dt_cumsum_bwd(dt, A, dt_bias, dt_softplus, dt_limit, dtp, g_acs, gdt)
    return dx, ddt, dA, dB, dC, dD, dz, dbias, dinit


class _SSDFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, dt, A, B, C, chunk_size, D, z, dt_bias, initial_states, seq_idx,
                dt_softplus, dt_limit, cu_seqlens, want_varlen):
        out, final, (dtp, acs, cb, hprev, y) = ssd_fwd(
            x, dt, A, B, C, chunk_size, D, z, dt_bias, initial_states, seq_idx, dt_softplus, dt_limit,
            store_y=any(ctx.needs_input_grad),
        )
        varlen = varlen_states(x, B, dtp, acs, hprev, cu_seqlens) if want_varlen else None
        ctx.save_for_backward(x, dt, A, B, C, D, z, dt_bias, initial_states, seq_idx, dtp, acs, cb, hprev, y)
        ctx.dt_softplus, ctx.dt_limit = dt_softplus, dt_limit
        if varlen is not None:
            ctx.mark_non_differentiable(varlen)
        return out, final, varlen

    @staticmethod
    def backward(ctx, dout, dfinal, _dvarlen):
        (x, dt, A, B, C, D, z, dt_bias, init, seq_idx, dtp, acs, cb, hprev, y) = ctx.saved_tensors
        dx, ddt, dA, dB, dC, dD, dz, dbias, dinit = ssd_bwd(
            dout, dfinal, x, dt, A, B, C, D, z, dt_bias, init, seq_idx, ctx.dt_softplus, ctx.dt_limit,
            dtp, acs, cb, hprev, y,
        )

        def cast(g, ref):
            return None if g is None or ref is None else g.to(ref.dtype)

        return (dx, cast(ddt, dt), cast(dA, A), dB, dC, None, cast(dD, D), cast(dz, z), cast(dbias, dt_bias),
                cast(dinit, init), None, None, None, None, None)


def _seq_idx_from_cu(cu_seqlens: torch.Tensor, L: int) -> torch.Tensor:
    lens = cu_seqlens[1:] - cu_seqlens[:-1]
    ids = torch.arange(lens.numel(), device=cu_seqlens.device, dtype=torch.int32)
    return torch.repeat_interleave(ids, lens.long(), output_size=L).unsqueeze(0)


def ssd_triton(
    x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
    chunk_size: int, D: torch.Tensor | None = None, z: torch.Tensor | None = None,
    dt_bias: torch.Tensor | None = None, initial_states: torch.Tensor | None = None,
    seq_idx: torch.Tensor | None = None, dt_softplus: bool = False,
    dt_limit: tuple[float, float] = (0.0, float("inf")), *,
    cu_seqlens: torch.Tensor | None = None, varlen_states: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """SSD with mamba_ssm's ``mamba_chunk_scan_combined`` arguments. x (batch, L, heads, P); dt
    (batch, L, heads); A (heads,); B, C (batch, L, groups, N); D (heads,) or (heads, P); z like x;
    initial_states (batch, heads, P, N). chunk_size: rounded up to a power of two >= 16 (64-256 are tuned).

    Returns (out like x, final_states fp32 (batch, heads, P, N), varlen states fp32 (num_seqs,
    heads, P, N) if ``varlen_states`` else None). Differentiable in every tensor argument except
    seq_idx / cu_seqlens and the varlen states.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size}: expected a positive integer")
    # The chunk length changes only the order of the arithmetic, not the result: the kernels take a
    # power of two >= 16 (tensor-core tiles), so a smaller or odd chunk_size is rounded up.
    chunk_size = max(16, triton.next_power_of_2(chunk_size))
    b, L, H, P = x.shape
    G = B.shape[2]
    if H % G or C.shape != B.shape or dt.shape != (b, L, H) or A.shape != (H,):
        raise ValueError(f"shapes: x {tuple(x.shape)}, dt {tuple(dt.shape)}, A {tuple(A.shape)}, "
                         f"B {tuple(B.shape)}, C {tuple(C.shape)}")
    if cu_seqlens is not None and seq_idx is None:
        if b != 1:
            raise ValueError("cu_seqlens needs batch 1")
        seq_idx = _seq_idx_from_cu(cu_seqlens, L)
    if varlen_states and cu_seqlens is None:
        raise ValueError("varlen_states needs cu_seqlens")
    if seq_idx is not None:
        seq_idx = seq_idx.to(torch.int32)
    out, final, varlen = _SSDFunction.apply(
        x, dt, A, B, C, chunk_size, D, z, dt_bias, initial_states, seq_idx, dt_softplus,
        tuple(dt_limit), cu_seqlens, varlen_states,
    )
    return out, final, varlen
