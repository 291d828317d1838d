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


def dot_block(n: int, cap: int = 1 << 30) -> int:
    """Tile width for a dimension of size n that enters ``tl.dot``: the next power of two, at most
    ``cap``, and at least 16 (tensor-core dots need K >= 16; loads are masked beyond n, so small
    head_dim or d_state are zero-padded, and the interpreter runs the same padded tiles)."""
    return max(16, min(cap, triton.next_power_of_2(n)))


def tune(key: list[str], restore: list[str] | None = None):
    """Autotune warps and pipeline depth on a GPU (block shapes are set by the callers); under the
    interpreter the kernel runs as written, with 4 warps. ``restore`` names outputs that the kernel
    accumulates into, so that trial runs leave them as they were."""
    if INTERPRET:
        return lambda fn: fn
    configs = [triton.Config({}, num_warps=w, num_stages=s) for w in (4, 8) for s in (1, 2, 3)]
    return triton.autotune(configs=configs, key=key, restore_value=restore or [])
