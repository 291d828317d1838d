"""What the complex-valued variants cost on a GPU (issue 11): the complex Mamba-1 scan vs the real scan,
and the rotary SSD vs the plain SSD, at L = 8K and 32K, forward and forward+backward, side by side in
one run; then the same for whole blocks. Checks both complex paths against the reference first.

usage: python bench/complex_overhead.py --out DIR [--lengths 8192 32768] [--block-lengths 8192]

Shapes (bf16 inputs, fp32 state): scan d_inner 2048, N 16 (complex: 16 complex states = 32 reals; the
real scan is timed at N 16 and N 32); SSD 32 heads x 64, N 128, 1 group, chunk 256, rope_fraction 0.5
and 1.0. The rotary pre-pass (angles, rotation of B and C per head) is timed alone, eager and compiled
by torch.compile (inductor fuses it into one or two Triton kernels), to measure what fusing it buys.
Timings: medians of triton.testing.do_bench (CUDA events).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ssd import bench, fwd_bwd, peak_gib, rel  # noqa: E402

from seqssm.io import write_json, write_text  # noqa: E402
from seqssm.modules.mamba import Mamba  # noqa: E402
from seqssm.modules.mamba2 import Mamba2  # noqa: E402
from seqssm.ops import mamba_chunk_scan_combined, mamba_chunk_scan_rotary, selective_scan_fn  # noqa: E402
from seqssm.ops.reference.ssd import step_sizes  # noqa: E402
from seqssm.ops.rotary_ssd import rotate_bc  # noqa: E402

START = time.time()


def log(*a) -> None:
    print(f"[{time.time() - START:6.1f}s]", *a, flush=True)


DEV = os.environ.get("SEQSSM_BENCH_DEVICE", "cuda")  # "cpu": smoke test of the checks (interpreter)


def scan_inputs(batch, d, n, L, complex_a, seed=0):
    g = torch.Generator(device=DEV).manual_seed(seed)
    r = lambda *s: torch.randn(*s, device=DEV, generator=g)  # noqa: E731
    A = -torch.rand(d, n, device=DEV, generator=g) - 0.5
    if complex_a:
        A = torch.complex(A, torch.pi * torch.arange(n, device=DEV).float().expand(d, n))
    width = 2 * L if complex_a else L  # mamba_ssm's packing: (real, imag) interleaved along time
    return dict(
        u=r(batch, d, L).bfloat16(), delta=(r(batch, d, L) * 0.5 - 2).bfloat16(), A=A,
        B=r(batch, n, width).bfloat16(), C=r(batch, n, width).bfloat16(), D=r(d), z=r(batch, d, L).bfloat16(),
        delta_bias=0.1 * r(d),
    )


def scan_call(t, backend="triton"):
    return lambda: selective_scan_fn(t["u"], t["delta"], t["A"], t["B"], t["C"], t["D"], t["z"], t["delta_bias"],
                                     True, backend=backend)


def ssd_inputs(batch, heads, p, n, L, R, seed=0, dtype=torch.bfloat16):
    g = torch.Generator(device=DEV).manual_seed(seed)
    r = lambda *s: torch.randn(*s, device=DEV, generator=g)  # noqa: E731
    return dict(
        x=r(batch, L, heads, p).to(dtype), dt=(r(batch, L, heads) * 0.5 - 1).to(dtype),
        A=-torch.rand(heads, device=DEV, generator=g) - 0.1, B=r(batch, L, 1, n).to(dtype),
        C=r(batch, L, 1, n).to(dtype), theta=r(batch, L, R).to(dtype), D=r(heads), z=r(batch, L, heads, p).to(dtype),
        dt_bias=0.1 * r(heads),
    )


def ssd_call(t, rotary, backend="triton", chunk=256):
    if rotary:
        return lambda: mamba_chunk_scan_rotary(t["x"], t["dt"], t["A"], t["B"], t["C"], t["theta"], chunk, D=t["D"],
                                               z=t["z"], dt_bias=t["dt_bias"], dt_softplus=True, backend=backend)
    return lambda: mamba_chunk_scan_combined(t["x"], t["dt"], t["A"], t["B"], t["C"], chunk, D=t["D"], z=t["z"],
                                             dt_bias=t["dt_bias"], dt_softplus=True, backend=backend)


def checks() -> dict:
    """Triton vs reference on the GPU (fp32 inputs), forward and all gradients."""
    out = {}
    for name, make, call in (
        ("complex_scan", lambda: scan_inputs(2, 64, 8, 500, True, seed=1), scan_call),
        ("rotary_ssd", lambda: ssd_inputs(2, 4, 64, 64, 500, 16, seed=1), lambda t, b: ssd_call(t, True, b)),
    ):
        t = {k: (v.float() if v.dtype == torch.bfloat16 else v) for k, v in make().items()}
        res = {}
        for backend in ("reference", "triton"):
            lv = {k: v.clone().requires_grad_() for k, v in t.items()}
            o = call(lv, backend)()
            o.backward(torch.linspace(-1, 1, o.numel(), device=DEV).view_as(o))
            res[backend] = {"out": o.detach(), **{"d" + k: v.grad for k, v in lv.items()}}
        out[name] = {k: rel(res["triton"][k], res["reference"][k]) for k in res["reference"]}
        log("check", name, json.dumps({k: f"{v:.1e}" for k, v in out[name].items()}))
    return out


def time_pair(call, tensors) -> dict:
    log("timing ...")
    for v in tensors.values():
        v.requires_grad_(False)
    fwd = bench(call)
    run = fwd_bwd(call, list(tensors.values()))
    return {"fwd_ms": fwd, "fwdbwd_ms": bench(run), "peak_gib": peak_gib(run)}


def kernel_rows(lengths, emit) -> None:
    for L in lengths:
        for label, n, cplx in (("real N16", 16, False), ("real N32", 32, False), ("complex N16", 16, True)):
            t = scan_inputs(1, 2048, n, L, cplx)
            emit({"op": "selective_scan", "variant": label, "L": L, **time_pair(scan_call(t), t)})
        for label, R in (("ssd", 0), ("rotary 0.5", 32), ("rotary 1.0", 64)):
            t = ssd_inputs(1, 32, 64, 128, L, max(R, 1))
            if not R:
                t.pop("theta")
            emit({"op": "ssd", "variant": label, "L": L, **time_pair(ssd_call(t, bool(R)), t)})
        t = ssd_inputs(1, 32, 64, 128, L, 32)
        delta = step_sizes(t["dt"], t["dt_bias"], True)
        compiled = torch.compile(rotate_bc)
        for label, fn in (("pre-pass eager", rotate_bc), ("pre-pass compiled", compiled)):
            try:
                call = lambda fn=fn, t=t, delta=delta: fn(t["B"], t["C"], delta, t["theta"])  # noqa: E731
                emit({"op": "rotary pre-pass", "variant": label, "L": L, "fwd_ms": bench(call)})
            except Exception as e:  # noqa: BLE001 - inductor may be unavailable; record why
                emit({"op": "rotary pre-pass", "variant": label, "L": L, "error": repr(e)[:300]})


def block_rows(lengths, emit) -> None:
    for L in lengths:
        for label, block in (
            ("Mamba real", Mamba(1024, 16)),
            ("Mamba complex", Mamba(1024, 16, complex=True)),
            ("Mamba2", Mamba2(1024, 128, headdim=64)),
            ("Mamba2 rotary 0.5", Mamba2(1024, 128, headdim=64, rope_fraction=0.5)),
        ):
            block = block.to(DEV, torch.bfloat16)
            x = torch.randn(1, L, 1024, device=DEV, dtype=torch.bfloat16, requires_grad=True)
            g = torch.randn_like(x)

            def run(block=block, x=x, g=g):
                torch.autograd.grad(block(x), [x, *block.parameters()], g)

            with torch.no_grad():
                fwd = bench(lambda block=block, x=x: block(x))
            emit({"op": "block d_model 1024", "variant": label, "L": L, "fwd_ms": fwd, "fwdbwd_ms": bench(run),
                  "peak_gib": peak_gib(run), "params": sum(p.numel() for p in block.parameters())})


def markdown(res: dict) -> str:
    lines = [f"# Complex / rotary overhead ({res['device']}, {res['date']})", "", f"`{res['command']}`", "",
             f"torch {res['torch']}, triton {res['triton']}. Ratios are against the first row of each group "
             "(real scan N16, plain SSD, real block).", "",
             "| op | variant | L | fwd ms | fwd+bwd ms | fwd ratio | fwd+bwd ratio | peak GiB |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    base = {}
    for r in res["rows"]:
        if "error" in r:
            lines.append(f"| {r['op']} | {r['variant']} | {r['L']} | {r['error']} | | | | |")
            continue
        key = (r["op"], r["L"], r["variant"].split()[0] if r["op"].startswith("block") else "")
        base.setdefault(key, r)
        b = base[key]
        fb = r.get("fwdbwd_ms")
        fb_cells = ("", "") if fb is None else (f"{fb:.3f}", f"{fb / b['fwdbwd_ms']:.2f}")
        lines.append(
            f"| {r['op']} | {r['variant']} | {r['L']} | {r['fwd_ms']:.3f} | {fb_cells[0]} | "
            f"{r['fwd_ms'] / b['fwd_ms']:.2f} | {fb_cells[1]} | {r.get('peak_gib', 0):.2f} |"
        )
    lines += ["", "Checks (Triton vs reference on this GPU, fp32 inputs, relative error):", ""]
    for name, e in res["checks"].items():
        lines.append(f"- {name}: " + ", ".join(f"{k} {v:.1e}" for k, v in e.items()))
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--lengths", type=int, nargs="+", default=[8192, 32768])
    ap.add_argument("--block-lengths", type=int, nargs="+", default=[8192])
    args = ap.parse_args()
    import triton

    res = {"device": torch.cuda.get_device_name(), "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__,
           "triton": triton.__version__, "command": "python " + " ".join(sys.argv)}
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"complex_overhead_{res['date']}")
    res["checks"], res["rows"] = checks(), []

    def emit(row: dict) -> None:  # the JSON is rewritten after every row: a run stopped at its limit keeps them
        res["rows"].append(row)
        log(json.dumps(row))
        write_json(stem + ".json", res)

    kernel_rows(args.lengths, emit)
    block_rows(args.block_lengths, emit)
    write_text(stem + ".md", markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
