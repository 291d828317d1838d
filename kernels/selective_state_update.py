"""One-token selective state update (decode step) in Triton, in place: O(1) time and memory a token.

    Δ = softplus(dt + dt_bias);   state ← exp(Δ A) ⊙ state + Δ B x;   y = C·state + D x;   y · silu(z)

Complex A (Mamba-1 only): complex B, C and state, and y = 2 Re(C·state) + D x.

Mamba-1 shapes are handled as Mamba-2 with one head of head_dim = dim and one group:
state (batch, heads, head_dim, N); x, dt, z (batch, heads, head_dim); A (heads, head_dim, N);
B, C (batch, groups, N); D, dt_bias (heads, head_dim). Every tensor is addressed by its strides, so
broadcast views (Mamba-2's per-head A, dt, D expanded with stride 0) cost nothing. One program
updates BLOCK_P rows of one head's state.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def state_update_kernel(
    st_ptr, x_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, y_ptr,
    P, heads_per_group,
    s_sb, s_sh, s_sp, s_sn, s_xb, s_xh, s_xp, s_tb, s_th, s_tp, s_ah, s_ap, s_an,
    s_bb, s_bg, s_bn, s_cb, s_cg, s_cn, s_dh, s_dp, s_zb, s_zh, s_zp, s_eh, s_ep, s_yb, s_yh, s_yp,
    N: tl.constexpr, NP: tl.constexpr, BLOCK_P: tl.constexpr, CPLX: tl.constexpr,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    A_LOG: tl.constexpr,
):
    pp = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    h = tl.program_id(1).to(tl.int64)
    b = tl.program_id(2).to(tl.int64)
    g = h // heads_per_group
    n = tl.arange(0, NP)
    mp = pp < P
    mn = n < N
    m = mp[:, None] & mn[None, :]
    pp64 = pp.to(tl.int64)
    x = tl.load(x_ptr + b * s_xb + h * s_xh + pp64 * s_xp, mask=mp, other=0.0).to(tl.float32)
    dt = tl.load(dt_ptr + b * s_tb + h * s_th + pp64 * s_tp, mask=mp, other=0.0).to(tl.float32)
    if HAS_BIAS:
        dt += tl.load(bias_ptr + h * s_eh + pp64 * s_ep, mask=mp, other=0.0).to(tl.float32)
    if SOFTPLUS:
        dt = tl.where(dt <= 20.0, tl.log(1.0 + tl.exp(tl.minimum(dt, 20.0))), dt)
    a_p = A_ptr + h * s_ah + pp64[:, None] * s_ap + n[None, :] * s_an
    s_p = st_ptr + b * s_sb + h * s_sh + pp64[:, None] * s_sp + n[None, :] * s_sn
    b_p = B_ptr + b * s_bb + g * s_bg + n * s_bn
    c_p = C_ptr + b * s_cb + g * s_cg + n * s_cn
    Ar = tl.load(a_p, mask=m, other=0.0).to(tl.float32)
    if A_LOG:  # A given as A_log: A = -exp(A_log)
        Ar = -tl.exp(Ar)
    sr = tl.load(s_p, mask=m, other=0.0).to(tl.float32)
    Br = tl.load(b_p, mask=mn, other=0.0).to(tl.float32)
    Cr = tl.load(c_p, mask=mn, other=0.0).to(tl.float32)
    mag = tl.exp(dt[:, None] * Ar)
    dtx = (dt * x)[:, None]
    if CPLX:  # complex tensors seen as (..., 2) reals: the imaginary part is one element further
        Ai = tl.load(a_p + 1, mask=m, other=0.0).to(tl.float32)
        si = tl.load(s_p + 1, mask=m, other=0.0).to(tl.float32)
        Bi = tl.load(b_p + 1, mask=mn, other=0.0).to(tl.float32)
        Ci = tl.load(c_p + 1, mask=mn, other=0.0).to(tl.float32)
        ar = mag * tl.cos(dt[:, None] * Ai)
        ai = mag * tl.sin(dt[:, None] * Ai)
        nr = ar * sr - ai * si + dtx * Br[None, :]
        ni = ar * si + ai * sr + dtx * Bi[None, :]
        tl.store(s_p, nr.to(st_ptr.dtype.element_ty), mask=m)
        tl.store(s_p + 1, ni.to(st_ptr.dtype.element_ty), mask=m)
        y = 2.0 * tl.sum(nr * Cr[None, :] - ni * Ci[None, :], 1)
    else:
        nr = mag * sr + dtx * Br[None, :]
        tl.store(s_p, nr.to(st_ptr.dtype.element_ty), mask=m)
        y = tl.sum(nr * Cr[None, :], 1)
    if HAS_D:
        y += x * tl.load(D_ptr + h * s_dh + pp64 * s_dp, mask=mp, other=0.0).to(tl.float32)
    if HAS_Z:
        z = tl.load(z_ptr + b * s_zb + h * s_zh + pp64 * s_zp, mask=mp, other=0.0).to(tl.float32)
        y = y * z * tl.sigmoid(z)
    tl.store(y_ptr + b * s_yb + h * s_yh + pp64 * s_yp, y.to(y_ptr.dtype.element_ty), mask=mp)


def _real(t: torch.Tensor | None) -> tuple[torch.Tensor | None, tuple[int, ...]]:
    """A tensor and its element strides; complex tensors as their (..., 2) real view, with the
    strides of the complex axes (in reals)."""
    if t is None:
        return None, ()
    if t.is_complex():
        r = torch.view_as_real(t)
        return r, tuple(r.stride()[:-1])
    return t, tuple(t.stride())


def selective_state_update_triton(
    state: torch.Tensor,
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    dt_bias: torch.Tensor | None = None,
    dt_softplus: bool = False,
    A_is_log: bool = False,
) -> torch.Tensor:
    """Mamba-1: state (batch, dim, N), x/dt/z (batch, dim), A (dim, N), B/C (batch, N) (complex A:
    complex B/C and state), D/dt_bias (dim,). Mamba-2: state (batch, heads, head_dim, N), x/dt/z
    (batch, heads, head_dim), A (heads, head_dim, N), B/C (batch, groups, N), D/dt_bias
    (heads, head_dim). ``state`` is updated in place; returns y shaped like x, in x's dtype.
    ``A_is_log``: A holds log(-A) (real A); the kernel forms A = -exp(A_log)."""
    if state.dim() == 3:
        y = selective_state_update_triton(
            state.unsqueeze(1), x.unsqueeze(1), dt.unsqueeze(1), A.unsqueeze(0), B.unsqueeze(1),
            C.unsqueeze(1), None if D is None else D.unsqueeze(0), None if z is None else z.unsqueeze(1),
            None if dt_bias is None else dt_bias.unsqueeze(0), dt_softplus, A_is_log)
        return y.squeeze(1)
    batch, heads, P, N = state.shape
    groups = B.shape[1]
    cplx = A.is_complex()
    if cplx and not (state.is_complex() and B.is_complex() and C.is_complex()):
        raise ValueError("complex A needs complex B, C and state")
    y = torch.empty_like(x)
    st, s_s = _real(state)
    Ak, s_a = _real(A)
    Bk, s_b = _real(B)
    Ck, s_c = _real(C)
    _, s_x = _real(x)
    _, s_t = _real(dt)
    _, s_d = _real(D) if D is not None else (None, (0, 0))
    _, s_z = _real(z) if z is not None else (None, (0, 0, 0))
    _, s_e = _real(dt_bias) if dt_bias is not None else (None, (0, 0))
    block_p = min(triton.next_power_of_2(P), 64 if state.is_cuda else 16)
    grid = (triton.cdiv(P, block_p), heads, batch)
    state_update_kernel[grid](
        st, x, dt, Ak, Bk, Ck, D, z, dt_bias, y, P, heads // groups,
        *s_s, *s_x, *s_t, *s_a, *s_b, *s_c, *s_d, *s_z, *s_e, *y.stride(),
        N=N, NP=max(triton.next_power_of_2(N), 2), BLOCK_P=block_p, CPLX=cplx,
        HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=dt_bias is not None,
        SOFTPLUS=dt_softplus, A_LOG=A_is_log, num_warps=4)
    return y
