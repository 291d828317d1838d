"""Selective scan on a GPU: seqssm's Triton kernels beside mamba_ssm's CUDA ``selective_scan_fn``,
with the memory floor, in one run. Optionally the whole Mamba block against mamba_ssm's ``Mamba``.

    python bench/scan.py --sdist .pkgs/mamba_ssm-2.3.2.post1 --out DIR [--sweep] [--seq-bwd-sweep] [--block]

Steps: build mamba_ssm's selective-scan extension for this GPU only (torch cpp_extension, ~150 s on
16 cores); measure device-to-device copy bandwidth; check our kernels on the GPU (against the
chunked reference in float64, and against mamba_ssm's output and gradients in bf16); optionally
time kernel configurations at two shapes; then time forward and forward+backward (medians of
triton.testing.do_bench) and the peak memory of forward+backward at every shape of the issue. Our
forward+backward is timed twice: with the time-sequential backward (v2, the default) and with the
chunked backward (v1: ``selective_scan.SEQ_BACKWARD = False`` during the forward).
Writes DIR/scan.json (rows as they come) and DIR/scan.md.

Floors (bf16 inputs and outputs, N = d_state): forward moves 2·b·L·(4·dim + 2·N) bytes (read u, Δ, z,
B, C; write out); forward+backward 2·b·L·(11·dim + 6·N) (the backward reads u, Δ, z, B, C, g_out
and writes g_u, g_Δ, g_z, g_B, g_C). Floor = bytes / measured copy bandwidth.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import types

import torch

T0 = time.time()
DEV = "cuda" if torch.cuda.is_available() else "cpu"  # cpu: a smoke run under TRITON_INTERPRET=1


def log(*a):
    print(f"[{time.time() - T0:6.1f}s]", *a, flush=True)


def build_selective_scan(sdist: str) -> tuple[float, int | None]:
    """Compile mamba_ssm's csrc/selective_scan for this GPU's arch (sm_90 on an H100)."""
    from torch.utils.cpp_extension import load

    src = os.path.join(sdist, "csrc", "selective_scan")
    names = ["selective_scan.cpp"] + [f"selective_scan_fwd_{t}.cu" for t in ("fp32", "fp16", "bf16")] + [
        f"selective_scan_bwd_{t}_{k}.cu" for t in ("fp32", "fp16", "bf16") for k in ("real", "complex")]
    major, minor = torch.cuda.get_device_capability()
    flags = ["-O3", "-std=c++17", "-U__CUDA_NO_HALF_OPERATORS__", "-U__CUDA_NO_HALF_CONVERSIONS__",
             "-U__CUDA_NO_BFLOAT16_OPERATORS__", "-U__CUDA_NO_BFLOAT16_CONVERSIONS__",
             "-U__CUDA_NO_BFLOAT162_OPERATORS__", "-U__CUDA_NO_BFLOAT162_CONVERSIONS__",
             "--expt-relaxed-constexpr", "--expt-extended-lambda", "--use_fast_math", "-lineinfo",
             "-gencode", f"arch=compute_{major}{minor},code=sm_{major}{minor}"]
    build_dir = os.environ.get("SS_BUILD", "/tmp/ss_build")
    os.makedirs(build_dir, exist_ok=True)
    t = time.time()
    mod = load("selective_scan_cuda", [os.path.join(src, n) for n in names],
               extra_cflags=["-O3", "-std=c++17"], extra_cuda_cflags=flags, extra_include_paths=[src],
               build_directory=build_dir, verbose=False)
    sys.modules["selective_scan_cuda"] = mod
    so = [f for f in os.listdir(build_dir) if f.endswith(".so")]
    return time.time() - t, (os.path.getsize(os.path.join(build_dir, so[0])) if so else None)


def bench(fn, rep_ms: int = 200) -> float:
    if DEV == "cpu":  # smoke run: one timed call
        fn()
        t = time.perf_counter()
        fn()
        return (time.perf_counter() - t) * 1e3
    from triton.testing import do_bench

    return do_bench(fn, warmup=25, rep=rep_ms, return_mode="median")


def peak_gib(fn) -> float:
    if DEV == "cpu":
        return float("nan")
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**30


def copy_bandwidth() -> float:
    x = torch.empty(2**30 if DEV == "cuda" else 2**20, dtype=torch.uint8, device=DEV)
    x.random_()
    y = torch.empty_like(x)
    ms = bench(lambda: y.copy_(x))
    return 2 * x.numel() / (ms * 1e-3)


def scan_inputs(batch, dim, n, L, dtype=torch.bfloat16, seed=0):
    g = torch.Generator(device=DEV).manual_seed(seed)
    r = lambda *s, dt=dtype: torch.randn(*s, device=DEV, dtype=dt, generator=g)
    u = r(batch, dim, L)
    delta = 0.5 * r(batch, dim, L) - 2.0  # softplus(Δ + bias) around 0.1, as after dt init
    A = -(torch.rand(dim, n, device=DEV, generator=g) * 15 + 1)  # S4D-real-like magnitudes
    B, C = r(batch, n, L), r(batch, n, L)
    D = r(dim, dt=torch.float32)
    z = r(batch, dim, L)
    bias = 0.1 * r(dim, dt=torch.float32)
    return [u, delta, A, B, C, D, z, bias]


def fwd_bwd(call, tensors):
    leaves = [t.requires_grad_() for t in tensors]
    o = call()
    g = torch.randn_like(o)

    def run():
        torch.autograd.grad(call(), leaves, g)

    return run


def v1_backward(kern, call):
    """``call`` with the chunked (v1) backward: the forward records which backward its graph uses."""

    def run():
        kern.SEQ_BACKWARD = False
        try:
            return call()
        finally:
            kern.SEQ_BACKWARD = True

    return run


def rel(a, b) -> float:
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm()).item()


def check_gpu(ours, kern, ss) -> dict:
    """Our Triton scan on the GPU against the float64 chunked reference (fp32 inputs, real and
    complex; real with the v2 and the v1 backward) and against mamba_ssm's CUDA kernel (bf16, all
    gradients)."""
    from seqssm.ops.reference.selective_scan import selective_scan_ref

    res = {}
    for name, cplx in (("real_fp32", False), ("real_fp32_v1bwd", False), ("complex_fp32", True)):
        kern.SEQ_BACKWARD = name != "real_fp32_v1bwd"
        b, d, n, L = (2, 64, 16, 1031) if DEV == "cuda" else (1, 4, 4, 37)
        t = scan_inputs(b, d, n, L, torch.float32, seed=1)
        if cplx:
            t[2] = torch.complex(t[2] / 10, torch.randn_like(t[2]))
            t[3], t[4] = torch.randn(b, n, 2 * L, device=DEV), torch.randn(b, n, 2 * L, device=DEV)
        h0 = torch.randn(b, d, n, device=DEV, dtype=torch.complex64 if cplx else torch.float32)
        ins = [x.clone().requires_grad_() for x in t] + [h0.clone().requires_grad_()]
        out, last = ours.selective_scan_fn(*ins[:8], True, True, initial_state=ins[8], backend="triton")
        ref_in = [(x.detach().to(torch.complex128 if x.is_complex() else torch.float64)).requires_grad_()
                  for x in ins]
        ref, ref_last = selective_scan_ref(*ref_in[:8], True, ref_in[8])
        go = torch.randn_like(ref)
        g = torch.autograd.grad(out, ins, go.float())
        gr = torch.autograd.grad(ref, ref_in, go)
        res[name] = {"out": rel(out, ref), "last": rel(torch.view_as_real(last) if cplx else last,
                                                       torch.view_as_real(ref_last) if cplx else ref_last)}
        for k, a, c in zip(["u", "delta", "A", "B", "C", "D", "z", "bias", "h0"], g, gr, strict=True):
            a, c = (torch.view_as_real(a), torch.view_as_real(c)) if a.is_complex() else (a, c)
            res[name]["d" + k] = rel(a, c)
    kern.SEQ_BACKWARD = True
    if ss is not None:
        t = scan_inputs(2, 512, 16, 4099, seed=2)
        a = [x.clone().requires_grad_() for x in t]
        b_ = [x.clone().requires_grad_() for x in t]
        o1 = ours.selective_scan_fn(*a, True, backend="triton")
        o2 = ss(*b_, True)
        go = torch.randn_like(o1)
        g1 = torch.autograd.grad(o1, a, go)
        g2 = torch.autograd.grad(o2, b_, go)
        res["bf16_vs_mamba_ssm"] = {"out": rel(o1, o2)}
        for k, x, y in zip(["u", "delta", "A", "B", "C", "D", "z", "bias"], g1, g2, strict=True):
            res["bf16_vs_mamba_ssm"]["d" + k] = rel(x, y)
    return res


def sweep(ours, kern, shapes) -> list:
    """Time kernel configurations (BLOCK_D, BLOCK_L, num_warps) for forward and backward."""
    out = []
    # candidates that fit in registers without spilling (ptxas -v for sm_90a; see bench/NOTES.md)
    fwd_cfgs = [(4, 32, 4), (2, 64, 4), (4, 64, 8), (2, 32, 2), (8, 32, 8), (4, 64, 4), (2, 128, 8)]
    bwd_cfgs = [(4, 32, 4), (2, 64, 4), (4, 64, 8), (2, 32, 2), (8, 32, 8)]
    saved = dict(kern.CONFIG)
    for batch, dim, L in shapes:
        t = scan_inputs(batch, dim, 16, L)
        for cfg in fwd_cfgs:
            kern.CONFIG["fwd"] = cfg
            ms = bench(lambda t=t: ours.selective_scan_fn(*t, True, backend="triton"))
            out.append({"shape": [batch, dim, L], "kind": "fwd", "cfg": cfg, "ms": ms})
            log("sweep", out[-1])
        kern.CONFIG["fwd"] = saved["fwd"]
        for cfg in bwd_cfgs:
            kern.CONFIG["bwd"] = cfg
            ms = bench(fwd_bwd(lambda t=t: ours.selective_scan_fn(*t, True, backend="triton"), t))
            out.append({"shape": [batch, dim, L], "kind": "fwdbwd", "cfg": cfg, "ms": ms})
            log("sweep", out[-1])
        kern.CONFIG.update(saved)
    return out


def legacy_plan(plan):
    """The time split before 2026-12-04: segments until programs x warps reach 2,112 warps (about two
    waves of the forward at 4 blocks per SM, four of the backward), whatever the resident slots: ``plan``
    (selective_scan_seq.plan) given the slots that rule implies."""
    import triton

    from seqssm.kernels.selective_scan_common import pow2_divisor

    def legacy(batch, dim, L, groups, num_warps, cfg, slots):
        programs = triton.cdiv(dim, pow2_divisor(dim // groups, 32 * num_warps)) * batch
        return plan(batch, dim, L, groups, num_warps, cfg, triton.cdiv(2112, programs * num_warps) * programs)

    return legacy


def plan_sweep(ours, seq, bwd_mod, shapes) -> list:
    """Forward and forward+backward under each time split (legacy: 2,112 warps; waves k: the resident
    slots x k, i.e. k full waves) and, at two waves, with the other way of summing ḡB/ḡC
    (reduce-scatter or tl.sum's all-reduce). Nothing is kept: the table uses the defaults."""
    out, saved, saved_plan = [], dict(seq.CONFIG), seq.plan
    default = bwd_mod.SCATTER_SUMS
    variants = [("legacy", None, default), ("waves1", 1, default), ("waves2", 2, default), ("waves4", 4, default),
                ("waves2_scatter" if not default else "waves2_tlsum", 2, not default)]
    for batch, dim, L in shapes:
        t = scan_inputs(batch, dim, 16, L)
        call = lambda t=t: ours.selective_scan_fn(*t, True, backend="triton")
        for name, k, scatter in variants:
            seq.plan = legacy_plan(saved_plan) if k is None else saved_plan
            seq.CONFIG["waves"] = k or 1
            bwd_mod.SCATTER_SUMS = scatter
            r = {"shape": [batch, dim, L], "variant": name}
            if scatter == default:
                r["fwd_ms"] = bench(call)
            r["fwdbwd_ms"] = bench(fwd_bwd(call, t))
            out.append(r)
            log("plan sweep", r)
        seq.plan, bwd_mod.SCATTER_SUMS = saved_plan, default
        seq.CONFIG.update(saved)
        del t
        torch.cuda.empty_cache()
    return out


def seq_bwd_sweep(ours, seq, shapes) -> list:
    """Time forward+backward for the time-sequential backward's (bwd_T, CK) choices (bwd_T steps held in
    registers; CK, the checkpoint interval, sets the scratch per program: CK/bwd_T states); keeps the
    fastest (summed relative time) in seq.CONFIG."""
    out, saved = [], dict(seq.CONFIG)
    cfgs = [(2, 32), (2, 64), (4, 32), (4, 64)]
    for batch, dim, L in shapes:
        t = scan_inputs(batch, dim, 16, L)
        for bt, ck in cfgs:
            seq.CONFIG.update(bwd_T=bt, CK=ck)
            ms = bench(fwd_bwd(lambda t=t: ours.selective_scan_fn(*t, True, backend="triton"), t))
            out.append({"shape": [batch, dim, L], "kind": "fwdbwd_seq", "cfg": [bt, ck], "ms": ms})
            log("seq bwd sweep", out[-1])
    seq.CONFIG.update(saved)
    best = {tuple(r["shape"]): min(q["ms"] for q in out if q["shape"] == r["shape"]) for r in out}
    score = {}
    for r in out:
        score[tuple(r["cfg"])] = score.get(tuple(r["cfg"]), 0.0) + r["ms"] / best[tuple(r["shape"])]
    bt, ck = min(score, key=score.get)
    seq.CONFIG.update(bwd_T=bt, CK=ck)
    return out


def table_shapes(quick: bool):
    rows = [(4, 2048, 2048), (4, 2048, 8192), (4, 2048, 32768), (1, 2048, 131072), (1, 2048, 1048576),
            (1, 2048, 8192), (8, 2048, 8192),
            (4, 4096, 2048), (4, 4096, 8192), (4, 4096, 32768), (1, 4096, 131072)]
    if DEV == "cpu":
        return [(1, 8, 64)]
    return rows[:3] if quick else rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sdist", required=True)
    ap.add_argument("--out", default=".")
    ap.add_argument("--sweep", action="store_true")
    ap.add_argument("--block", action="store_true", help="also time the whole Mamba block")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--plan-sweep", action="store_true", help="time the time splits and ḡB/ḡC sums first")
    ap.add_argument("--rows", default="", help="BATCHxDIMxL,... instead of the issue's table")
    ap.add_argument("--seq-bwd-sweep", action="store_true", help="tune the time-sequential backward first")
    ap.add_argument("--no-build", action="store_true", help="skip mamba_ssm (no anchor)")
    ap.add_argument("--budget-s", type=float, default=430.0, help="stop starting new rows after this")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    import triton

    dev_name = torch.cuda.get_device_name() if DEV == "cuda" else "cpu (interpreter smoke run)"
    res = {"device": dev_name, "torch": torch.__version__, "triton": triton.__version__,
           "cuda": torch.version.cuda, "command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%d"),
           "rows": []}
    path = os.path.join(a.out, "scan.json")

    def save():
        json.dump(res, open(path, "w"), indent=1)

    try:
        if a.no_build:
            raise RuntimeError("--no-build")
        res["build_s"], res["so_bytes"] = build_selective_scan(a.sdist)
    except Exception as e:  # keep going without the anchor
        res["build_error"] = f"{type(e).__name__}: {str(e)[-800:]}"
        sys.modules.setdefault("selective_scan_cuda", types.ModuleType("selective_scan_cuda"))
    log("build", res.get("build_s"), res.get("build_error", ""))
    sys.path.insert(0, a.sdist)
    ss = None
    if "build_error" not in res:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as ss
    ours = importlib.import_module("seqssm.ops")
    kern = importlib.import_module("seqssm.kernels.selective_scan")
    bw = copy_bandwidth()
    res["copy_bytes_per_s"] = bw
    log(f"copy {bw / 1e12:.2f} TB/s")
    res["check"] = check_gpu(ours, kern, ss)
    log("check", json.dumps(res["check"]))
    save()
    if a.sweep and DEV == "cuda":
        res["sweep"] = sweep(ours, kern, [(4, 2048, 8192), (1, 2048, 131072)])
        for kind in ("fwd", "fwdbwd"):  # best total time relative to each shape's best
            rows = [r for r in res["sweep"] if r["kind"] == kind]
            best = {tuple(r["shape"]): min(q["ms"] for q in rows if q["shape"] == r["shape"]) for r in rows}
            score = {}
            for r in rows:
                score[tuple(r["cfg"])] = score.get(tuple(r["cfg"]), 0.0) + r["ms"] / best[tuple(r["shape"])]
            kern.CONFIG["fwd" if kind == "fwd" else "bwd"] = min(score, key=score.get)
        log("chosen config", kern.CONFIG)
        save()
    seq = importlib.import_module("seqssm.kernels.selective_scan_seq")
    if a.plan_sweep and DEV == "cuda":
        bwd_mod = importlib.import_module("seqssm.kernels.selective_scan_bwd_seq")
        res["plan_sweep"] = plan_sweep(ours, seq, bwd_mod, [(4, 2048, 2048), (4, 2048, 8192), (4, 2048, 32768),
                                                             (1, 2048, 131072)])
        save()
    if a.seq_bwd_sweep and DEV == "cuda":
        res["seq_bwd_sweep"] = seq_bwd_sweep(ours, seq, [(4, 2048, 8192), (1, 2048, 131072)])
        log("chosen seq config", seq.CONFIG)
        save()
    res["config"] = dict(kern.CONFIG)
    res["seq_config"] = dict(seq.CONFIG)
    n = 16
    rows = [tuple(int(v) for v in r.split("x")) for r in a.rows.split(",")] if a.rows else table_shapes(a.quick)
    for batch, dim, L in rows:
        if time.time() - T0 > a.budget_s:
            log("budget reached, skipping", batch, dim, L)
            continue
        row = {"batch": batch, "dim": dim, "L": L, "N": n}
        row["floor_fwd_ms"] = 2 * batch * L * (4 * dim + 2 * n) / bw * 1e3
        row["floor_fwdbwd_ms"] = 2 * batch * L * (11 * dim + 6 * n) / bw * 1e3
        t = scan_inputs(batch, dim, n, L)
        impls = [("ours", lambda t=t: ours.selective_scan_fn(*t, True, backend="triton"))]
        if ss is not None:
            impls.append(("mamba_ssm", lambda t=t: ss(*t, True)))
        impls.append(("ours_v1bwd", v1_backward(kern, impls[0][1])))
        for name, call in impls:
            rep = 200 if L * batch < 2**20 else 600
            if name != "ours_v1bwd":  # same forward as "ours"
                row[f"{name}_fwd_ms"] = bench(call, rep)
            fb = fwd_bwd(call, t)
            row[f"{name}_fwdbwd_ms"] = bench(fb, rep)
            row[f"{name}_fwdbwd_GiB"] = peak_gib(fb)
        if ss is not None:
            row["ratio_fwd"] = row["ours_fwd_ms"] / row["mamba_ssm_fwd_ms"]
            row["ratio_fwdbwd"] = row["ours_fwdbwd_ms"] / row["mamba_ssm_fwdbwd_ms"]
            row["ratio_fwdbwd_v1bwd"] = row["ours_v1bwd_fwdbwd_ms"] / row["mamba_ssm_fwdbwd_ms"]
        row["ours_fwd_pct_floor"] = 100 * row["floor_fwd_ms"] / row["ours_fwd_ms"]
        res["rows"].append(row)
        log(json.dumps(row))
        save()
        del t, impls
        torch.cuda.empty_cache()
    if a.block and DEV == "cuda":
        res["block"] = block_rows(ours, a.sdist, T0 + a.budget_s + 30)
    save()
    write_md(res, os.path.join(a.out, "scan.md"))
    print(open(os.path.join(a.out, "scan.md")).read())


def block_rows(ours, sdist, deadline) -> list:
    """Whole Mamba block forward+backward, bf16: seqssm's Mamba (backend auto = Triton) against
    mamba_ssm's Mamba with its CUDA scan; causal-conv1d is not installed, so mamba_ssm takes its
    slow path (torch conv1d + selective_scan_fn)."""
    rows = []
    try:
        from mamba_ssm.modules.mamba_simple import Mamba as TheirMamba

        from seqssm.modules.mamba import Mamba as OurMamba
    except Exception as e:
        return [{"error": f"{type(e).__name__}: {e}"}]
    for d_model, L, batch in ((1024, 2048, 4), (1024, 8192, 4), (1024, 32768, 1), (2048, 2048, 4),
                              (2048, 8192, 2), (2048, 32768, 1)):
        if time.time() > deadline:
            break
        row = {"d_model": d_model, "L": L, "batch": batch}
        x = torch.randn(batch, L, d_model, device=DEV, dtype=torch.bfloat16)
        for name, cls in (("ours", OurMamba), ("mamba_ssm", TheirMamba)):
            try:
                m = cls(d_model).to("cuda", torch.bfloat16)
                xi = x.clone().requires_grad_()
                g = torch.randn_like(x)
                run = lambda m=m, xi=xi, g=g: torch.autograd.grad(m(xi), [xi, *m.parameters()], g)
                row[f"{name}_fwdbwd_ms"] = bench(run)
                row[f"{name}_fwd_ms"] = bench(lambda m=m, xi=xi: m(xi))
                row[f"{name}_GiB"] = peak_gib(run)
                del m
            except Exception as e:
                row[f"{name}_error"] = f"{type(e).__name__}: {str(e)[:300]}"
        if "ours_fwdbwd_ms" in row and "mamba_ssm_fwdbwd_ms" in row:
            row["ratio_fwdbwd"] = row["ours_fwdbwd_ms"] / row["mamba_ssm_fwdbwd_ms"]
        rows.append(row)
        log(json.dumps(row))
        torch.cuda.empty_cache()
    return rows


def write_md(res: dict, path: str) -> None:
    L = [f"# Selective scan, {res['device']} ({res['date']})", "",
         f"torch {res['torch']}, triton {res['triton']}, CUDA {res['cuda']}; copy bandwidth "
         f"{res['copy_bytes_per_s'] / 1e12:.2f} TB/s; command: `{res['command']}`; kernel config {res.get('config')}; "
         f"time-sequential forward config {res.get('seq_config')}",
         "", "bf16, N = 16, with D, z, delta_bias, softplus. Medians in ms; ratio = ours / mamba_ssm; "
         "% floor = memory floor / our forward time.", "",
         "| batch | dim | L | ours fwd | mamba_ssm fwd | ratio | floor fwd | % floor | ours fwd+bwd | "
         "mamba_ssm fwd+bwd | ratio | floor fwd+bwd | ours fwd+bwd, v1 bwd | ratio, v1 bwd | ours GiB | "
         "v1 bwd GiB | mamba_ssm GiB |",
         "|" + " --- |" * 17]
    f = lambda r, k, p=2: f"{r[k]:.{p}f}" if k in r else "-"
    for r in res["rows"]:
        L.append(f"| {r['batch']} | {r['dim']} | {r['L']} | {f(r, 'ours_fwd_ms', 3)} | {f(r, 'mamba_ssm_fwd_ms', 3)} | "
                 f"{f(r, 'ratio_fwd')} | {f(r, 'floor_fwd_ms', 3)} | {f(r, 'ours_fwd_pct_floor', 0)} | "
                 f"{f(r, 'ours_fwdbwd_ms', 3)} | {f(r, 'mamba_ssm_fwdbwd_ms', 3)} | {f(r, 'ratio_fwdbwd')} | "
                 f"{f(r, 'floor_fwdbwd_ms', 3)} | {f(r, 'ours_v1bwd_fwdbwd_ms', 3)} | {f(r, 'ratio_fwdbwd_v1bwd')} | "
                 f"{f(r, 'ours_fwdbwd_GiB')} | {f(r, 'ours_v1bwd_fwdbwd_GiB')} | {f(r, 'mamba_ssm_fwdbwd_GiB')} |")
    if res.get("block"):
        L += ["", "## Mamba block forward+backward (bf16; mamba_ssm without causal-conv1d: torch conv1d path)",
              "", "| d_model | L | batch | ours ms | mamba_ssm ms | ratio | ours GiB | mamba_ssm GiB |",
              "|" + " --- |" * 8]
        for r in res["block"]:
            if "d_model" in r:
                L.append(f"| {r['d_model']} | {r['L']} | {r['batch']} | {f(r, 'ours_fwdbwd_ms', 3)} | "
                         f"{f(r, 'mamba_ssm_fwdbwd_ms', 3)} | {f(r, 'ratio_fwdbwd')} | {f(r, 'ours_GiB')} | "
                         f"{f(r, 'mamba_ssm_GiB')} |")
    if res.get("plan_sweep"):
        L += ["", "## Time split and ḡB/ḡC sums (ms; legacy = 2,112 warps, wavesK = K full waves of resident "
              "programs, _tlsum = tl.sum all-reduce instead of the reduce-scatter)", "",
              "| batch x dim x L | variant | fwd | fwd+bwd |", "| --- | --- | --- | --- |"]
        for r in res["plan_sweep"]:
            L.append(f"| {'x'.join(map(str, r['shape']))} | {r['variant']} | {f(r, 'fwd_ms', 3)} | "
                     f"{f(r, 'fwdbwd_ms', 3)} |")
    L += ["", "GPU check (relative errors):", "", "```", json.dumps(res.get("check"), indent=1), "```"]
    open(path, "w").write("\n".join(L) + "\n")


if __name__ == "__main__":
    main()
