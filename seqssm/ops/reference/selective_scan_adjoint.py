"""The chunked CPU selective scan with a hand-written backward (time-varying B and C; real or complex A).

Autograd through the chunked arithmetic of ``selective_scan.py`` records ~40 ops per block and keeps
their inputs; its backward cost ~9x the forward. Here the forward runs without autograd and keeps only
the state entering each block; the backward recomputes a block's states, runs the adjoint over the same
block (one more chunked scan, backwards in time) and contracts them into the gradients.

Forward (Gu & Dao 2023, eq. 2a-2b, per channel d and state n; x = Δ ⊙ u)::

    h_t = a_t h_{t-1} + B_t x_t,   a_t = exp(Δ_t A),   y_t = Σ_n C_tn h_tn

Backward, with g_t = ∂L/∂y_t and λ_t = ∂L/∂h_t (the adjoint, a scan backwards in time)::

    λ_t = C_t g_t + a_{t+1} λ_{t+1}              (λ_{L-1} also gets ∂L/∂h_last)
    ∂L/∂x_td  = Σ_n λ_tnd B_tn                   ∂L/∂B_tn = Σ_d λ_tnd x_td
    ∂L/∂C_tn  = Σ_d g_td h_tnd                   W_t = λ_t ⊙ a_t h_{t-1} = λ_t ⊙ (h_t - B_t x_t)
    ∂L/∂Δ_td (through a) = Σ_n A_nd W_tnd        ∂L/∂A_nd = Σ_t Δ_td W_tnd
    ∂L/∂h_init = a_0 ⊙ λ_0

Complex A (y_t = 2 Re Σ_n C_tn h_tn), in PyTorch's convention for gradients of complex tensors (the
conjugate of the Wirtinger derivative): every factor above is conjugated where it multiplies λ, and C_t g_t
becomes 2 conj(C_t) g_t: λ_t = 2 conj(C_t) g_t + conj(a_{t+1}) λ_{t+1}, ∂L/∂x = Re Σ_n conj(B) λ,
∂L/∂C = 2 Σ_d g conj(h), W = λ ⊙ conj(a_t h_{t-1}), ∂L/∂Δ = Re Σ_n conj(A) W, ∂L/∂h_init = conj(a_0) λ_0.

The adjoint is the forward scan run on reversed time: λ'_r = a'_r λ'_{r-1} + C'_r g'_r with
λ'_r = λ_{L-1-r}, g' and C' reversed, a'_r = a_{L-r} (Δ' = [0, Δ_{L-1}, ..., Δ_1]) and λ'_{-1} = ∂L/∂h_last;
so it reuses the forward's chunked code. The gradients of the layout changes
(B/C groups, dtypes), softplus, bias, D and z stay with autograd around this function; x = Δ ⊙ u is
differentiated here: ∂L/∂u = Δ ∂L/∂x, and ∂L/∂Δ gets u ∂L/∂x on top of the decay's part.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from seqssm.ops.reference.selective_scan import _BC, _Scan, _time_major


def _channel_major(x: torch.Tensor) -> torch.Tensor:
    """(L, batch, G, dim // G) -> (batch, dim, L), the inverse of ``_time_major``."""
    L, b, G, dg = x.shape
    return x.reshape(L, b * G * dg).t().contiguous().view(b, G * dg, L)


class _ScanWithAdjoint(torch.autograd.Function):
    @staticmethod
    def forward(ctx, dt, u, A, BM, CM, h0, T):
        G = BM.shape[2]
        scan = _Scan(dt, u, A, _BC.of_time_major(BM), _BC.of_time_major(CM), G, T, inplace=True)
        entering = []  # the state entering each block: the backward recomputes a block's states from it
        y, h = scan.run(h0, T, on_block=lambda t0, t1, states, h_in: entering.append(h_in))
        ctx.save_for_backward(dt, u, A, BM, CM, torch.stack(entering))
        ctx.T, ctx.bounds = T, scan.bounds()
        return y, h

    @staticmethod
    @once_differentiable  # the backward works in reused buffers: a second derivative raises, not lies
    def backward(ctx, gy, gh):
        dt, u, A, BM, CM, entering = ctx.saved_tensors
        L, b, G, N = BM.shape
        dg = dt.shape[1] // G
        gy = torch.zeros_like(u) if gy is None else gy.to(u.dtype)
        gh = torch.zeros_like(entering[0]) if gh is None else gh.to(entering.dtype)
        A3 = A.view(G, dg, N).transpose(1, 2)  # (G, N, dg), as the states
        dtT, xT, gT = (_time_major(v, L, None, None).view(L, b, G, dg) for v in (dt, dt * u, gy))
        g_dt, g_xT = torch.empty_like(dtT), torch.empty_like(xT)
        g_B, g_C = torch.empty_like(BM), torch.empty_like(CM)
        g_A = torch.zeros_like(A3)
        cplx = A.is_complex()
        # States are recomputed block by block (storing all of them, (L, batch, N, dim) fp32, costs more in
        # fresh pages than the recomputation); the adjoint walks the same blocks from the end.
        forward = _Scan(dt, u, A, _BC.of_time_major(BM), None, G, ctx.T, inplace=True)
        blocks = {t1: (k, t0) for k, (t0, t1) in enumerate(ctx.bounds)}
        lam = torch.empty(max(t1 - t0 for t0, t1 in ctx.bounds), b, G, N, dg, dtype=A3.dtype, device=A3.device)
        reverse = torch.arange(lam.shape[0] - 1, -1, -1, device=A3.device)

        def block(r0: int, r1: int, lam_reversed: torch.Tensor, _h_in: torch.Tensor) -> None:
            """Reversed steps r0..r1-1 of the adjoint = forward block t0..t1-1: its gradients."""
            k, t0 = blocks[L - r0]
            t1, n = L - r0, r1 - r0
            rows = n * b * G
            Hb = forward.block(entering[k], t0, t1, ctx.T)[0][:n]
            lb = torch.index_select(lam_reversed, 0, reverse[-n:], out=lam[:n])  # forward time order
            Bb, xb, gb = BM[t0:t1], xT[t0:t1], gT[t0:t1]
            if cplx:  # bmm takes one dtype
                xb, gb = xb.to(Hb.dtype), gb.to(Hb.dtype)
            # Σ_d as (1, dim/G) @ (dim/G, N): BLAS is ~5x slower on the (N, dim/G) @ (dim/G, 1) orientation
            gc = g_C[t0:t1].view(rows, 1, N)
            torch.bmm(gb.reshape(rows, 1, dg), Hb.reshape(rows, N, dg).transpose(1, 2).conj(), out=gc)
            torch.bmm(xb.reshape(rows, 1, dg), lb.reshape(rows, N, dg).transpose(1, 2),
                      out=g_B[t0:t1].view(rows, 1, N))
            gx = torch.bmm(Bb.reshape(rows, 1, N).conj(), lb.reshape(rows, N, dg))
            g_xT[t0:t1].view(rows, 1, dg).copy_(gx.real)
            W = torch.mul(Bb[..., None], xb[..., None, :])  # B_t x_t
            W = torch.sub(Hb, W, out=W).conj_physical_().mul_(lb) if cplx else torch.sub(Hb, W, out=W).mul_(lb)
            torch.sum(torch.mul(W, A3.conj()).real, dim=-2, out=g_dt[t0:t1])  # W = λ_t ⊙ conj(a_t h_{t-1})
            g_A.add_(W.mul_(dtT[t0:t1, :, :, None, :]).sum((0, 1)))

        dt_rev = torch.cat([torch.zeros_like(dt[:, :, :1]), dt.flip(-1)[:, :, :-1]], dim=-1)
        C_adj = (2 * CM.conj()).flip(0) if cplx else CM.flip(0)  # y = 2 Re(C h) for complex A
        adjoint = _Scan(dt_rev, gy.flip(-1), A.conj(), _BC.of_time_major(C_adj), None, G, ctx.T, inplace=True,
                        times_dt=False)
        _, lam0 = adjoint.run(gh, ctx.T, on_block=block, bounds=[(L - t1, L - t0) for t0, t1 in reversed(ctx.bounds)])
        g_h0 = torch.exp(dt[:, :, 0].reshape(b, G, 1, dg) * A3).conj() * lam0
        if cplx:
            g_C.mul_(2)
        g_A = g_A.transpose(1, 2).reshape(G * dg, N)
        g_x = _channel_major(g_xT)  # ∂L/∂x, x = Δ ⊙ u
        return torch.addcmul(_channel_major(g_dt), u, g_x), dt * g_x, g_A, g_B, g_C, g_h0, None


def scan_with_adjoint(
    dt: torch.Tensor, u: torch.Tensor, A: torch.Tensor, BM: torch.Tensor, CM: torch.Tensor, h0: torch.Tensor,
    T: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """y (batch, dim, L) and the last state (batch, G, N, dim // G) of the chunked scan, differentiable in
    every argument through the adjoint above. dt = Δ, u: (batch, dim, L); A (dim, N) real;
    BM, CM time-major (L, batch, G, N); h0 (batch, G, N, dim // G); all in the state dtype."""
    return _ScanWithAdjoint.apply(dt, u, A, BM, CM, h0, T)
