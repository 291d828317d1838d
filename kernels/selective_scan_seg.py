"""Carry a first-order recurrence across time segments (the sequential step of the segment split).

A segment s of the scan maps the state entering it to the state leaving it affinely:
``h_out = P_s ⊙ h_in + q_s`` with ``P_s = ∏_{t∈s} exp(Δ_t A) = exp(A Σ_{t∈s} Δ_t)`` (elementwise for
real A) and ``q_s`` the segment's final state from a zero start. Forward (the state)::

    H_0 = h0,    H_s = P_{s-1} ⊙ H_{s-1} + q_{s-1}           (H_s: state entering segment s)

Backward (the adjoint, ``REVERSE``): with ``q_s`` the gradient leaving segment s towards earlier time
from a zero incoming gradient, ``M_{S-1} = ḡ_last`` and ``M_{s-1} = P_s ⊙ M_s + q_s`` (M_s: gradient
entering segment s from later time). Tensors are (batch, S, dim, N) fp32; one program per block of
(dim·N) elements of one sequence walks the S segments in order.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def propagate_kernel(P_ptr, q_ptr, init_ptr, out_ptr, S, ND, HAS_INIT: tl.constexpr, REVERSE: tl.constexpr,
                     BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    b64 = tl.program_id(1).to(tl.int64)
    m = offs < ND
    x = tl.zeros((BLOCK,), tl.float32)
    if HAS_INIT:
        x = tl.load(init_ptr + b64 * ND + offs, mask=m, other=0.0)
    for i in range(0, S):
        s = (S - 1 - i) if REVERSE else i
        off = (b64 * S + s) * ND + offs
        tl.store(out_ptr + off, x, mask=m)
        x = tl.load(P_ptr + off, mask=m, other=0.0) * x + tl.load(q_ptr + off, mask=m, other=0.0)


def propagate(P, q, init, out, *, reverse: bool) -> None:
    """out[:, s] = value entering segment s (see module docstring); init: (batch, dim, N) or None."""
    batch, S, dim, N = P.shape
    BLOCK = 1024
    grid = (triton.cdiv(N * dim, BLOCK), batch)
    propagate_kernel[grid](P, q, init, out, S, N * dim, HAS_INIT=init is not None, REVERSE=reverse,
                           BLOCK=BLOCK, num_warps=4)
