"""Pieces shared by the selective-scan forward and backward kernels.

The scan is the first-order linear recurrence ``h_t = a_t h_{t-1} + b_t``. Its elements compose
associatively: applying ``(a1, b1)`` and then ``(a2, b2)`` is ``(a1 a2, a2 b1 + b2)``. That lets a
block of time steps be scanned in parallel with ``tl.associative_scan`` (Blelloch 1990; the Mamba
paper's Section 3.3.2), and the carry from earlier blocks enters as ``h_t = A_t h_in + B_t`` where
``(A_t, B_t)`` is the inclusive scan inside the block.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

LOG2E = 1.4426950408889634


@triton.jit
def first_order(a1, b1, a2, b2):
    """(a1, b1) then (a2, b2), real."""
    return a1 * a2, a2 * b1 + b2


@triton.jit
def first_order_complex(ar1, ai1, br1, bi1, ar2, ai2, br2, bi2):
    """(a1, b1) then (a2, b2) with complex a, b held as (real, imag) pairs."""
    ar = ar1 * ar2 - ai1 * ai2
    ai = ar1 * ai2 + ai1 * ar2
    br = ar2 * br1 - ai2 * bi1 + br2
    bi = ar2 * bi1 + ai2 * br1 + bi2
    return ar, ai, br, bi


@triton.jit
def softplus(x):
    """log(1 + e^x), exact to fp32 rounding for all x (identity above 20, as in mamba_ssm)."""
    return tl.where(x <= 20.0, tl.log(1.0 + tl.exp(tl.minimum(x, 20.0))), x)


def inline_ptx(x: torch.Tensor) -> bool:
    """Whether kernels on ``x`` may use inline PTX (a CUDA tensor, not Triton's CPU interpreter)."""
    return x.is_cuda and os.environ.get("TRITON_INTERPRET") != "1"


def pow2_divisor(n: int, cap: int) -> int:
    """Largest power of two that divides ``n`` and is at most ``cap``."""
    p = 1
    while p * 2 <= cap and n % (p * 2) == 0:
        p *= 2
    return p


def next_pow2(n: int) -> int:
    return triton.next_power_of_2(max(int(n), 1))


def batch_inner(x: torch.Tensor) -> bool:
    """x (batch, dim, L) stored as (dim, batch, L): mamba_ssm's (dim, batch·L) projection viewed as (batch,
    dim, L); the time-sequential kernels read it in place (``BATCH_INNER``)."""
    return not x.is_contiguous() and x.permute(1, 0, 2).is_contiguous()


def rows_layout(x: torch.Tensor) -> torch.Tensor:
    """x (batch, dim, L) as the time-sequential kernels read it: contiguous, or ``batch_inner``, kept as it
    is; anything else copied to contiguous. fp64 becomes fp32 (the kernels compute in fp32)."""
    x = x.float() if x.dtype == torch.float64 else x
    return x if x.is_contiguous() or batch_inner(x) else x.contiguous()


def like_rows(x: torch.Tensor | None, ref: torch.Tensor) -> torch.Tensor | None:
    """x (batch, dim, L) in the layout of ``ref`` (a ``rows_layout`` result), copied only where it differs."""
    if x is None:
        return None
    x = x.float() if x.dtype == torch.float64 else x
    if not batch_inner(ref):
        return x.contiguous()
    return x if x.permute(1, 0, 2).is_contiguous() else x.permute(1, 0, 2).contiguous().permute(1, 0, 2)
