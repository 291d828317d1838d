"""Where our selective scan spends its time at the shapes where it loses to mamba_ssm (issue 3: fwd+bwd
at 2K x 4), and the complex backward's steps per tile (issue 11).

usage: python bench/scan_profile.py --out DIR [--shapes 4x2048,4x8192] [--complex-sweep 8192]

For each BATCHxL (bf16, d_inner 2048, N 16, with D, z, delta_bias, softplus): do_bench medians of forward
and forward+backward, the host time per call (20 calls enqueued without synchronising), the GPU
kernels per call (torch.profiler) and a cProfile of the host side. ``--complex-sweep L``: complex A at
batch 1 x L, forward+backward for every (T_cplx, bwd_T_cplx) of CONFIG's candidates, each against the
default's gradients (relative difference).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
from complex_overhead import scan_call, scan_inputs  # noqa: E402
from ssd import bench, fwd_bwd, map_kernels_package, rel  # noqa: E402
from ssd_profile import host_profile, host_seconds, kernel_table  # noqa: E402


def profile_shape(batch: int, L: int) -> dict:
    t = scan_inputs(batch, 2048, 16, L, False)
    fwd, fb = scan_call(t), fwd_bwd(scan_call(t), list(t.values()))
    fb()
    r = {"batch": batch, "L": L, "fwd_ms": bench(fwd), "fwdbwd_ms": bench(fb),
         "fwd_host_ms": host_seconds(fwd) * 1e3, "fwdbwd_host_ms": host_seconds(fb) * 1e3,
         "fwd_kernels": kernel_table(fwd), "fwdbwd_kernels": kernel_table(fb), "fwdbwd_host_profile": host_profile(fb)}
    for k in ("fwd", "fwdbwd"):
        r[f"{k}_kernel_sum_ms"] = sum(x["ms_per_call"] for x in r[f"{k}_kernels"])
    return r


def complex_sweep(L: int) -> list[dict]:
    from seqssm.kernels import selective_scan_seq as seq

    t = scan_inputs(1, 2048, 16, L, True)
    leaves = [v.requires_grad_() for v in t.values()]
    default = dict(seq.CONFIG)
    rows, ref = [], None
    for T, bwd_T in ((4, 2), (4, 1), (2, 2), (2, 1)):
        seq.CONFIG.update(T_cplx=T, bwd_T_cplx=bwd_T)
        fb = fwd_bwd(scan_call(t), leaves)
        out = scan_call(t)()
        grads = torch.autograd.grad(out.float().square().sum(), leaves)
        if ref is None:
            ref = grads
        row = {"T_cplx": T, "bwd_T_cplx": bwd_T, "fwd_ms": bench(scan_call(t)), "fwdbwd_ms": bench(fb),
               "max_rel_grad_vs_default": max(rel(a, b) for a, b in zip(grads, ref, strict=True))}
        rows.append(row)
        print("complex", json.dumps(row), flush=True)
    seq.CONFIG.clear()
    seq.CONFIG.update(default)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=".")
    ap.add_argument("--shapes", default="4x2048,4x8192")
    ap.add_argument("--complex-sweep", type=int, default=0)
    a = ap.parse_args()
    map_kernels_package()
    import triton

    res = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
           "argv": sys.argv, "date": time.strftime("%Y-%m-%d"), "scan": []}
    path = os.path.join(a.out, "scan_profile.json")
    for shape in filter(None, a.shapes.split(",")):
        batch, L = (int(v) for v in shape.split("x"))
        r = profile_shape(batch, L)
        res["scan"].append(r)
        print("scan", json.dumps({k: v for k, v in r.items() if not k.endswith(("kernels", "profile"))}), flush=True)
        print(r["fwdbwd_host_profile"][:3000])
        for k in ("fwd_kernels", "fwdbwd_kernels"):
            for row in r[k][:16]:
                print(f"  {k[:-8]:7s} {row['ms_per_call']:8.4f} ms x{row['count_per_call']:.0f}  {row['kernel']}")
        json.dump(res, open(path, "w"), indent=1)
    if a.complex_sweep:
        res["complex_sweep"] = complex_sweep(a.complex_sweep)
        json.dump(res, open(path, "w"), indent=1)


if __name__ == "__main__":
    main()
