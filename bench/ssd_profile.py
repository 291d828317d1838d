"""Where a short SSD call spends its time: GPU kernels vs host launch overhead (issue 4: below 8K
tokens our forward+backward costs a flat ~2.3 ms, slower than SDPA at 4K and than fla's forward).

usage: python bench/ssd_profile.py --out DIR [--shapes 4x4096,4x32768] [--rotary 1x32768]

For each BATCHxL (bf16, 32 heads x 64, N 128, 1 group, chunk 256, with D, z, dt_bias, softplus):
- ``wall``: median of do_bench (CUDA events) of forward and of forward+backward;
- ``host``: seconds per call to enqueue 20 calls without synchronising (the host-side cost; when it
  exceeds the GPU time the call is launch-bound);
- ``kernels``: torch.profiler's CUDA time per kernel name over 5 calls (ms per call, count per call).
``fwdbwd_host_profile``: cProfile of 30 forward+backward calls (host functions by own time).
``--rotary`` times the rotary pre-pass alone (32 heads, N 128, R 64) forward and backward and reports
its output bytes per second; with SEQSSM_ROTARY_OLD=path/to/rotary_bc.py, that version too, side by
side, with the relative differences of all outputs and gradients (fp32 and bf16).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
from ssd import bench, call_of, fwd_bwd, map_kernels_package, ssd_inputs, ssd_triton_api  # noqa: E402


def host_seconds(fn, n=20) -> float:
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    t1 = time.perf_counter()
    torch.cuda.synchronize()
    return (t1 - t0) / n


def kernel_table(fn, n=5) -> list[dict]:
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
        for _ in range(n):
            fn()
        torch.cuda.synchronize()
    from torch.autograd import DeviceType

    rows = []
    for e in prof.key_averages():
        dev = getattr(e, "device_time_total", None) or getattr(e, "cuda_time_total", 0)
        # kernels only: an autograd Function's row repeats its kernels' time
        if dev and e.count and e.device_type == DeviceType.CUDA and e.key != "Activity Buffer Request":
            rows.append({"kernel": e.key[:90], "ms_per_call": dev / 1e3 / n, "count_per_call": e.count / n})
    return sorted(rows, key=lambda r: -r["ms_per_call"])


def host_profile(fn, n=30, top=30) -> str:
    """cProfile of ``n`` calls (host side): the functions with the most own time."""
    import cProfile
    import io
    import pstats

    torch.cuda.synchronize()
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(n):
        fn()
    prof.disable()
    torch.cuda.synchronize()
    s = io.StringIO()
    pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(top)
    return s.getvalue()


def profile_shape(batch: int, L: int) -> dict:
    t = ssd_inputs(batch, 32, 64, 128, L)
    fwd = call_of(ssd_triton_api, t)
    fb = fwd_bwd(call_of(ssd_triton_api, t), list(t.values()))
    fb()  # autotunes
    r = {"batch": batch, "L": L, "fwd_ms": bench(fwd), "fwdbwd_ms": bench(fb),
         "fwd_host_ms": host_seconds(fwd) * 1e3, "fwdbwd_host_ms": host_seconds(fb) * 1e3}
    r["fwd_kernels"] = kernel_table(fwd)
    r["fwdbwd_kernels"] = kernel_table(fb)
    r["fwdbwd_host_profile"] = host_profile(fb)
    r["fwd_kernel_sum_ms"] = sum(k["ms_per_call"] for k in r["fwd_kernels"])
    r["fwdbwd_kernel_sum_ms"] = sum(k["ms_per_call"] for k in r["fwdbwd_kernels"])
    return r


def rotary_variants() -> dict:
    """Ours, and the kernels file given by SEQSSM_ROTARY_OLD (an earlier version, for a side-by-side)."""
    import importlib.util

    from seqssm.kernels import rotary_bc

    out = {"ours": rotary_bc.rotary_prepass_triton}
    old = os.environ.get("SEQSSM_ROTARY_OLD")
    if old:
        spec = importlib.util.spec_from_file_location("seqssm.kernels.rotary_bc_old", old)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        spec.loader.exec_module(mod)
        out["old"] = mod.rotary_prepass_triton
    return out


def profile_rotary(batch: int, L: int, heads=32, n=128, R=64) -> dict:
    g = torch.Generator(device="cuda").manual_seed(0)
    r = {"batch": batch, "L": L, "heads": heads, "N": n, "R": R}
    for dtype in (torch.float32, torch.bfloat16):
        B, C = [torch.randn(batch, L, 1, n, device="cuda", generator=g).to(dtype) for _ in range(2)]
        delta = torch.rand(batch, L, heads, device="cuda", generator=g) * 0.1
        theta = torch.randn(batch, L, R, device="cuda", generator=g)
        w = [torch.randn(batch, L, heads, n, device="cuda", generator=g) for _ in range(2)]
        results = {}
        for name, fn in rotary_variants().items():
            leaves = [v.detach().clone().requires_grad_() for v in (B, C, delta, theta)]
            bo, co, last = fn(*leaves)
            loss = (bo.float() * w[0]).sum() + (co.float() * w[1]).sum() + last.float().sum()
            results[name] = [bo, co, last, *torch.autograd.grad(loss, leaves)]
            if dtype == torch.bfloat16:
                call = lambda fn=fn, leaves=leaves: fn(*leaves)
                fb = fwd_bwd(call, leaves)
                fb()
                r[f"{name}_fwd_ms"], r[f"{name}_fwdbwd_ms"] = bench(call), bench(fb)
                r[f"{name}_fwd_GBps_outputs"] = 2 * batch * L * heads * n * 2 / (r[f"{name}_fwd_ms"] * 1e-3) / 1e9
                r[f"{name}_fwdbwd_kernels"] = kernel_table(fb)
        if "old" in results:
            names = ["B'", "C'", "last", "dB", "dC", "ddelta", "dtheta"]
            r[f"rel_ours_vs_old_{str(dtype)[6:]}"] = {
                k: ((a.double() - b.double()).norm() / b.double().norm()).item()
                for k, a, b in zip(names, results["ours"], results["old"], strict=True)
            }
    return r


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=".")
    ap.add_argument("--shapes", default="4x4096")
    ap.add_argument("--rotary", default="")
    a = ap.parse_args()
    map_kernels_package()
    import triton

    res = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
           "argv": sys.argv, "date": time.strftime("%Y-%m-%d"), "ssd": [], "rotary": []}
    path = os.path.join(a.out, "ssd_profile.json")
    for key, shapes, fn in (("ssd", a.shapes, profile_shape), ("rotary", a.rotary, profile_rotary)):
        for shape in filter(None, shapes.split(",")):
            batch, L = (int(v) for v in shape.split("x"))
            r = fn(batch, L)
            res[key].append(r)
            print(key, json.dumps({k: v for k, v in r.items() if not k.endswith(("kernels", "profile"))}), flush=True)
            print(r.get("fwdbwd_host_profile", ""))
            for k in ("ours_fwdbwd_kernels", "old_fwdbwd_kernels"):
                for row in r.get(k, [])[:8]:
                    print(f"  {k[:-8]:12s} {row['ms_per_call']:8.4f} ms x{row['count_per_call']:.0f}  {row['kernel']}")
            for k in ("fwd_kernels", "fwdbwd_kernels"):
                for row in r.get(k, [])[:14]:
                    print(f"  {k[:-8]:7s} {row['ms_per_call']:8.4f} ms x{row['count_per_call']:.0f}  {row['kernel']}")
            json.dump(res, open(path, "w"), indent=1)


if __name__ == "__main__":
    main()
