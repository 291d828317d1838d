"""CPU benchmark of the pure-PyTorch reference primitives against per-time-step Python loops.

    PYTHONPATH=. python bench/cpu_reference.py --threads 2 --out bench/results/cpu_reference_DATE

Selective scan at u (1, 256, 4096), N=16, fp32, forward: the chunked ``selective_scan_ref`` against
(a) the lean per-step loop of ``recurrence.selective_scan_naive`` and (b) a mamba_ssm-style loop
(precompute exp(ΔA) and ΔBu for the whole sequence with einsum, then loop over time). Also SSD
(``ssd_ref`` against ``ssd_naive``) at 256 channels (8 heads x 32), N=16, L=4096, and
forward+backward times. Reports the minimum over repeats.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time

import torch

from seqssm.ops.reference.recurrence import selective_scan_naive, ssd_naive
from seqssm.ops.reference.selective_scan import selective_scan_ref
from seqssm.ops.reference.ssd import ssd_ref


def einsum_loop(u, delta, A, B, C):
    """mamba_ssm's selective_scan_ref style: full-length exp(ΔA) and ΔBu first, then a loop."""
    deltaA = torch.exp(torch.einsum("bdl,dn->bdln", delta, A))
    deltaB_u = torch.einsum("bdl,bnl,bdl->bdln", delta, B, u)
    x = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    ys = []
    for i in range(u.shape[2]):
        x = deltaA[:, :, i] * x + deltaB_u[:, :, i]
        ys.append(torch.einsum("bdn,bn->bd", x, C[:, :, i]))
    return torch.stack(ys, dim=2)


CLOCK = time.perf_counter


def timeit(fn, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        t = CLOCK()
        fn()
        best = min(best, CLOCK() - t)
    return best * 1e3


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=None, help="path prefix for .json and .md")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="cpu: process CPU time (meaningful with --threads 1 on a shared machine)")
    args = ap.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    b, d, L, N = 1, 256, 4096, 16
    u = torch.randn(b, d, L)
    delta = torch.nn.functional.softplus(torch.randn(b, d, L) - 4)  # dt ~ 1e-3..0.1
    A = -torch.arange(1, N + 1, dtype=torch.float32).repeat(d, 1)  # S4D-Real
    B, C = torch.randn(b, N, L), torch.randn(b, N, L)
    r = {}
    with torch.no_grad():
        r["scan_chunked_fwd_ms"] = timeit(lambda: selective_scan_ref(u, delta, A, B, C), args.repeats)
        r["scan_lean_loop_fwd_ms"] = timeit(lambda: selective_scan_naive(u, delta, A, B, C), args.repeats)
        r["scan_einsum_loop_fwd_ms"] = timeit(lambda: einsum_loop(u, delta, A, B, C), max(1, args.repeats // 2))
    r["speedup_vs_lean_loop"] = r["scan_lean_loop_fwd_ms"] / r["scan_chunked_fwd_ms"]
    r["speedup_vs_einsum_loop"] = r["scan_einsum_loop_fwd_ms"] / r["scan_chunked_fwd_ms"]

    leaves = [t.clone().requires_grad_() for t in (u, delta, A, B, C)]

    def fwd_bwd():
        out, _ = selective_scan_ref(*leaves)
        out.sum().backward()

    r["scan_chunked_fwd_bwd_ms"] = timeit(fwd_bwd, max(1, args.repeats // 2))

    heads, p = 8, 32
    x = torch.randn(b, L, heads, p)
    dt = torch.nn.functional.softplus(torch.randn(b, L, heads) - 4)
    Ah = -torch.rand(heads) * 4 - 0.5
    Bs, Cs = torch.randn(b, L, 1, N), torch.randn(b, L, 1, N)
    with torch.no_grad():
        r["ssd_chunked_fwd_ms"] = timeit(lambda: ssd_ref(x, dt, Ah, Bs, Cs, 64), args.repeats)
        r["ssd_naive_fwd_ms"] = timeit(lambda: ssd_naive(x, dt, Ah, Bs, Cs), max(1, args.repeats // 2))
    r["ssd_speedup"] = r["ssd_naive_fwd_ms"] / r["ssd_chunked_fwd_ms"]
    sl = [t.clone().requires_grad_() for t in (x, dt, Ah, Bs, Cs)]

    def ssd_fwd_bwd():
        out, _, _ = ssd_ref(sl[0], sl[1], sl[2], sl[3], sl[4], 64)
        out.sum().backward()

    r["ssd_chunked_fwd_bwd_ms"] = timeit(ssd_fwd_bwd, max(1, args.repeats // 2))

    meta = {
        "date": datetime.date.today().isoformat(),
        "torch": torch.__version__,
        "cpu": cpu_name(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": args.threads,
        "clock": args.clock,
        "load_average_at_start": list(os.getloadavg()),
        "shape": {"scan_u": [b, d, L], "N": N, "ssd_x": [b, L, heads, p], "chunk": 64, "dtype": "float32"},
        "command": f"PYTHONPATH=. python bench/cpu_reference.py --threads {args.threads} "
        f"--repeats {args.repeats} --clock {args.clock}" + (f" --out {args.out}" if args.out else ""),
    }
    result = {"meta": meta, "results": {k: round(v, 3) for k, v in r.items()}}
    print(json.dumps(result, indent=2))
    if args.out:
        with open(args.out + ".json", "w") as f:
            json.dump(result, f, indent=2)
        rows = "\n".join(f"| {k} | {v:.2f} |" for k, v in r.items())
        with open(args.out + ".md", "w") as f:
            f.write(f"# CPU reference benchmark ({meta['date']})\n\n"
                    f"- command: `{meta['command']}`\n- torch {meta['torch']}, CPU {meta['cpu']} "
                    f"({meta['cpu_capability']}), {args.threads} threads, {args.clock} clock, "
                    f"load average at start {meta['load_average_at_start']}\n"
                    f"- selective scan u {meta['shape']['scan_u']}, N={N}, fp32; SSD x {meta['shape']['ssd_x']}, "
                    f"N={N}, chunk 64; times are the minimum over repeats, in ms\n\n"
                    f"| quantity | value |\n| --- | --- |\n{rows}\n")


if __name__ == "__main__":
    main()
