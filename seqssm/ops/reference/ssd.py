"""Chunked pure-PyTorch SSD (Mamba-2): the CPU path and the oracle of the kernels.

Recurrence (Dao & Gu 2024, eq. 1 with a scalar a per head)::

    h_t = exp(Δ_t a) h_{t-1} + Δ_t x_t B_tᵀ       h: (head_dim, N) per head
    y_t = h_t C_t + D x_t,   out_t = y_t · silu(z_t)

Chunked algorithm (section 6 of the paper, its Listing 1), with chunks of T steps and the log decays
α_t = Δ_t a:

1. intra-chunk (the quadratic, attention-like form): y_t = Σ_{s≤t} (C_t·B_s) exp(segsum(α)[t, s]) Δ_s x_s,
   segsum(α)[t, s] = α_{s+1} + ... + α_t, computed by a masked cumulative sum (no differences of
   cumulative sums, so no cancellation);
2. chunk states: the state at the end of each chunk from a zero start,
   Σ_s exp(segsum(α)[T-1, s]) Δ_s x_s B_sᵀ;
3. inter-chunk recurrence: h_c = exp(Σ_chunk α) h_{c-1} + state_c (a short loop over chunks);
4. state -> output: y_t += exp(α_1 + ... + α_t) C_t · h_{c-1}.

Packed sequences: wherever ``seq_idx`` changes the state restarts, so a packed batch equals each
sequence run alone. Every term between positions s and t is multiplied by [no change between s and t].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def segsum(a: torch.Tensor) -> torch.Tensor:
    """Stable segment sum: (..., T) -> (..., T, T) with [t, s] = a_{s+1} + ... + a_t for t ≥ s and -inf
    above the diagonal, as a cumulative sum over a masked copy (exact sums, no cancellation)."""
    T = a.shape[-1]
    strict = torch.ones(T, T, dtype=torch.bool, device=a.device).tril(-1)  # [k, s]: k > s
    terms = a[..., :, None].expand(*a.shape, T).masked_fill(~strict, 0)  # [k, s] = a_k if k > s
    out = terms.cumsum(-2)  # [t, s] = Σ_{s<k≤t} a_k
    lower = torch.ones(T, T, dtype=torch.bool, device=a.device).tril()
    return out.masked_fill(~lower, -math.inf)


def segments(seq_idx: torch.Tensor) -> torch.Tensor:
    """Segment ids (batch, L) that start at 0 and grow by one at every change of seq_idx, so 'same
    segment' means 'no change in between' even for a non-monotone seq_idx."""
    change = torch.zeros_like(seq_idx, dtype=torch.long)
    change[:, 1:] = (seq_idx[:, 1:] != seq_idx[:, :-1]).long()
    return change.cumsum(-1)


def seq_idx_from_cu_seqlens(cu_seqlens: torch.Tensor, L: int) -> torch.Tensor:
    """(num_seqs + 1,) cumulative lengths -> seq_idx (1, L) int32."""
    pos = torch.arange(L, device=cu_seqlens.device)
    return (torch.searchsorted(cu_seqlens[1:-1].contiguous(), pos, right=True)).to(torch.int32)[None]


def step_sizes(
    dt: torch.Tensor,
    dt_bias: torch.Tensor | None,
    dt_softplus: bool,
    dt_limit: tuple[float, float] = (0.0, float("inf")),
) -> torch.Tensor:
    """Δ = clamp(softplus(dt + dt_bias), dt_limit), in fp32 (float64 for float64 dt)."""
    dt = dt.to(torch.float64 if dt.dtype == torch.float64 else torch.float32)
    if dt_bias is not None:
        dt = dt + dt_bias.to(dt.dtype)
    if dt_softplus:
        dt = F.softplus(dt)
    if tuple(dt_limit) != (0.0, float("inf")):
        dt = dt.clamp(min=dt_limit[0], max=dt_limit[1])
    return dt


def ssd_ref(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    chunk_size: int,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    dt_bias: torch.Tensor | None = None,
    initial_states: torch.Tensor | None = None,
    seq_idx: torch.Tensor | None = None,
    dt_softplus: bool = False,
    dt_limit: tuple[float, float] = (0.0, float("inf")),
    *,
    cu_seqlens: torch.Tensor | None = None,
    varlen_states: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """SSD with ``mamba_chunk_scan_combined``'s shapes. x, z: (batch, L, heads, head_dim); dt: (batch, L,
    heads); A: (heads,); B, C: (batch, L, groups, N); D: (heads,) or (heads, head_dim); dt_bias:
    (heads,); initial_states: (batch, heads, head_dim, N); seq_idx: (batch, L); cu_seqlens:
    (num_seqs + 1,) for a batch of one (when seq_idx is None it is derived from cu_seqlens).

    Returns ``(out, final_states, varlen_states)``: out in x's dtype; final_states (batch, heads,
    head_dim, N) in fp32 (float64 for float64 x); varlen_states (num_seqs, heads, head_dim, N), the
    state at the end of each packed sequence, when ``varlen_states`` (else None).
    """
    batch, L, heads, p = x.shape
    groups, N = B.shape[2], B.shape[3]
    real = torch.float64 if x.dtype == torch.float64 else torch.float32
    if seq_idx is None and cu_seqlens is not None:
        seq_idx = seq_idx_from_cu_seqlens(cu_seqlens, L)
    dt = step_sizes(dt, dt_bias, dt_softplus, dt_limit).to(real)

    T = chunk_size
    nc = math.ceil(L / T)
    pad = nc * T - L  # padded steps have Δ = 0: decay 1, no input, so they change nothing
    head_group = torch.arange(heads, device=x.device) // (heads // groups)
    xf = F.pad(x.to(real), (0, 0, 0, 0, 0, pad)).view(batch, nc, T, heads, p)
    dtc = F.pad(dt, (0, 0, 0, pad)).view(batch, nc, T, heads)
    Bc = F.pad(B.to(real), (0, 0, 0, 0, 0, pad)).view(batch, nc, T, groups, N)
    Cc = F.pad(C.to(real), (0, 0, 0, 0, 0, pad)).view(batch, nc, T, groups, N)
    xdt = xf * dtc[..., None]  # Δ_s x_s
    alpha = (dtc * A.to(real)).permute(0, 1, 3, 2)  # (batch, nc, heads, T) log decays

    # Segment ids; the initial state belongs to segment 0, the segment of position 0.
    if seq_idx is not None:
        seg = F.pad(segments(seq_idx), (0, pad), mode="replicate").view(batch, nc, T)
    else:
        seg = torch.zeros(batch, nc, T, dtype=torch.long, device=x.device)
    seg_prev = torch.cat([seg.new_zeros(batch, 1), seg[:, :-1, -1]], dim=1)  # segment of the entering state

    # 1. intra-chunk: (C_t·B_s) exp(segsum) masked to the same segment, times Δ_s x_s.
    decay = torch.exp(segsum(alpha))  # (batch, nc, heads, T, T)
    if seq_idx is not None:
        decay = decay * (seg[..., :, None] == seg[..., None, :])[:, :, None]
    CB = torch.einsum("bctgn,bcsgn->bcgts", Cc, Bc)[:, :, head_group]  # (batch, nc, heads, T, T)
    y = torch.einsum("bchts,bcshp->bcthp", CB * decay, xdt)

    # 2. state of each chunk from a zero start: the last row of the decay matrix.
    Bh = Bc[:, :, :, head_group]  # (batch, nc, T, heads, N)
    states = torch.einsum("bchs,bcshn,bcshp->bchpn", decay[..., -1, :], Bh, xdt)

    # 3. inter-chunk recurrence over the states entering each chunk.
    chunk_decay = torch.exp(alpha.sum(-1))  # (batch, nc, heads)
    keep = (seg[:, :, -1] == seg_prev).to(real)  # does the entering state survive the chunk?
    h = (
        torch.zeros(batch, heads, p, N, dtype=real, device=x.device)
        if initial_states is None
        else initial_states.to(real)
    )
    entering = []
    for c in range(nc):
        entering.append(h)
        h = h * (chunk_decay[:, c] * keep[:, c, None])[..., None, None] + states[:, c]
    H = torch.stack(entering, dim=1)  # (batch, nc, heads, p, N)

    # 4. the entering state's contribution to each output, decayed by exp(α_1 + ... + α_t).
    into = torch.exp(alpha.cumsum(-1)) * (seg == seg_prev[..., None])[:, :, None]  # (batch, nc, heads, T)
    Ch = Cc[:, :, :, head_group]
    y = y + torch.einsum("bcthn,bchpn,bcht->bcthp", Ch, H, into)

    varlen = None
    if varlen_states:
        if cu_seqlens is None or batch != 1:
            raise ValueError("varlen_states needs cu_seqlens and a batch of one")
        ends = (cu_seqlens[1:] - 1).long()
        ci, ti = ends // T, ends % T
        local = torch.einsum(
            "khs,kshn,kshp->khpn", decay[0, ci, :, ti], Bh[0, ci], xdt[0, ci]
        )  # within the chunk of each end
        varlen = local + into[0, ci, :, ti][..., None, None] * H[0, ci]

    y = y.reshape(batch, nc * T, heads, p)[:, :L]
    xr = x.to(real)
    if D is not None:
        Dr = D.to(real)
        y = y + xr * (Dr[:, None] if Dr.dim() == 1 else Dr)
    if z is not None:
        y = y * F.silu(z.to(real))
    return y.to(x.dtype), h, varlen
