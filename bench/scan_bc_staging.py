"""Diagnostic: does staging B and C as fp32 for the time-sequential scan cost forward time? Times our
selective scan forward (with and without autograd recording) and forward+backward with B, C staged as
fp32 (current) and in their own dtype (bf16), side by side.

usage: python bench/scan_bc_staging.py
"""

from __future__ import annotations

import json
import sys

import torch

sys.path.insert(0, __import__("os").path.dirname(__file__))
from scan import scan_inputs  # noqa: E402
from ssd import bench  # noqa: E402

import seqssm.kernels.selective_scan as ss  # noqa: E402
from seqssm.ops import selective_scan_fn  # noqa: E402

FP32_STAGING = ss.bc_seq


def keep_dtype(M: torch.Tensor) -> torch.Tensor:
    """The staging before 2dfd8e5: (batch, groups, L, N) in B's dtype."""
    M = M.unsqueeze(1) if M.dim() == 3 else M
    return M.transpose(-1, -2).contiguous()


def main() -> None:
    rows = []
    for batch, L in ((4, 2048), (4, 8192), (1, 32768)):
        t = scan_inputs(batch, 2048, 16, L)
        u, delta, A, B, C, D, z, bias = t

        def call(u=u, delta=delta, A=A, B=B, C=C, D=D, z=z, bias=bias):
            return selective_scan_fn(u, delta, A, B, C, D, z, bias, True, backend="triton")

        for name, fn in (("fp32", FP32_STAGING), ("bf16", keep_dtype)):
            ss.bc_seq = fn
            for x in t:
                x.requires_grad_(False)
            fwd_nograd = bench(call)
            for x in t:
                x.requires_grad_(True)
            fwd_grad = bench(call)
            out = call()
            g = torch.randn_like(out)
            fb = bench(lambda g=g, t=t, call=call: torch.autograd.grad(call(), t, g))
            rows.append(
                dict(batch=batch, L=L, staging=name, fwd_nograd_ms=fwd_nograd, fwd_grad_ms=fwd_grad, fwdbwd_ms=fb)
            )
            print(json.dumps(rows[-1]), flush=True)
    ss.bc_seq = FP32_STAGING


if __name__ == "__main__":
    main()
