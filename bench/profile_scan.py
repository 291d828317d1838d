"""Run seqssm's Triton selective scan forward and backward a few times at one shape, for a
profiler (``ncu --kernel-name regex:selective_scan ...``). bf16, N = 16, with D, z, bias, softplus.

    python bench/profile_scan.py [batch dim L]
"""

from __future__ import annotations

import sys

import torch

from seqssm.kernels.selective_scan import selective_scan_triton


def main() -> None:
    batch, dim, L = (int(v) for v in (sys.argv[1:4] if len(sys.argv) > 3 else (4, 2048, 8192)))
    dev, bf = "cuda", torch.bfloat16
    u, z = torch.randn(batch, dim, L, device=dev, dtype=bf), torch.randn(batch, dim, L, device=dev, dtype=bf)
    delta = (0.5 * torch.randn(batch, dim, L, device=dev) - 2).to(bf)
    A = -(torch.rand(dim, 16, device=dev) * 15 + 1)
    B, C = torch.randn(batch, 16, L, device=dev, dtype=bf), torch.randn(batch, 16, L, device=dev, dtype=bf)
    D, bias = torch.randn(dim, device=dev), 0.1 * torch.randn(dim, device=dev)
    leaves = [t.requires_grad_() for t in (u, delta, A, B, C, D, z, bias)]
    for _ in range(3):
        out, _ = selective_scan_triton(*leaves, True, None)
        torch.autograd.grad(out, leaves, torch.ones_like(out))
    torch.cuda.synchronize()


if __name__ == "__main__":
    main()
