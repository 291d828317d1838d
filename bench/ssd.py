"""Mamba-2 SSD on a GPU: our Triton kernels vs mamba_ssm's Triton SSD vs SDPA causal attention,
with the memory and matmul floors. Checks correctness on the GPU first.

usage: python bench/ssd.py --sdist .pkgs/mamba_ssm-2.3.2.post1 --out DIR [--shapes quick|full|huge]
       [--skip-check] [--stages 4x32768,1x131072]

Shapes: bf16, head_dim 64, 1 group, chunk 256, with D, z, dt_bias, softplus (the issue's anchor).
Timings are medians of triton.testing.do_bench (CUDA events) after warm-up; first use of a shape
autotunes (ours: warps/stages; mamba_ssm: its own configs), outside the timed region.
Adapted from ../shared/bench/anchors.py.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import sys
import time
import types

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checkout import map_kernels_package  # noqa: E402


def bench(fn, rep_ms=200):
    from triton.testing import do_bench

    return do_bench(fn, warmup=25, rep=rep_ms, return_mode="median")


def peak_gib(fn):
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**30


def copy_bandwidth():
    x = torch.empty(2**30, dtype=torch.uint8, device="cuda").random_()
    y = torch.empty_like(x)
    return 2 * x.numel() / (bench(lambda: y.copy_(x)) * 1e-3)


def matmul_rate():
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn_like(a)
    return 2 * 8192**3 / (bench(lambda: a @ b) * 1e-3)


def ssd_inputs(batch, heads, p, n, L, groups=1, dtype=torch.bfloat16, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    r = lambda *s: torch.randn(*s, device="cuda", generator=g)
    return dict(
        x=r(batch, L, heads, p).to(dtype), dt=(r(batch, L, heads) * 0.5 - 1).to(dtype),
        A=-torch.rand(heads, device="cuda", generator=g) - 0.1,
        B=r(batch, L, groups, n).to(dtype), C=r(batch, L, groups, n).to(dtype),
        D=r(heads), z=r(batch, L, heads, p).to(dtype), dt_bias=0.1 * r(heads),
    )


def call_of(fn, t, chunk=256):
    return lambda: fn(t["x"], t["dt"], t["A"], t["B"], t["C"], chunk, D=t["D"], z=t["z"],
                      dt_bias=t["dt_bias"], dt_softplus=True)


def fwd_bwd(call, tensors):
    leaves = [v.requires_grad_() for v in tensors if v.is_floating_point()]
    out = call()
    out = out[0] if isinstance(out, tuple) else out
    g = torch.randn_like(out)

    def run():
        o = call()
        o = o[0] if isinstance(o, tuple) else o
        torch.autograd.grad(o, leaves, g)

    return run


def rel(a, b):
    """‖a − b‖ / ‖b‖; complex tensors compared as complex (a real cast would drop the imaginary part)."""
    dtype = torch.complex128 if a.is_complex() or b.is_complex() else torch.float64
    a, b = a.to(dtype), b.to(dtype)
    return ((a - b).abs().norm() / b.abs().norm()).item()


def ssd_floors(batch, heads, p, n, L, groups, chunk, bw, fl):
    """Minimum bytes (inputs read once, outputs written once, bf16) over copy bandwidth, and the
    matmul FLOPs of the chunked algorithm (causal halves counted once) over the bf16 matmul rate."""
    d = heads * p
    fwd_bytes = 2 * batch * L * (3 * d + 2 * groups * n + heads)  # x, z, out, B, C, dt
    bwd_bytes = fwd_bytes + 2 * batch * L * (3 * d + 2 * groups * n + heads)  # + dout, dx, dz, dB, dC, ddt
    per_tok = groups * chunk * n + heads * (chunk * p + 4 * p * n)  # CBᵀ, (L∘CBᵀ)X, states, C·H
    fwd_flops = 2 * batch * L * per_tok
    return {
        "fwd_floor_ms": max(fwd_bytes / bw, fwd_flops / fl) * 1e3,
        "fwdbwd_floor_ms": max(bwd_bytes / bw, 3 * fwd_flops / fl) * 1e3,
        "fwd_bytes_ms": fwd_bytes / bw * 1e3, "fwd_flops_ms": fwd_flops / fl * 1e3,
    }


def gpu_checks(mamba_fn, res):
    from seqssm.kernels.ssd_combined import ssd_triton
    from seqssm.ops.reference.recurrence import ssd_naive

    out = {}
    # 1. vs the float64 recurrence, fp32 (tf32 dots) and bf16, with groups, seq_idx, initial state
    for dtype in (torch.float32, torch.bfloat16):
        b, L, H, P, G, N = 2, 300, 4, 64, 2, 64
        t = ssd_inputs(b, H, P, N, L, groups=G, dtype=torch.float64, seed=1)
        t = {k: v.to(dtype).double() for k, v in t.items()}
        init = torch.randn(b, H, P, N, device="cuda", dtype=torch.float64)
        seq = torch.cat([torch.zeros(b, 111), torch.ones(b, 189)], 1).int().cuda()
        ref = {k: v.clone().requires_grad_() for k, v in t.items()}
        ri = init.clone().requires_grad_()
        ro, rf = ssd_naive(ref["x"], ref["dt"], ref["A"], ref["B"], ref["C"], ref["D"], ref["z"], ref["dt_bias"],
                           True, ri, seq)
        ours = {k: v.to(dtype if k in ("x", "dt", "B", "C", "z") else torch.float32).requires_grad_()
                for k, v in t.items()}
        oi = init.float().requires_grad_()
        o, f, _ = ssd_triton(ours["x"], ours["dt"], ours["A"], ours["B"], ours["C"], 64, ours["D"], ours["z"],
                             ours["dt_bias"], oi, seq, True)
        go, gf = torch.randn_like(ro), torch.randn_like(rf)
        torch.autograd.backward([ro, rf], [go, gf])
        torch.autograd.backward([o, f], [go.to(dtype), gf.float()])
        e = {"out": rel(o, ro), "final": rel(f, rf), "dinit": rel(oi.grad, ri.grad)}
        e.update({"d" + k: rel(ours[k].grad, ref[k].grad) for k in t})
        out[f"vs_recurrence_{str(dtype)[6:]}"] = e
        print("check vs recurrence", dtype, json.dumps({k: f"{v:.2e}" for k, v in e.items()}), flush=True)
    # 2. vs mamba_ssm on the benchmark layout (bf16 inputs; both compared to our fp32 run)
    if mamba_fn is not None:
        t = ssd_inputs(2, 32, 64, 128, 4096, seed=2)
        t32 = {k: v.float() for k, v in t.items()}
        g = torch.randn(2, 4096, 32, 64, device="cuda")
        grads = {}
        for name, fn, tt in (("ours_fp32", ssd_triton_api, t32), ("ours", ssd_triton_api, t),
                             ("mamba_ssm", mamba_fn, t)):
            lv = {k: v.clone().requires_grad_() for k, v in tt.items()}
            o = call_of(fn, lv)()
            o = o[0] if isinstance(o, tuple) else o
            o.backward(g.to(o.dtype))
            grads[name] = {"out": o.detach(), **{"d" + k: v.grad for k, v in lv.items()}}
        e = {n: {k: rel(grads[n][k], grads["ours_fp32"][k]) for k in grads[n]} for n in ("ours", "mamba_ssm")}
        out["bf16_vs_ours_fp32"] = e
        print("check bf16 vs our fp32", json.dumps({n: {k: f"{v:.1e}" for k, v in d.items()} for n, d in e.items()}),
              flush=True)
    res["checks"] = out


def api(ssd_triton):
    """mamba_ssm's argument order (``call_of``) onto one of our ``ssd_triton`` functions (the current one, or
    an older version loaded by bench/ssd_chunks.py)."""
    return lambda x, dt, A, B, C, chunk, D=None, z=None, dt_bias=None, dt_softplus=False: ssd_triton(
        x, dt, A, B, C, chunk, D, z, dt_bias, None, None, dt_softplus)[0]


def ssd_triton_api(x, dt, A, B, C, chunk, D=None, z=None, dt_bias=None, dt_softplus=False):
    from seqssm.kernels.ssd_combined import ssd_triton

    return api(ssd_triton)(x, dt, A, B, C, chunk, D, z, dt_bias, dt_softplus)


def big_offsets_check(res, L=2**20, heads=64, n=128, with_bwd=False):
    """L x d_inner = 2^32 > 2^31: two identical halves packed with seq_idx must give identical
    outputs (and gradients), so any wrapped 32-bit offset in the second half shows."""
    from seqssm.kernels.ssd_combined import ssd_triton

    torch.cuda.empty_cache()
    h = L // 2
    t = ssd_inputs(1, heads, 64, n, h, seed=3)
    t = {k: (torch.cat([v, v], 1) if v.dim() > 1 else v) for k, v in t.items()}
    seq = torch.cat([torch.zeros(1, h), torch.ones(1, h)], 1).int().cuda()
    cu = torch.tensor([0, h, L], device="cuda", dtype=torch.int32)
    if with_bwd:
        for k in ("x", "B", "C", "z", "dt"):
            t[k].requires_grad_()
    torch.cuda.synchronize()
    t0 = time.time()
    o, _, vs = ssd_triton(t["x"], t["dt"], t["A"], t["B"], t["C"], 256, t["D"], t["z"], t["dt_bias"], None, seq,
                          True, cu_seqlens=cu, varlen_states=True)
    torch.cuda.synchronize()
    r = {"L": L, "d_inner": heads * 64, "fwd_s": time.time() - t0,
         "out_halves_max_abs_diff": (o[:, :h] - o[:, h:]).abs().max().item(),
         "states_rel_diff": rel(vs[1], vs[0]), "finite": bool(torch.isfinite(o).all())}
    if with_bwd:
        g = torch.randn(1, h, heads, 64, device="cuda", dtype=o.dtype)
        o.backward(torch.cat([g, g], 1))
        for k in ("x", "z", "B"):
            r[f"d{k}_halves_max_abs_diff"] = (t[k].grad[:, :h] - t[k].grad[:, h:]).abs().max().item()
    r["peak_GiB"] = torch.cuda.max_memory_allocated() / 2**30
    res["big_offsets"] = r
    print("big offsets", json.dumps(r), flush=True)


def stage_times(res, batch, heads, n, L):
    """Time each kernel of ours separately at one shape (where the time goes)."""
    from seqssm.kernels import ssd_combined as sc

    t = ssd_inputs(batch, heads, 64, n, L, seed=4)
    args = (t["x"], t["dt"], t["A"], t["B"], t["C"], 256, t["D"], t["z"], t["dt_bias"], None, None, True)
    out, final, saved = sc.ssd_fwd(*args, store_y=True)
    dtp, acs, cb, hprev, y = saved
    dout = torch.randn_like(out)
    st = {}
    st["cumsum"] = bench(lambda: sc.dt_cumsum_fwd(t["dt"], t["A"], 256, t["dt_bias"], True, (0.0, float("inf"))))
    st["cb"] = bench(lambda: sc.chunk_cb(t["C"], t["B"], 256))
    st["chunk_state"] = bench(lambda: sc.chunk_state(t["x"], t["B"], dtp, acs, None))
    S = sc.chunk_state(t["x"], t["B"], dtp, acs, None)
    st["state_passing"] = bench(lambda: sc.state_passing_fwd(S, acs, None, None, t["x"].dtype))
    st["chunk_scan"] = bench(lambda: sc.chunk_scan_fwd(t["x"], t["C"], cb, hprev, dtp, acs, None, t["D"], t["z"], True))
    dy, dz = sc.gate_bwd(dout, y, t["z"])
    st["b_gate"] = bench(lambda: sc.gate_bwd(dout, y, t["z"]))
    st["b_dhprev"] = bench(lambda: sc.chunk_state(dy, t["C"], dtp, acs, None, to_end=False))
    g_acs = torch.zeros_like(acs)
    dh = sc.chunk_state(dy, t["C"], dtp, acs, None, to_end=False)
    st["b_state_passing"] = bench(lambda: sc.state_passing_bwd(dh, final, acs, None, False, hprev, g_acs))
    G, _ = sc.state_passing_bwd(dh, final, acs, None, False, hprev, g_acs)
    st["b_dcb"] = bench(lambda: sc.chunk_cb_bwd(t["x"], dy, cb, dtp, acs, None, g_acs))
    dcb = sc.chunk_cb_bwd(t["x"], dy, cb, dtp, acs, None, g_acs)
    st["b_dx"] = bench(lambda: sc.chunk_scan_bwd_dx(t["x"], dy, t["B"], cb, G, dtp, acs, None, t["D"], g_acs))
    st["b_dbc"] = bench(lambda: sc.bc_bwd(t["x"], dy, t["B"], t["C"], dcb, G, hprev, dtp, acs, None, g_acs))
    gdt = torch.randn_like(dtp)
    st["b_cumsum"] = bench(lambda: sc.dt_cumsum_bwd(t["dt"], t["A"], t["dt_bias"], True, (0.0, float("inf")), dtp,
                                                    g_acs, gdt))
    res.setdefault("stages", []).append({"batch": batch, "heads": heads, "N": n, "L": L, "ms": st})
    print("stages", batch, heads, n, L, json.dumps({k: round(v, 3) for k, v in st.items()}), flush=True)


def time_sdpa(row, batch, dim, L):
    """Causal softmax attention at the model width d_model = d_inner / 2, head dim 64."""
    h = dim // 2 // 64
    q, k, v = [torch.randn(batch, h, L, 64, device="cuda", dtype=torch.bfloat16) for _ in range(3)]
    call = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True)
    row["sdpa_fwd_ms"] = bench(call)
    row["sdpa_fwdbwd_ms"] = bench(fwd_bwd(call, [q, k, v]))


def time_mamba1(row, scan_fn, batch, dim, L):
    """Our Triton Mamba-1 selective scan at the same d_inner (N=16, D, z, delta_bias, softplus)."""
    try:
        u = torch.randn(batch, dim, L, device="cuda", dtype=torch.bfloat16)
        dl = 0.5 * torch.randn_like(u)
        A = -torch.rand(dim, 16, device="cuda") - 0.1
        B, C = [torch.randn(batch, 16, L, device="cuda", dtype=torch.bfloat16) for _ in range(2)]
        D, z, bias = torch.randn(dim, device="cuda"), torch.randn_like(u), 0.1 * torch.randn(dim, device="cuda")
        call = lambda: scan_fn(u, dl, A, B, C, D, z, bias, True)
        row["our_mamba1_scan_fwd_ms"] = bench(call)
        row["our_mamba1_scan_fwdbwd_ms"] = bench(fwd_bwd(call, [u, dl, A, B, C, D, z, bias]))
    except Exception as e:
        row["scan_error"] = f"{type(e).__name__}: {str(e)[:200]}"


def time_fla(row, batch, heads, n, L):
    """flash-linear-attention's ``chunk_simple_gla`` on the same problem without D and z: q = C and k = B
    (one group, expanded to every head: fla takes per-head q, k), v = x·Δ, g = Δ·A (log decay per head
    and step), scale 1. Inputs are prepared outside the timed region (fla's best case); Δ = softplus(dt +
    dt_bias) as in ours. Its forward is compared with ours *with* D and z (the issue's target)."""
    from fla.ops.simple_gla import chunk_simple_gla

    t = ssd_inputs(batch, heads, 64, n, L)
    dt = F.softplus(t["dt"].float() + t["dt_bias"])
    q = t["C"].expand(batch, L, heads, n).contiguous()
    k = t["B"].expand(batch, L, heads, n).contiguous()
    v = (t["x"].float() * dt[..., None]).to(torch.bfloat16)
    g = (dt * t["A"]).contiguous()
    call = lambda: chunk_simple_gla(q, k, v, g, scale=1.0)[0]
    row["fla_fwd_ms"] = bench(call)
    row["fla_fwdbwd_ms"] = bench(fwd_bwd(call, [q, k, v, g]))


def render_md(res):
    """The results table in Markdown: medians in ms, ratios ours / mamba_ssm."""
    f = lambda v: "" if v is None else (f"{v:.3g}" if isinstance(v, float) else str(v))
    lines = [f"device: {res['device']}; torch {res['torch']}; triton {res['triton']}; {res['date']}",
             f"copy {res.get('copy_bytes_per_s', 0) / 1e12:.2f} TB/s, bf16 matmul "
             f"{res.get('bf16_flops', 0) / 1e12:.0f} TFLOP/s; flash-linear-attention: {res['fla']}", "",
             "| d_inner | L x batch | N | ours fwd | mamba_ssm fwd | ratio | ours fwd+bwd | mamba_ssm fwd+bwd | ratio "
             "| floor fwd / fwd+bwd | SDPA fwd / fwd+bwd | our Mamba-1 scan fwd / fwd+bwd "
             "| fla fwd / fwd+bwd (no D, z) |",
             "|" + " --- |" * 13]
    for r in res["rows"]:
        lines.append(" | ".join([
            "", str(r["d_inner"]), f"{r['L']} x {r['batch']}", str(r["N"]), f(r.get("ours_fwd_ms")),
            f(r.get("mamba_ssm_fwd_ms")), f(r.get("ratio_fwd")), f(r.get("ours_fwdbwd_ms")),
            f(r.get("mamba_ssm_fwdbwd_ms")), f(r.get("ratio_fwdbwd")),
            f"{f(r.get('fwd_floor_ms'))} / {f(r.get('fwdbwd_floor_ms'))}",
            f"{f(r.get('sdpa_fwd_ms'))} / {f(r.get('sdpa_fwdbwd_ms'))}",
            f"{f(r.get('our_mamba1_scan_fwd_ms'))} / {f(r.get('our_mamba1_scan_fwdbwd_ms'))}",
            f"{f(r.get('fla_fwd_ms'))} / {f(r.get('fla_fwdbwd_ms'))}"
            + (f" ({r['fla_error'][:70]})" if "fla_error" in r else ""),
            ""]).strip())
    return "\n".join(lines) + "\n"


SHAPES = {
    "quick": [(2048, 2048, 4), (2048, 8192, 4), (2048, 32768, 4)],
    "full": [(2048, 2048, 4), (2048, 8192, 4), (2048, 32768, 4), (4096, 8192, 4), (4096, 32768, 2),
             (2048, 131072, 1), (4096, 131072, 1)],
    "wide": [(4096, 8192, 4)],
    "long": [(2048, 131072, 1), (4096, 131072, 1)],
    "huge": [(2048, 1048576, 1)],
    "mid": [(2048, 4096, 4)],
    "cross": [(2048, 4096, 4), (2048, 8192, 4), (2048, 32768, 4)],  # against SDPA and fla (issue 4's crossover)
    "lose": [(2048, 131072, 1), (2048, 1048576, 1)],  # where the 2026-11-23 run lost to mamba_ssm
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sdist", default=None)
    ap.add_argument("--out", default=".")
    ap.add_argument("--shapes", default="quick")
    ap.add_argument("--ns", default="64,128")
    ap.add_argument("--skip-check", action="store_true")
    ap.add_argument("--stages", default="", help="BATCHxL,...: time each of our kernels alone at these shapes "
                    "(d_inner 2048, N 128), e.g. 4x32768,1x131072")
    ap.add_argument("--big", default="", help="fwd or fwdbwd: the 1M x 4096 (64-bit offsets) check")
    ap.add_argument("--no-mamba", action="store_true")
    a = ap.parse_args()
    map_kernels_package()
    os.makedirs(a.out, exist_ok=True)
    import triton

    res = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
           "argv": sys.argv, "date": time.strftime("%Y-%m-%d"), "rows": []}
    res["fla"] = "present" if importlib.util.find_spec("fla") else "not installed on the GPU machine"
    mamba_fn = None
    if a.sdist and not a.no_mamba:
        sys.path.insert(0, a.sdist)
        # a bare package object: mamba_ssm/__init__.py imports its CUDA extension, which we don't build
        pkg = types.ModuleType("mamba_ssm")
        pkg.__path__ = [os.path.join(a.sdist, "mamba_ssm")]
        sys.modules.setdefault("mamba_ssm", pkg)
        try:
            from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined as mamba_fn
        except Exception as e:  # keep going with ours
            res["mamba_error"] = f"{type(e).__name__}: {e}"
    try:
        from seqssm.ops.selective_scan import selective_scan_fn as scan_fn
    except Exception as e:
        scan_fn = None
        res["scan_error"] = f"{type(e).__name__}: {e}"
    save = lambda: json.dump(res, open(os.path.join(a.out, "ssd.json"), "w"), indent=1)
    if not a.skip_check:
        gpu_checks(mamba_fn, res)
        save()
    bw, fl = copy_bandwidth(), matmul_rate()
    res["copy_bytes_per_s"], res["bf16_flops"] = bw, fl
    print(f"copy {bw / 1e12:.2f} TB/s  bf16 matmul {fl / 1e12:.0f} TFLOP/s", flush=True)
    for shape in filter(None, a.stages.split(",")):
        batch, L = (int(v) for v in shape.split("x"))
        stage_times(res, batch, 32, 128, L)
        save()
    ours_fn = ssd_triton_api
    for dim, L, batch in [s for name in a.shapes.split(",") for s in SHAPES[name]]:
        heads = dim // 64
        for n in [int(v) for v in a.ns.split(",")]:
            row = {"d_inner": dim, "L": L, "batch": batch, "N": n, **ssd_floors(batch, heads, 64, n, L, 1, 256, bw, fl)}
            for name, fn in (("ours", ours_fn), ("mamba_ssm", mamba_fn)):
                if fn is None:
                    continue
                try:
                    t = ssd_inputs(batch, heads, 64, n, L)
                    row[f"{name}_fwd_ms"] = bench(call_of(fn, t))
                    fb = fwd_bwd(call_of(fn, t), list(t.values()))
                    row[f"{name}_fwdbwd_ms"] = bench(fb)
                    row[f"{name}_fwdbwd_GiB"] = peak_gib(fb)
                    del t, fb
                except Exception as e:
                    row[f"{name}_error"] = f"{type(e).__name__}: {str(e)[:300]}"
                print(name, {k: v for k, v in row.items() if k.startswith(name)}, flush=True)  # autotuning is slow
                torch.cuda.empty_cache()
            if n == 128 and L <= 32768:
                time_sdpa(row, batch, dim, L)
            if res["fla"] == "present":
                try:
                    time_fla(row, batch, heads, n, L)
                except Exception as e:
                    row["fla_error"] = f"{type(e).__name__}: {str(e)[:300]}"
                torch.cuda.empty_cache()
            if n == 128 and scan_fn is not None and L <= 131072:
                time_mamba1(row, scan_fn, batch, dim, L)
            for k in ("fwd", "fwdbwd"):
                if f"ours_{k}_ms" in row and f"mamba_ssm_{k}_ms" in row:
                    row[f"ratio_{k}"] = row[f"ours_{k}_ms"] / row[f"mamba_ssm_{k}_ms"]
            res["rows"].append(row)
            print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
            save()
            torch.cuda.empty_cache()
    if a.big:
        try:
            big_offsets_check(res, with_bwd=a.big == "fwdbwd")
        except Exception as e:
            res["big_offsets_error"] = f"{type(e).__name__}: {str(e)[:300]}"
            print("big offsets error", res["big_offsets_error"], flush=True)
        save()
    open(os.path.join(a.out, "ssd.md"), "w").write(render_md(res))
    print(render_md(res), flush=True)
    print("done", flush=True)


if __name__ == "__main__":
    main()
