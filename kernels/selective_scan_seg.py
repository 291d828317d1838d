"""Carry a first-order recurrence across time segments (the sequential step of the segment split).

A segment s of the scan maps the state entering it to the state leaving it affinely:
``h_out = P_s ⊙ h_in + q_s`` with ``P_s = ∏_{t∈s} exp(Δ_t A) = exp(A Σ_{t∈s} Δ_t)`` (elementwise for
real A) and ``q_s`` the segment's final state from a zero start. Forward (the state)::

    H_0 = h0,    H_s = P_{s-1} ⊙ H_{s-1} + q_{s-1}           (H_s: state entering segment s)

Backward (the adjoint, ``REVERSE``): with ``q_s`` the gradient leaving segment s towards earlier time
from a zero incoming gradient, ``M_{S-1} = ḡ_last`` and ``M_{s-1} = P_s ⊙ M_s + q_s`` (M_s: gradient
entering segment s from later time). Complex A: P_s = exp(A ΣΔ) (the adjoint's: its conjugate, which the
backward's LOCAL pass writes as P) and the states are
complex, stored as (re, im) pairs, and P_s ⊙ H is a complex product. Tensors are (batch, S, dim, N) fp32;
one program per block of (dim·N) elements of one sequence walks the S segments in order.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def propagate_kernel(P_ptr, q_ptr, init_ptr, out_ptr, S, ND, HAS_INIT: tl.constexpr, REVERSE: tl.constexpr,
                     BLOCK: tl.constexpr, CPLX: tl.constexpr = False):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    b64 = tl.program_id(1).to(tl.int64)
    m = offs < ND
    K: tl.constexpr = 2 if CPLX else 1
    e = offs * K  # complex: (re, im) pairs
    x = tl.zeros((BLOCK,), tl.float32)
    xi = tl.zeros((BLOCK,), tl.float32)
    if HAS_INIT:
        x = tl.load(init_ptr + b64 * ND * K + e, mask=m, other=0.0)
        if CPLX:
            xi = tl.load(init_ptr + b64 * ND * K + e + 1, mask=m, other=0.0)
    for i in range(0, S):
        s = (S - 1 - i) if REVERSE else i
        off = (b64 * S + s) * ND * K + e
        tl.store(out_ptr + off, x, mask=m)
        p = tl.load(P_ptr + off, mask=m, other=0.0)
        q = tl.load(q_ptr + off, mask=m, other=0.0)
        if CPLX:
            tl.store(out_ptr + off + 1, xi, mask=m)
            pi = tl.load(P_ptr + off + 1, mask=m, other=0.0)
            qi = tl.load(q_ptr + off + 1, mask=m, other=0.0)
            x, xi = p * x - pi * xi + q, p * xi + pi * x + qi
        else:
            x = p * x + q


def propagate(P, q, init, out, *, reverse: bool, cplx: bool = False) -> None:
    """out[:, s] = value entering segment s (see module docstring); init: (batch, dim, N) or None.
    ``cplx``: the tensors hold (re, im) pairs on their last axis (batch, S, dim, 2N) and P multiplies as a
    complex number (forward: P = exp(A ΣΔ); the adjoint's reverse carry is given P = conj(exp(A ΣΔ)))."""
    batch, S, dim, N = P.shape
    ND = dim * N // (2 if cplx else 1)
    BLOCK = 1024
    grid = (triton.cdiv(ND, BLOCK), batch)
    propagate_kernel[grid](P, q, init, out, S, ND, HAS_INIT=init is not None, REVERSE=reverse,
                           BLOCK=BLOCK, CPLX=cplx, num_warps=4)
