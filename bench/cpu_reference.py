"""CPU benchmark of the pure-PyTorch reference primitives against per-time-step Python loops.

    PYTHONPATH=. python bench/cpu_reference.py --threads 1 2 --out bench/results/cpu_reference_DATE

Selective scan at u (1, 256, 4096), N=16, fp32: the chunked ``selective_scan_ref`` against two
per-time-step loops, (a) mamba_ssm's ``selective_scan_ref`` style (exp(ΔA) and ΔBu precomputed for
the whole sequence with einsum, then a loop over time; the baseline issue #2 names) and (b) the lean
loop of ``recurrence.selective_scan_naive``, forward (no autograd); and the chunked scan's forward+
backward (autograd through the loops takes minutes: not timed). Also SSD
(``ssd_ref`` against ``ssd_naive``) at 256 channels (8 heads x 32), N=16, L=4096. The methods are
timed in turns, round after round, so that a slower stretch of a shared machine hits all of them;
reported are the median and minimum over rounds and the median over rounds of the per-round ratios.
``--compare FILE`` adds another implementation of ``selective_scan_ref`` (e.g. an older commit's,
from ``git show``). The relative error of the fp32 chunked scan against the float64 per-step
recurrence at the same shape is reported too.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import statistics
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


def load_scan(path: str):
    """``selective_scan_ref`` from a Python file (another version of the chunked reference)."""
    spec = importlib.util.spec_from_file_location("compared_selective_scan", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.selective_scan_ref


def forward(fn, *args):
    def run():
        with torch.no_grad():
            fn(*args)

    return run


def forward_backward(fn, *args):
    leaves = [t.clone().requires_grad_() for t in args]

    def run():
        out = fn(*leaves)
        (out[0] if isinstance(out, tuple) else out).sum().backward()

    return run


def rounds(fns: dict, n: int, clock) -> dict[str, list[float]]:
    """Times (ms) of every function, one call each per round, after one warm-up call each."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(n):
        for name, fn in fns.items():
            t = clock()
            fn()
            times[name].append((clock() - t) * 1e3)
    return times


def summarise(times: dict[str, list[float]], ratios: dict[str, tuple[str, str]]) -> dict[str, float]:
    r = {}
    for name, ts in times.items():
        r[f"{name}_median_ms"], r[f"{name}_min_ms"] = statistics.median(ts), min(ts)
    for label, (slow, fast) in ratios.items():
        r[label] = statistics.median(s / f for s, f in zip(times[slow], times[fast], strict=True))
    return r


def inputs(seed: int = 0):
    torch.manual_seed(seed)
    b, d, L, N = 1, 256, 4096, 16
    u = torch.randn(b, d, L)
    delta = torch.nn.functional.softplus(torch.randn(b, d, L) - 4)  # dt ~ 1e-3..0.1
    A = -torch.arange(1, N + 1, dtype=torch.float32).repeat(d, 1)  # S4D-Real
    B, C = torch.randn(b, N, L), torch.randn(b, N, L)
    return u, delta, A, B, C


def ssd_inputs(L: int = 4096, heads: int = 8, p: int = 32, N: int = 16):
    x = torch.randn(1, L, heads, p)
    dt = torch.nn.functional.softplus(torch.randn(1, L, heads) - 4)
    A = -torch.rand(heads) * 4 - 0.5
    return x, dt, A, torch.randn(1, L, 1, N), torch.randn(1, L, 1, N)


def groups(compared) -> list[tuple[dict, dict, bool]]:
    """(functions timed in turns, ratios reported as (slower, faster), full number of rounds?)."""
    scan, ssd = inputs(), ssd_inputs()
    ssd64 = lambda *a: ssd_ref(*a, 64)
    fwd = {"scan_chunked_fwd": forward(selective_scan_ref, *scan),
           "scan_einsum_loop_fwd": forward(einsum_loop, *scan),
           "scan_lean_loop_fwd": forward(selective_scan_naive, *scan)}
    fwd_ratios = {"speedup_vs_einsum_loop": ("scan_einsum_loop_fwd", "scan_chunked_fwd"),
                  "speedup_vs_lean_loop": ("scan_lean_loop_fwd", "scan_chunked_fwd")}
    bwd = {"scan_chunked_fwd_bwd": forward_backward(selective_scan_ref, *scan)}  # the loops: minutes
    bwd_ratios = {}
    if compared is not None:
        fwd["scan_compared_fwd"] = forward(compared, *scan)
        fwd_ratios["speedup_vs_compared"] = ("scan_compared_fwd", "scan_chunked_fwd")
        bwd["scan_compared_fwd_bwd"] = forward_backward(compared, *scan)
        bwd_ratios["fwd_bwd_speedup_vs_compared"] = ("scan_compared_fwd_bwd", "scan_chunked_fwd_bwd")
    return [(fwd, fwd_ratios, True), (bwd, bwd_ratios, False),
            ({"ssd_chunked_fwd": forward(ssd64, *ssd), "ssd_naive_fwd": forward(ssd_naive, *ssd)},
             {"ssd_speedup": ("ssd_naive_fwd", "ssd_chunked_fwd")}, False),
            ({"ssd_chunked_fwd_bwd": forward_backward(ssd64, *ssd)}, {}, False)]


def bench(args, compared) -> dict[str, float]:
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    r = {}
    for fns, ratios, full in groups(compared):
        r.update(summarise(rounds(fns, args.rounds if full else max(1, args.rounds // 2), clock), ratios))
    return r


def accuracy() -> dict[str, float]:
    """Relative errors (norm-wise and largest element-wise) of the fp32 chunked scan against the
    float64 per-step recurrence, same inputs."""
    scan = inputs()
    with torch.no_grad():
        out, h = selective_scan_ref(*scan)
        ref, ref_h = selective_scan_naive(*(t.double() for t in scan))
    rel = lambda a, b: ((a.double() - b).norm() / b.norm()).item()
    return {"scan_fp32_rel_err_out": rel(out, ref), "scan_fp32_rel_err_state": rel(h, ref_h),
            "scan_fp32_max_abs_err_over_max_abs_out": ((out.double() - ref).abs().max() / ref.abs().max()).item()}


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def write_markdown(path: str, result: dict) -> None:
    meta = result["meta"]
    lines = [f"# CPU reference benchmark ({meta['date']})", "",
             f"- command: `{meta['command']}`",
             f"- torch {meta['torch']}, CPU {meta['cpu']} ({meta['cpu_capability']}), {meta['cores']} cores, "
             f"{meta['clock']} clock, load average at start {meta['load_average_at_start']}",
             f"- selective scan u {meta['shape']['scan_u']}, N={meta['shape']['N']}, fp32; SSD x "
             f"{meta['shape']['ssd_x']}, chunk 64; {meta['rounds']} rounds (fwd+bwd and SSD: half as many); "
             "times in ms; speedups are medians of per-round ratios", ""]
    for threads, r in result["threads"].items():
        lines += [f"## {threads} thread(s)", "", "| quantity | value |", "| --- | --- |"]
        lines += [f"| {k} | {v:.2f} |" for k, v in r.items()]
        lines.append("")
    lines += ["## Accuracy (fp32 chunked vs float64 per-step recurrence, same inputs)", "",
              "| quantity | value |", "| --- | --- |"]
    lines += [f"| {k} | {v:.2e} |" for k, v in result["accuracy"].items()]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--compare", default=None, help="a .py file with another selective_scan_ref to time too")
    ap.add_argument("--out", default=None, help="path prefix for .json and .md")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="cpu: process CPU time (meaningful with --threads 1 on a shared machine)")
    args = ap.parse_args()
    compared = load_scan(args.compare) if args.compare else None
    meta = {
        "date": datetime.date.today().isoformat(),
        "torch": torch.__version__,
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "clock": args.clock,
        "rounds": args.rounds,
        "load_average_at_start": list(os.getloadavg()),
        "shape": {"scan_u": [1, 256, 4096], "N": 16, "ssd_x": [1, 4096, 8, 32], "dtype": "float32"},
        "command": f"PYTHONPATH=. python bench/cpu_reference.py --threads {' '.join(map(str, args.threads))} "
        f"--rounds {args.rounds} --clock {args.clock}" + (f" --compare {args.compare}" if args.compare else "")
        + (f" --out {args.out}" if args.out else ""),
    }
    result = {"meta": meta, "threads": {}, "accuracy": accuracy()}
    for threads in args.threads:
        torch.set_num_threads(threads)
        result["threads"][str(threads)] = {k: round(v, 3) for k, v in bench(args, compared).items()}
    print(json.dumps(result, indent=2))
    if args.out:
        with open(args.out + ".json", "w") as f:
            json.dump(result, f, indent=2)
        write_markdown(args.out + ".md", result)


if __name__ == "__main__":
    main()
