"""Test-wide set-up. Without a GPU, Triton kernels run in Triton's CPU interpreter: the variable
must be set before any kernel module is imported (``@triton.jit`` reads it at decoration time).
The reference path (``backend="auto"`` on CPU tensors) does not depend on it."""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
