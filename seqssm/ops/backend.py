"""The one place that decides which implementation of a primitive runs.

``backend="reference"`` is the pure-PyTorch path (CPU, any device, differentiable by
autograd). ``backend="triton"`` runs the Triton kernels in ``seqssm.kernels``: on CUDA
tensors, or on CPU tensors when ``TRITON_INTERPRET=1`` (the interpreter, used by CI).
``backend="auto"`` picks Triton for CUDA tensors and the reference otherwise.
"""

from __future__ import annotations

import os
from typing import Literal

import torch

Backend = Literal["auto", "reference", "triton"]
BACKENDS = ("auto", "reference", "triton")


def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def interpreting() -> bool:
    """True when Triton runs kernels in its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def resolve(backend: str, x: torch.Tensor) -> Literal["reference", "triton"]:
    """Return the implementation to run for input ``x`` under the requested ``backend``."""
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r}: expected one of {', '.join(BACKENDS)}")
    if backend == "reference":
        return "reference"
    if backend == "auto":
        return "triton" if x.is_cuda and triton_available() else "reference"
    if not triton_available():
        raise RuntimeError("backend='triton' needs the triton package (Linux); use backend='reference'")
    if not x.is_cuda and not interpreting():
        raise RuntimeError(
            f"backend='triton' got a tensor on {x.device}: Triton kernels run on CUDA tensors, "
            "or on the CPU under TRITON_INTERPRET=1"
        )
    return "triton"
