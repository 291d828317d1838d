"""Test-wide set-up. Without a GPU, Triton kernels run in Triton's CPU interpreter: the variable
must be set before any kernel module is imported (``@triton.jit`` reads it at decoration time).
The reference path (``backend="auto"`` on CPU tensors) does not depend on it."""

import os
import sys

import torch

# `python -m pytest` in the checkout puts its root on sys.path, and there the top-level kernels/ folder
# (installed as seqssm.kernels) shadows the PyPI package `kernels` that transformers imports
# (test_pretrained failed with "cannot import name 'CUDAProperties' from 'kernels'"). The installed
# package needs no root entry: drop it, so that `python -m pytest` runs like `pytest`.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _ROOT]

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
