"""Fused gated RMSNorm (Triton) against the PyTorch reference in float64, forward and backward."""

from __future__ import annotations

import os

import pytest
import torch

from seqssm.ops.reference.norm import gated_rms_norm_ref

if not (torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"):
    pytest.skip("Triton kernels need CUDA or TRITON_INTERPRET=1", allow_module_level=True)

from seqssm.kernels.gated_rms_norm import gated_rms_norm_triton  # noqa: E402

DEV = "cuda" if torch.cuda.is_available() else "cpu"


def rel(a, b):
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize("group_size", [None, 16])
@pytest.mark.parametrize("norm_before_gate", [False, True])
@pytest.mark.parametrize("with_z", [True, False])
def test_gated_rms_norm(dtype, tol, group_size, norm_before_gate, with_z):
    d = 48
    x = torch.randn(3, 7, d, dtype=torch.float64)
    z = torch.randn(3, 7, d, dtype=torch.float64) if with_z else None
    w = 1 + 0.5 * torch.randn(d, dtype=torch.float64)
    t = [v.to(DEV, dtype).requires_grad_() if v is not None else None for v in (x, w, z)]
    r = [v.clone().requires_grad_() if v is not None else None for v in (x, w, z)]
    out = gated_rms_norm_triton(t[0], t[1], t[2], 1e-5, group_size, norm_before_gate)
    ref = gated_rms_norm_ref(r[0], r[1], r[2], 1e-5, group_size, norm_before_gate)
    assert out.dtype == dtype and out.shape == ref.shape
    assert rel(out.cpu(), ref) < tol
    g = torch.randn_like(ref)
    out.backward(g.to(DEV, dtype))
    ref.backward(g)
    for a, b, name in zip(t, r, "x w z".split(), strict=True):
        if a is not None:
            assert rel(a.grad.cpu(), b.grad) < tol, name
