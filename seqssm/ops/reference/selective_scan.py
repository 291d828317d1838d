"""Chunked pure-PyTorch selective scan (Mamba-1 / S6): the CPU path and the oracle of the kernels.

The recurrence (Gu & Dao 2023, eq. 2a-2b; Algorithm 2 with Ā = exp(ΔA), B̄ = ΔB)::

    h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t B_t u_t          h: (batch, dim, N)
    y_t = C_t · h_t + D u_t                            complex A: y_t = 2 Re(C_t · h_t) + D u_t
    out_t = y_t · silu(z_t)

is evaluated a chunk of T steps at a time, with no Python loop over time steps. Inside a chunk let
S_t = Δ_1 + ... + Δ_t (S_0 = 0, h_0 the state entering the chunk). Unrolling the recurrence,
per channel d and state index n (a = A[d, n])::

    h_t = exp(a S_t) h_0 + Σ_{s≤t} exp(a (S_t - S_s)) Δ_s B_s u_s
        = E_t ⊙ (G h_0 + Σ_{s≤t} F_s Δ_s B_s u_s),
    E_t = exp(a (S_t - m)),  F_s = exp(-a (S_s - m)),  G = exp(a m)

a factorised form: one cumulative sum over the chunk, O(T·N) work per channel, and every op runs on
a cache-sized (batch, dim, T, N) block. The offset m (the midpoint of the range of S over the chunk,
per channel) centres the exponents, so every factor lies in [exp(-R), exp(R)] with
R = max_n |Re a| (max S - min S) / 2. If R exceeds what the compute dtype holds with margin
(``MAX_EXPONENT``), the chunk is halved, recursively; a single step is done directly as
h = exp(Δ a) h_0 + Δ B u, which cannot overflow. No clamping is ever applied, so the result is exact
up to rounding, and rounding is relative to the largest term, as in a plain scan.

The state is fp32 (complex64 for complex A), or float64 (complex128) when u is float64; the output is
in u's dtype. Everything is plain autograd, so all inputs are differentiable.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

CHUNK = 64
# Largest |exponent| allowed for the factors E, F and G: exp(MAX) times the inputs must stay finite.
MAX_EXPONENT = {torch.float32: 20.0, torch.float64: 200.0}


def _unpack_complex(M: torch.Tensor, real: torch.dtype) -> torch.Tensor:
    """mamba_ssm's packing of a complex, time-varying B/C: (..., 2L) real, interleaved (re, im)."""
    return torch.view_as_complex(M.to(real).unflatten(-1, (-1, 2)).contiguous())


class _BC:
    """B or C in one of mamba_ssm's layouts, sliced per chunk into a tensor that broadcasts
    against (batch, dim, T, N)."""

    def __init__(self, M: torch.Tensor, dim: int, is_complex: bool, real: torch.dtype, cplx: torch.dtype):
        if M.dim() == 2:  # time-invariant (dim, N)
            self.M, self.repeat = M.to(cplx if M.is_complex() else real)[None, :, None, :], 0
            return
        M = _unpack_complex(M, real) if is_complex else M.to(real)
        if M.dim() == 3:  # (batch, N, L): shared by all channels
            M = M.unsqueeze(1)
        groups = M.shape[1]  # channel d uses group d // (dim // groups)
        self.M = M.transpose(-1, -2).contiguous()  # (batch, groups, L, N)
        self.repeat = dim // groups if groups > 1 else 1

    def __call__(self, t0: int, t1: int) -> torch.Tensor:
        if self.repeat == 0:
            return self.M
        block = self.M[:, :, t0:t1]
        return block.repeat_interleave(self.repeat, dim=1) if self.repeat > 1 else block


def _range(S: torch.Tensor, rate: torch.Tensor):
    """Midpoint m of [min(0, S), max(0, S)] along the last axis, per channel, and the exponent
    half-range (hi - lo) · rate / 2 (``rate`` = max_n |Re A[d, n]|, shaped to broadcast)."""
    S = S.detach()  # m is an offset that cancels exactly in E·F and E·G: no gradient through it
    hi, lo = S.amax(-1).clamp(min=0), S.amin(-1).clamp(max=0)
    return (hi + lo) / 2, (hi - lo) * rate / 2


class _Scan:
    def __init__(self, dt, du, A, Bs, Cs, limit, h_grad=False):
        self.dt, self.du, self.A, self.B, self.C, self.limit = dt, du, A, Bs, Cs, limit
        # In-place products only where autograd does not need the overwritten values.
        self.inplace = not torch.is_grad_enabled() or (not h_grad and not any(
            t.requires_grad for t in (dt, du, A, Bs.M, Cs.M)
        ))
        self.rate = (A.real if A.is_complex() else A).abs().amax(-1)  # (dim,)

    def block(self, h, t0, t1, S=None, m=None, R=None):
        """Output (batch, dim, t1-t0) and state after step t1-1, from state h before step t0."""
        if S is None:  # a piece of a split chunk: its own cumulative sum
            S = self.dt[..., t0:t1].cumsum(-1)
            m, half = _range(S, self.rate)
            R = half.amax().item()
        if R > self.limit:
            if t1 - t0 == 1:
                return self.step(h, t0)
            mid = (t0 + t1) // 2
            y0, h = self.block(h, t0, mid)
            y1, h = self.block(h, mid, t1)
            return torch.cat([y0, y1], -1), h
        A, Bt, Ct = self.A, self.B(t0, t1), self.C(t0, t1)
        E = torch.exp((S - m[..., None])[..., None] * A[:, None])  # (batch, dim, T, N)
        W = torch.div(Bt, E)  # F_s B_s
        W = W.mul_(self.du[..., t0:t1, None]) if self.inplace else W * self.du[..., t0:t1, None]
        W[:, :, 0] += torch.exp(m[..., None] * A) * h  # G h_0 joins the first term of the sum
        W.cumsum_(dim=2)  # (not saved by autograd, so in place is safe)
        H = W.mul_(E) if self.inplace else W * E  # h_t for every t of the block
        y = (H * Ct).sum(-1)
        return (2 * y.real if y.is_complex() else y), H[:, :, -1]

    def step(self, h, t):
        """One plain recurrence step (used when a single Δ·A is too large to factorise)."""
        h = torch.exp(self.dt[..., t, None] * self.A) * h + self.du[..., t, None] * self.B(t, t + 1)[:, :, 0]
        y = (h * self.C(t, t + 1)[:, :, 0]).sum(-1, keepdim=True)
        return (2 * y.real if y.is_complex() else y), h


def selective_scan_ref(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    initial_state: torch.Tensor | None = None,
    chunk_size: int = CHUNK,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Selective scan with mamba_ssm's ``selective_scan_fn`` shapes; returns ``(out, last_state)``.

    u, delta, z: (batch, dim, L). A: (dim, N) real or complex. B, C: (batch, N, L), (batch, groups, N,
    L) or time-invariant (dim, N); complex time-varying B/C are real tensors with interleaved (re, im)
    pairs on the last axis (2L). D, delta_bias: (dim,). initial_state: (batch, dim, N).
    """
    batch, dim, L = u.shape
    real = torch.float64 if u.dtype == torch.float64 else torch.float32
    cplx = torch.complex128 if real == torch.float64 else torch.complex64
    is_complex = A.is_complex()
    dt = delta.to(real)
    if delta_bias is not None:
        dt = dt + delta_bias.to(real)[:, None]
    if delta_softplus:
        dt = F.softplus(dt)
    uf = u.to(real)
    A = A.to(cplx if is_complex else real)
    if initial_state is None:
        h = torch.zeros(batch, dim, A.shape[1], dtype=A.dtype, device=u.device)
    else:
        h = initial_state.to(A.dtype)
    scan = _Scan(dt, dt * uf, A, _BC(B, dim, is_complex, real, cplx), _BC(C, dim, is_complex, real, cplx),
                 MAX_EXPONENT[real], h.requires_grad)

    # Cumulative sums, exponent offsets and ranges of all chunks at once (cheap: (batch, dim, L)).
    T = min(chunk_size, L)
    n_chunks = math.ceil(L / T)
    S = F.pad(dt, (0, n_chunks * T - L)).view(batch, dim, n_chunks, T).cumsum(-1)
    m, half = _range(S, scan.rate[:, None])
    R = half.amax(dim=(0, 1)).tolist()

    ys = []
    for c in range(n_chunks):
        t0, t1 = c * T, min(c * T + T, L)
        y, h = scan.block(h, t0, t1, S[:, :, c, : t1 - t0], m[:, :, c], R[c])
        ys.append(y)
    y = torch.cat(ys, dim=-1)
    if D is not None:
        y = y + uf * D.to(real)[:, None]
    if z is not None:
        y = y * F.silu(z.to(real))
    return y.to(u.dtype), h
