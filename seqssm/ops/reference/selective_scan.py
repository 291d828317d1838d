"""Chunked pure-PyTorch selective scan (Mamba-1 / S6): the CPU path and the oracle of the kernels.

The recurrence (Gu & Dao 2023, eq. 2a-2b; Algorithm 2 with Ā = exp(ΔA), B̄ = ΔB)::

    h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t B_t u_t          h: (batch, dim, N)                    (2a)
    y_t = C_t · h_t + D u_t                            complex A: y_t = 2 Re(C_t · h_t) + D u_t  (2b)
    out_t = y_t · silu(z_t)

is evaluated a chunk of T steps at a time, with no Python loop over time steps. Inside a chunk, with
e_t = exp(Δ_t a) per channel d and state index n (a = A[d, n]) and h_0 the state entering the chunk,
unrolling (2a) gives::

    h_t = P_t ⊙ h_0 + Q_t,   P_t = e_t P_{t-1} = exp(a (Δ_1 + ... + Δ_t)),   Q_t = e_t Q_{t-1} + Δ_t u_t B_t

(P_0 = 1, Q_0 = 0): Q is the chunk's own state (entering state zero) and P its decay. Both recurrences
advance all chunks of a block together, T - 1 steps of one multiply-add over (chunks, batch, N, dim)
slices; the states entering the chunks follow from a short recurrence over chunks,
h_0' = P_T ⊙ h_0 + Q_T, and one more multiply-add over the block adds P_t ⊙ h_0. The arithmetic is the
plain recurrence's (products of decays, no exponent offsets or divisions), so nothing can overflow that
the recurrence itself would not, and the rounding is the recurrence's.

Laid out for a CPU: the K chunks of one block (``BLOCK_ELEMENTS`` elements of (K, T, batch, N, dim),
a few MB) are computed together, time-major, so that each step of the two recurrences is one op over
contiguous (batch, N, dim) slices of all K chunks; exp is ``exp2`` of Δ·A·log2(e) (several times faster
than ``exp`` in torch's CPU kernels), one per state element; with a time-varying C, the contraction
(2b) is a batched (1, N) @ (N, dim) matrix product, as C_t is shared by the channels of a group.
Without autograd every intermediate lives in buffers reused from block to block (fresh pages cost
more than the arithmetic) and the recurrences update them in place.

The state is fp32 (complex64 for complex A), or float64 (complex128) when u is float64; the output is
in u's dtype. All inputs are differentiable: with time-varying B and C through the hand-written
adjoint of ``selective_scan_adjoint.py`` (the backward is one more chunked scan, backwards in time),
with a time-invariant B or C through autograd over the chunked arithmetic.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

CHUNK = 16
# Elements of one block of (K chunks, T, batch, N, dim): 4 MB per fp32 intermediate.
BLOCK_ELEMENTS = 1 << 20
LOG2E = 1.0 / math.log(2.0)


def _exp2(x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """2^x; for complex x as 2^Re x · e^{i ln2 · Im x} (torch's complex exp2 on the CPU is ~2.5x slower
    than a real exp2, a cosine and a sine)."""
    if not x.is_complex():
        return torch.exp2(x, out=out)
    return torch.polar(torch.exp2(x.real), x.imag * math.log(2.0), out=out)


def _unpack_complex(M: torch.Tensor, real: torch.dtype) -> torch.Tensor:
    """mamba_ssm's packing of a complex, time-varying B/C: (..., 2L) real, interleaved (re, im)."""
    return torch.view_as_complex(M.to(real).unflatten(-1, (-1, 2)).contiguous())


def _groups(M: torch.Tensor) -> int:
    """Channel groups of B/C: G for (batch, G, N, L), else 1."""
    return M.shape[1] if M.dim() == 4 else 1


class _BC:
    """B or C in one of mamba_ssm's layouts, time-major (L, batch, G, N), or (G, N, dim // G) when
    time-invariant; channel d belongs to group d // (dim // G)."""

    def __init__(self, M: torch.Tensor, dim: int, G: int, is_complex: bool, real: torch.dtype, state: torch.dtype):
        self.varying = M.dim() > 2
        if not self.varying:
            self.M = M.to(state).view(G, dim // G, -1).transpose(1, 2).contiguous()
            return
        M = _unpack_complex(M, real) if is_complex else M
        M = M.unsqueeze(1) if M.dim() == 3 else M  # (batch, groups, N, L)
        self.M = M.to(state).repeat_interleave(G // M.shape[1], dim=1).permute(3, 0, 1, 2).contiguous()

    @classmethod
    def of_time_major(cls, M: torch.Tensor) -> _BC:
        """A time-varying B or C already time-major, (L, batch, G, N) in the state dtype."""
        bc = cls.__new__(cls)
        bc.varying, bc.M = True, M
        return bc

    def steps(self, t0: int, n: int) -> torch.Tensor:
        """Steps t0..t0+n-1, (n, batch, G, N), zero past the end of the sequence."""
        M = self.M[t0 : t0 + n]
        return F.pad(M, (0, 0, 0, 0, 0, 0, 0, n - M.shape[0])) if M.shape[0] < n else M

    def against(self, t0: int, K: int, T: int) -> torch.Tensor:
        """Broadcastable against (K, T, batch, G, N, dim // G)."""
        if not self.varying:
            return self.M
        M = self.steps(t0, K * T)
        return M.view(K, T, *M.shape[1:], 1)


def _time_major(
    x: torch.Tensor, n: int, out: torch.Tensor | None, rows: torch.Tensor | None, other: torch.Tensor | None = None
) -> torch.Tensor:
    """x (or x ⊙ other), (batch, dim, m) -> (n, batch, dim), zero after row m. Into the buffer ``out``
    when given, through the contiguous buffer ``rows``: torch's 2-D transpose is fast only from a
    contiguous source (a direct strided copy, rows L elements apart, thrashes the cache)."""
    batch, dim, m = x.shape
    if out is None:  # a 3-D permute copies ~5x slower than this 2-D transpose
        x = F.pad(x if other is None else x * other, (0, n - m))
        return x.reshape(batch * dim, n).t().contiguous().view(n, batch, dim)
    rows = rows.view(batch, dim, m)
    if other is None:
        rows.copy_(x)
    else:
        torch.mul(x, other, out=rows)
    out[m:].zero_()
    out[:m].view(m, batch * dim).copy_(rows.view(batch * dim, m).t())
    return out


class _Scan:
    """One selective scan over (batch, dim, L) inputs, block by block: h_t = exp(Δ_t A) h_{t-1} + B_t x_t
    with x = Δ ⊙ u (``times_dt``, the forward) or x = u (the adjoint, ``selective_scan_adjoint``); C None:
    no contraction (the states are the result)."""

    def __init__(self, dt: torch.Tensor, u: torch.Tensor, A: torch.Tensor, B: _BC, C: _BC | None, G: int, T: int,
                 inplace: bool, times_dt: bool = True):
        self.dt, self.u, self.times_dt = dt, u, times_dt  # Δ (after bias and softplus) and u, (batch, dim, L)
        self.batch, self.dim, self.L = dt.shape
        self.N, self.G, self.dg = A.shape[1], G, self.dim // G
        self.A2 = (A * LOG2E).view(G, self.dg, self.N).transpose(1, 2).contiguous()  # (G, N, dg)
        self.B, self.C = B, C
        self.block_len = max(1, BLOCK_ELEMENTS // (T * self.batch * self.N * self.dim)) * T
        self.inplace = inplace  # no autograd: reuse buffers, update in place
        self.buf = self._workspace(min(self.block_len, math.ceil(self.L / T) * T), T, A.dtype) if inplace else {}
        self.views: dict[tuple, tuple[torch.Tensor, ...]] = {}

    def _workspace(self, steps: int, T: int, state: torch.dtype) -> dict[str, torch.Tensor]:
        """Buffers for one block, one allocation per dtype: per step E (the decays e, then P), Q
        (batch·N·dim each) and y; per chunk the entering state; Δ, Δu and a transpose scratch in u's
        dtype."""
        row, col, K = self.batch * self.N * self.dim, self.batch * self.dim, math.ceil(steps / T)
        parts = [(state, {"E": steps * row, "Q": steps * row, "y": steps * col, "h0": (K + 1) * row}),
                 (self.dt.dtype, {k: steps * col for k in ("dt", "du", "rows")})]
        buf = {}
        for dtype, sizes in parts:
            flat = torch.empty(sum(sizes.values()), dtype=dtype, device=self.dt.device)
            for k, n in sizes.items():
                buf[k], flat = flat[:n], flat[n:]
        return buf

    def _buf(self, name: str, *shape: int) -> torch.Tensor | None:
        """Buffer ``name`` viewed as ``shape``; None (the op allocates) under autograd."""
        return self.buf[name][: math.prod(shape)].view(shape) if name in self.buf else None

    def bounds(self) -> list[tuple[int, int]]:
        """The blocks (t0, t1) that ``run`` walks by default."""
        return [(t0, min(t0 + self.block_len, self.L)) for t0 in range(0, self.L, self.block_len)]

    def run(self, h: torch.Tensor, T: int, on_block=None, bounds: list[tuple[int, int]] | None = None
            ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(y (batch, dim, L) or None without C, final state) from the initial state h (batch, G, N, dim // G).
        ``on_block(t0, t1, H, h_in)`` sees each block's states H (t1 - t0, batch, G, N, dim // G) and the state
        entering it (no autograd). ``bounds``: consecutive blocks of at most ``block_len`` steps."""
        out = torch.empty_like(self.u) if self.inplace and self.C is not None else None
        ys = []
        for t0, t1 in bounds or self.bounds():
            h_in = h
            H, h = self.block(h, t0, t1, T)
            if on_block is not None:
                on_block(t0, t1, H[: t1 - t0], h_in)
            if self.C is None:
                continue
            y = self._contract(H, t0, H.shape[0])[: t1 - t0]
            if out is None:
                ys.append(y.permute(1, 2, 0))
            else:  # through a 2-D transpose into contiguous rows (a strided 3-D copy thrashes the cache)
                rows = self._buf("rows", self.batch * self.dim * (t1 - t0)).view(self.batch * self.dim, t1 - t0)
                out[:, :, t0:t1].copy_(rows.copy_(y.reshape(t1 - t0, -1).t()).view(self.batch, self.dim, -1))
        if self.C is None:
            return None, h
        return (torch.cat(ys, dim=-1) if out is None else out), h

    def block(self, h: torch.Tensor, t0: int, t1: int, T: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The states of steps t0..t1-1, time-major (n, batch, G, N, dim // G) with padding rows after
        t1-t0 (Δ = 0 there: the state carries through), and the state after the padded block, from the
        state h before step t0."""
        b, d, G, N, dg = self.batch, self.dim, self.G, self.N, self.dg
        K = math.ceil((t1 - t0) / T)
        shape = (K, T, b, G, N, dg)
        rows = self._buf("rows", b * d * (t1 - t0))
        dt = _time_major(self.dt[:, :, t0:t1], K * T, self._buf("dt", K * T, b, d), rows)
        e = torch.mul(dt.view(K, T, b, G, 1, dg), self.A2, out=self._buf("E", *shape))
        e = _exp2(e, out=e if self.inplace else None)  # exp(Δ_t a)
        x = self.u[:, :, t0:t1]
        du = _time_major(self.dt[:, :, t0:t1] if self.times_dt else x, K * T, self._buf("du", K * T, b, d), rows,
                         x if self.times_dt else None)
        q = torch.mul(self.B.against(t0, K, T), du.view(K, T, b, G, 1, dg), out=self._buf("Q", *shape))
        P, q = self._within_chunks(e, q)
        h0, h = self._entering(h, P, q)
        H = torch.addcmul(q, P, h0[:, None], out=q if self.inplace else None)
        return H.flatten(0, 1), h

    def _entering(self, h: torch.Tensor, P: torch.Tensor, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The states entering the K chunks, (K, batch, G, N, dim // G), from h_0' = P_T ⊙ h_0 + Q_T
        (P_T = exp(a (Δ_1 + ... + Δ_T)), Q_T the chunk's end state from zero), and the state after the last chunk.
        In place: straight into the workspace's rows."""
        decay, local = self._rows(P[:, -1]), self._rows(q[:, -1])
        if not self.inplace:
            hs = [h]
            for decay_k, local_k in zip(decay, local, strict=True):
                hs.append(torch.addcmul(local_k, decay_k, hs[-1]))
            return torch.stack(hs[:-1]), hs[-1]
        K = len(decay)
        h0 = self._buf("h0", K + 1, *h.shape)
        h0[0].copy_(h)
        rows = self._rows(h0)
        for k in range(K):
            torch.addcmul(local[k], decay[k], rows[k], out=rows[k + 1])
        return h0[:K], h0[K].clone()

    def _rows(self, x: torch.Tensor, dim: int = 0) -> tuple[torch.Tensor, ...]:
        """x.unbind(dim), remembered per view of the workspace for the in-place path (the buffers are the
        same from block to block, and unbinding every block cost ~5% of the forward)."""
        if not self.inplace:
            return x.unbind(dim)
        key = (x.data_ptr(), x.shape, x.stride(), dim)
        if key not in self.views:
            self.views[key] = x.unbind(dim)
        return self.views[key]

    def _within_chunks(self, e: torch.Tensor, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(P, Q) along the chunk axis (1) of (K, T, ...) tensors: P_t = e_t P_{t-1} (P_1 = e_1) and the
        local states Q_t = e_t Q_{t-1} + q_t (Q_1 = q_1): T - 1 steps over all K chunks at once, in place
        without autograd."""
        es, qs = self._rows(e, 1), self._rows(q, 1)
        if self.inplace:
            for t in range(1, len(es)):
                qs[t].addcmul_(es[t], qs[t - 1])
                es[t].mul_(es[t - 1])
            return e, q
        P, Q = [es[0]], [qs[0]]
        for e_t, q_t in zip(es[1:], qs[1:], strict=True):
            Q.append(torch.addcmul(q_t, e_t, Q[-1]))
            P.append(e_t * P[-1])
        return torch.stack(P, 1), torch.stack(Q, 1)

    def _contract(self, H: torch.Tensor, t0: int, n: int) -> torch.Tensor:
        """y_t = C_t · h_t (2b) of the block, (n, batch, dim); twice the real part for complex A."""
        b, G, N, dg = self.batch, self.G, self.N, self.dg
        if self.C.varying:  # per step, batch and group: (1, N) @ (N, dim // G)
            C = self.C.steps(t0, n).view(n * b * G, 1, N)
            y = torch.bmm(C, H.view(n * b * G, N, dg), out=self._buf("y", n * b * G, 1, dg))
        else:
            y = torch.mul(H, self.C.M, out=H if self.inplace else None).sum(-2)
        y = y.view(n, b, self.dim)
        return 2 * y.real if y.is_complex() else y


def _skip_and_gate(y: torch.Tensor, u: torch.Tensor, D: torch.Tensor | None, z: torch.Tensor | None) -> torch.Tensor:
    """(y + D u) · silu(z), each term optional; in place unless autograd records."""
    inplace = not torch.is_grad_enabled() or not any(t is not None and t.requires_grad for t in (y, u, D, z))
    if D is not None:
        y = torch.addcmul(y, u, D.to(u.dtype)[:, None], out=y if inplace else None)
    if z is not None:
        y = torch.mul(y, F.silu(z.to(u.dtype)), out=y if inplace else None)
    return y


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
    N = A.shape[1]
    real = torch.float64 if u.dtype == torch.float64 else torch.float32
    is_complex = A.is_complex()
    state = (torch.complex128 if real == torch.float64 else torch.complex64) if is_complex else real
    dt = delta.to(real)
    if delta_bias is not None:
        dt = dt + delta_bias.to(real)[:, None]
    if delta_softplus:
        dt = F.softplus(dt)
    uf = u.to(real)
    A = A.to(state)
    G = math.lcm(_groups(B), _groups(C))
    Bs, Cs = (_BC(M, dim, G, is_complex, real, state) for M in (B, C))
    if initial_state is None:
        h = torch.zeros(batch, G, N, dim // G, dtype=state, device=u.device)
    else:
        h = initial_state.to(state).view(batch, G, dim // G, N).transpose(2, 3)
    inplace = not torch.is_grad_enabled() or not any(t.requires_grad for t in (dt, uf, A, Bs.M, Cs.M, h))
    T = max(1, min(chunk_size, L))
    if not inplace and Bs.varying and Cs.varying:  # the hand-written adjoint
        from seqssm.ops.reference.selective_scan_adjoint import scan_with_adjoint

        y, h = scan_with_adjoint(dt, uf, A, Bs.M, Cs.M, h, T)
    else:  # plain autograd through the chunked arithmetic (time-invariant B or C), or no gradient
        y, h = _Scan(dt, uf, A, Bs, Cs, G, T, inplace).run(h, T)
    return _skip_and_gate(y, uf, D, z).to(u.dtype), h.transpose(2, 3).reshape(batch, dim, N)
