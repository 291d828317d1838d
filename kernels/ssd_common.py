"""Helpers shared by the SSD kernels."""

from __future__ import annotations

import os

import triton
import triton.language as tl

# Triton's CPU interpreter (TRITON_INTERPRET=1, used by CI) computes bf16 tl.dot wrongly (seen with
# triton 3.8); there the operands are widened to fp32 first, which is the same arithmetic as the
# tensor cores (exact products, fp32 accumulation).
INTERPRET = tl.constexpr(os.environ.get("TRITON_INTERPRET", "0") == "1")


@triton.jit
def mma(a, b):
    """a @ b with fp32 accumulation, on tensor cores on a GPU."""
    if INTERPRET:
        return tl.dot(a.to(tl.float32), b.to(tl.float32))
    else:
        return tl.dot(a, b)
