"""SSD chunk length and kernel variants on a GPU, side by side in one run (issues 4 and 11).

The chunk length Q changes only the order of the SSD arithmetic, not its result: the intra-chunk
(quadratic) work per token grows with Q, the state work per token does not, and the stored states
(batch, L/Q, heads, P, N) shrink with Q. This times our SSD at several Q against mamba_ssm's Triton SSD
(at its default 256 and, with ``--mamba-chunks``, others), fla's ``chunk_simple_gla`` forward (Q 64,
no D and z) and causal SDPA; with ``--old DIR``, a previous version of ours (``DIR`` holds its
ssd_combined.py and the kernel modules that changed since) at the same Q; and the rotary SSD vs the
plain one per Q. ``--kernel-tables L``: torch.profiler's time per kernel of the plain and the rotary
SSD forward+backward at batch 1, chunk 256.

usage: python bench/ssd_chunks.py --out DIR [--sdist .pkgs/mamba_ssm-2.3.2.post1] [--shapes 4x4096,4x32768]
       [--chunks 64,128,256] [--mamba-chunks 256] [--old .anchors/ssd_old[,DIR2]] [--patch LABEL:MODULE.NAME=INT]
       [--rotary 8192,32768] [--graphs]
       [--kernel-tables 32768]

bf16, 32 heads x 64 (d_inner 2048), N 128 unless a shape says, 1 group, D, z, dt_bias, softplus.
Medians of do_bench (CUDA events); ``--graphs`` adds the same calls replayed from a CUDA graph (GPU
time without host launch cost).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import sys
import time
import types

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checkout import map_kernels_package  # noqa: E402

map_kernels_package()
from complex_overhead import ssd_call, time_pair  # noqa: E402
from complex_overhead import ssd_inputs as rotary_inputs  # noqa: E402
from ssd import api, call_of, fwd_bwd, gpu_checks, rel, ssd_inputs, time_fla, time_sdpa  # noqa: E402
from ssd_profile import kernel_table  # noqa: E402

from seqssm.io import write_json, write_text  # noqa: E402

START = time.time()


def log(*a) -> None:
    print(f"[{time.time() - START:6.1f}s]", *a, flush=True)


def load_old(folder: str) -> types.ModuleType:
    """Our earlier SSD from ``folder``: its ssd_combined.py, with the kernel modules it imports taken from
    ``folder`` where present there (``ssd_bmm.py``, ``ssd_chunk_scan.py``, ...), else from seqssm.kernels."""
    names = sorted(f[:-3] for f in os.listdir(folder) if f.endswith(".py"))
    order = [n for n in names if n != "ssd_combined"] + ["ssd_combined"]
    mod = None
    for name in order:
        src = open(os.path.join(folder, name + ".py")).read()
        for other in names:
            src = src.replace(f"from seqssm.kernels.{other} import", f"from ssd_old_{other} import")
        mod = types.ModuleType(f"ssd_old_{name}")
        mod.__file__ = os.path.join(folder, name + ".py")  # triton.jit reads the source of its functions
        sys.modules[mod.__name__] = mod
        exec(compile(src, mod.__file__, "exec"), mod.__dict__)
    return mod


@contextlib.contextmanager
def patched(patch: dict[str, int]):
    """Module constants of seqssm.kernels set for the duration (``{"ssd_chunk_scan.FWD_COLS": 16}``)."""
    saved = {}
    for key, value in patch.items():
        mod_name, attr = key.rsplit(".", 1)
        mod = importlib.import_module(f"seqssm.kernels.{mod_name}")
        saved[(mod, attr)] = getattr(mod, attr)
        setattr(mod, attr, value)
    try:
        yield
    finally:
        for (mod, attr), value in saved.items():
            setattr(mod, attr, value)


def graph_ms(fn) -> float | None:
    """``fn`` replayed from a CUDA graph (its kernels already tuned): GPU time without host launch cost."""
    from triton.testing import do_bench_cudagraph

    try:
        return do_bench_cudagraph(fn, rep=200, return_mode="median")
    except Exception as e:  # noqa: BLE001 - record, keep going
        log("graph capture failed:", repr(e)[:200])
        return None


def timed(call, tensors, graphs: bool) -> dict:
    """complex_overhead's forward, forward+backward and peak memory, plus the CUDA-graph replays."""
    r = time_pair(call, tensors)
    if graphs:
        for v in tensors.values():
            v.requires_grad_(False)
            v.grad = None
        r["fwd_graph_ms"] = graph_ms(call)
        r["fwdbwd_graph_ms"] = graph_ms(fwd_bwd(call, list(tensors.values())))
    return r


def new_vs_old(old, res, name: str) -> None:
    """The new forward against the old on the benchmark layout (bf16), output and every gradient."""
    from seqssm.kernels.ssd_combined import ssd_triton

    t = ssd_inputs(2, 32, 64, 128, 4096, seed=5)
    g = torch.randn(2, 4096, 32, 64, device="cuda", dtype=torch.bfloat16)
    got = {}
    for name, fn in (("new", ssd_triton), ("old", old.ssd_triton)):
        lv = {k: v.clone().requires_grad_() for k, v in t.items()}
        o = call_of(api(fn), lv)()
        o.backward(g)
        got[name] = {"out": o.detach(), **{"d" + k: v.grad for k, v in lv.items()}}
    res["checks"][f"new_vs_{name}_bf16"] = e = {k: rel(got["new"][k], got["old"][k]) for k in got["new"]}
    log(f"check new vs {name} (bf16)", json.dumps({k: f"{v:.1e}" for k, v in e.items()}))


class AttentionBlock(torch.nn.Module):
    """The attention counterpart of a Mamba2 block at the same d_model: fused QKV projection, causal SDPA,
    output projection (no norm, like the Mamba2 mixer timed here)."""

    def __init__(self, d_model: int, head_dim: int = 64):
        super().__init__()
        self.heads = d_model // head_dim
        self.qkv = torch.nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = torch.nn.Linear(d_model, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, L, d = x.shape
        q, k, v = self.qkv(x).view(b, L, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out(y.transpose(1, 2).reshape(b, L, d))


def block_rows(spec: str, graphs: bool, emit, kernels: bool = False, old_conv: str | None = None,
               patches: dict[str, dict[str, int]] | None = None) -> None:
    """A Mamba2 block (d_model 1024: d_inner 2048 = 32 heads x 64, N 128, 1 group) and a Mamba block (d_model
    1024, N 16) against an attention block of the same d_model, forward+backward through the block's
    parameters and input, wall and graph time; with ``old_conv`` (an earlier kernels/causal_conv1d.py) the
    Mamba blocks again with that conv; with ``patches`` (``--patch``) the Mamba2 block again under each."""
    from ssd import bench, peak_gib

    from seqssm.kernels import causal_conv1d
    from seqssm.modules.mamba import Mamba
    from seqssm.modules.mamba2 import Mamba2

    convs = [("", causal_conv1d.causal_conv1d_triton)]
    if old_conv:
        spec_ = importlib.util.spec_from_file_location("old_causal_conv1d", old_conv)
        mod = importlib.util.module_from_spec(spec_)
        sys.modules[spec_.name] = mod
        spec_.loader.exec_module(mod)
        convs.append((" (old conv)", mod.causal_conv1d_triton))
    batch, L = (int(v) for v in spec.split("x"))
    mamba2 = lambda: Mamba2(1024, 128, headdim=64)  # noqa: E731
    blocks = [(f"Mamba2 block d_model 1024{tag}", mamba2, fn, {}) for tag, fn in convs]
    blocks += [(f"Mamba2 block d_model 1024 {name}", mamba2, convs[0][1], p) for name, p in (patches or {}).items()]
    blocks += [(f"Mamba block d_model 1024 N 16{tag}", lambda: Mamba(1024, 16), fn, {}) for tag, fn in convs]
    blocks.append(("attention block d_model 1024 (16 heads x 64)", lambda: AttentionBlock(1024), convs[0][1], {}))
    new_conv = causal_conv1d.causal_conv1d_triton
    for label, make, conv, patch in blocks:
        causal_conv1d.causal_conv1d_triton = conv  # the ops layer imports it at every call
        try:
            with patched(patch):
                block = make().to("cuda", torch.bfloat16)
                x = torch.randn(batch, L, 1024, device="cuda", dtype=torch.bfloat16, requires_grad=True)
                g = torch.randn_like(x)
                params = [x, *block.parameters()]

                def run(block=block, x=x, g=g, params=params):
                    torch.autograd.grad(block(x), params, g)

                with torch.no_grad():
                    row = {"shape": spec, "variant": label, "fwd_ms": bench(lambda block=block, x=x: block(x))}
                row.update(fwdbwd_ms=bench(run), peak_gib=peak_gib(run),
                           params=sum(p.numel() for p in block.parameters()))
                if graphs:
                    row["fwdbwd_graph_ms"] = graph_ms(run)
                if kernels:
                    row["kernels"] = kernel_table(run)
                    for r in row["kernels"][:12]:
                        log(f"  {r['ms_per_call']:.3f} ms x{r['count_per_call']:.0f}  {r['kernel']}")
                emit(row)
                del block, x, g, params
        finally:
            causal_conv1d.causal_conv1d_triton = new_conv
        torch.cuda.empty_cache()


def markdown(res: dict) -> str:
    f = lambda v: "" if v is None else f"{v:.3f}"  # noqa: E731
    lines = [f"# SSD chunk lengths and variants ({res['device']}, {res['date']})", "", f"`{res['command']}`", "",
             f"torch {res['torch']}, triton {res['triton']}; bf16, 32 heads x 64, N 128, 1 group, D, z, dt_bias, "
             "softplus (fla: no D, z). Ratio: fwd+bwd against mamba_ssm at chunk 256 for the plain rows, against "
             "our plain SSD at the same chunk and length for the rotary rows.", "",
             "| shape | variant | fwd ms | fwd+bwd ms | ratio | peak GiB | fwd graph ms | fwd+bwd graph ms |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in res["rows"]:
        if "error" in r:
            lines.append(f"| {r['shape']} | {r['variant']} | {r['error'][:120]} | | | | | |")
            continue
        lines.append(f"| {r['shape']} | {r['variant']} | {f(r.get('fwd_ms'))} | {f(r.get('fwdbwd_ms'))} | "
                     f"{f(r.get('ratio'))} | {f(r.get('peak_gib'))} | {f(r.get('fwd_graph_ms'))} | "
                     f"{f(r.get('fwdbwd_graph_ms'))} |")
    lines += ["", "Checks (relative error):", ""]
    for name, e in res["checks"].items():
        lines.append(f"- {name}: {json.dumps(e)}")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--sdist", default=None)
    ap.add_argument("--shapes", default="4x4096,4x32768", help="BATCHxL[xN],... (N default 128)")
    ap.add_argument("--chunks", default="64,128,256")
    ap.add_argument("--mamba-chunks", default="256")
    ap.add_argument("--old", default="", help="folders, comma-separated, each with an earlier ssd_combined.py + "
                    "the kernel modules changed since")
    ap.add_argument("--rotary", default="", help="L,...: rotary (R = N/4) vs plain SSD at batch 1, every chunk")
    ap.add_argument("--graphs", action="store_true")
    ap.add_argument("--kernel-tables", default="", help="[BATCHx]L,...: kernel times, plain vs rotary fwd+bwd")
    ap.add_argument("--no-fla", action="store_true")
    ap.add_argument("--blocks", default="", help="BATCHxL,...: Mamba2 block vs attention block, d_model 1024")
    ap.add_argument("--block-kernels", action="store_true", help="with --blocks: kernel times of each block")
    ap.add_argument("--old-conv", default=None, help="with --blocks: an earlier kernels/causal_conv1d.py as well")
    ap.add_argument("--skip-check", action="store_true", help="no GPU check against the recurrence")
    ap.add_argument("--patch", action="append", default=[],
                    help="LABEL:MODULE.NAME=INT[,...]: also ours with module constants of seqssm.kernels set, "
                         "e.g. split:ssd_bc_grad.SPLIT_MIN_N=0 (dB and dC in launches of their own at every N)")
    a = ap.parse_args()
    import triton

    from seqssm.kernels import ssd_combined

    res = {"device": torch.cuda.get_device_name(), "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__,
           "triton": triton.__version__, "command": "python " + " ".join(sys.argv), "rows": [], "checks": {}}
    os.makedirs(a.out, exist_ok=True)
    stem = os.path.join(a.out, f"ssd_chunks_{res['date']}")

    def emit(row: dict) -> None:
        res["rows"].append(row)
        log(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items() if k != "kernels"}))
        write_json(stem + ".json", res)

    if not a.skip_check:
        gpu_checks(None, res)  # our kernels vs the float64 recurrence (fp32 and bf16, groups, seq_idx, initial state)
    olds = {os.path.basename(f.rstrip("/")): load_old(f) for f in a.old.split(",") if f}
    for name, old in olds.items():
        new_vs_old(old, res, name)
    old = next(iter(olds.values()), None)  # the one the rotary rows compare with
    mamba_fn = None
    if a.sdist:
        sys.path.insert(0, a.sdist)
        pkg = types.ModuleType("mamba_ssm")  # its __init__ imports the CUDA extension, which we do not build
        pkg.__path__ = [os.path.join(a.sdist, "mamba_ssm")]
        sys.modules.setdefault("mamba_ssm", pkg)
        from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined as mamba_fn
    chunks = [int(c) for c in a.chunks.split(",")]
    patches = {name: {k: int(v) for k, v in (kv.split("=") for kv in sets.split(","))}
               for name, sets in (spec.split(":", 1) for spec in a.patch)}
    fla = importlib.util.find_spec("fla") is not None and not a.no_fla
    for shape in filter(None, a.shapes.split(",")):
        batch, L, n = ([int(v) for v in shape.split("x")] + [128])[:3]
        variants = [(f"ours chunk {c}", api(ssd_combined.ssd_triton), c, {}) for c in chunks]
        for name, patch in patches.items():
            variants.append((f"ours {name} chunk 256", api(ssd_combined.ssd_triton), 256, patch))
        variants += [(f"{name} chunk 256", api(o.ssd_triton), 256, {}) for name, o in olds.items()]
        if mamba_fn is not None:
            variants += [(f"mamba_ssm chunk {c}", mamba_fn, c, {}) for c in map(int, a.mamba_chunks.split(","))]
        base = None
        rows = []
        for label, fn, c, patch in variants:
            try:
                with patched(patch):
                    t = ssd_inputs(batch, 32, 64, n, L)
                    row = {"shape": shape, "variant": label, **timed(call_of(fn, t, c), t, a.graphs)}
            except Exception as e:  # noqa: BLE001
                row = {"shape": shape, "variant": label, "error": f"{type(e).__name__}: {str(e)[:300]}"}
            if label == "mamba_ssm chunk 256":
                base = row.get("fwdbwd_ms")
            rows.append(row)
            emit(row)
            torch.cuda.empty_cache()
        for row in rows:
            if base and "fwdbwd_ms" in row:
                row["ratio"] = row["fwdbwd_ms"] / base
        if n != 128:
            continue
        extra = {"shape": shape, "variant": "SDPA causal (16 heads x 64)"}
        time_sdpa(extra, batch, 2048, L)
        emit({"shape": shape, "variant": extra["variant"], "fwd_ms": extra["sdpa_fwd_ms"],
              "fwdbwd_ms": extra["sdpa_fwdbwd_ms"]})
        if fla:
            extra = {}
            try:
                time_fla(extra, batch, 32, 128, L)
            except Exception as e:  # noqa: BLE001 - its backward refuses triton 3.6 on Hopper
                extra["error"] = f"{type(e).__name__}: {str(e)[:120]}"
            emit({"shape": shape, "variant": "fla chunk_simple_gla (no D, z)", "fwd_ms": extra.get("fla_fwd_ms"),
                  "fwdbwd_ms": extra.get("fla_fwdbwd_ms"), **({"note": extra["error"]} if "error" in extra else {})})
            torch.cuda.empty_cache()
    new_impl = ssd_combined.ssd_triton
    for L in [int(v) for v in a.rotary.split(",") if v]:
        runs = [("", new_impl, {})] + [(f" {name}", new_impl, p) for name, p in patches.items()]
        for label, impl, patch in runs + ([(" old", old.ssd_triton, {})] if old else []):
            for c in chunks if not label else [256]:
                ssd_combined.ssd_triton = impl  # the ops layer imports it at every call
                try:
                    with patched(patch):
                        plain = rotary_inputs(1, 32, 64, 128, L, 1)
                        plain.pop("theta")
                        p = timed(ssd_call(plain, False, chunk=c), plain, a.graphs)
                        emit({"shape": f"1x{L}", "variant": f"plain SSD{label} chunk {c}", **p})
                        del plain
                        rot = rotary_inputs(1, 32, 64, 128, L, 32)
                        r = timed(ssd_call(rot, True, chunk=c), rot, a.graphs)
                        emit({"shape": f"1x{L}", "variant": f"rotary R=N/4{label} chunk {c}", **r,
                              "ratio": r["fwdbwd_ms"] / p["fwdbwd_ms"], "fwd_ratio": r["fwd_ms"] / p["fwd_ms"]})
                        del rot
                except Exception as e:  # noqa: BLE001
                    emit({"shape": f"1x{L}", "variant": f"rotary{label} chunk {c}", "error": repr(e)[:300]})
                finally:
                    ssd_combined.ssd_triton = new_impl
                torch.cuda.empty_cache()
    for spec in filter(None, a.kernel_tables.split(",")):
        batch, L = [int(v) for v in spec.split("x")] if "x" in spec else [1, int(spec)]
        for label, R in (("plain", 0), ("rotary R=N/4", 32)):
            t = rotary_inputs(batch, 32, 64, 128, L, max(R, 1))
            if not R:
                t.pop("theta")
            table = kernel_table(fwd_bwd(ssd_call(t, bool(R)), list(t.values())))
            res.setdefault("kernel_tables", []).append({"batch": batch, "L": L, "variant": label, "kernels": table})
            log(label, spec, "kernels ms total", round(sum(r["ms_per_call"] for r in table), 3))
            for r in table[:14]:
                log(f"  {r['ms_per_call']:.3f} ms x{r['count_per_call']:.0f}  {r['kernel']}")
            write_json(stem + ".json", res)
            del t
    for spec in filter(None, a.blocks.split(",")):
        block_rows(spec, a.graphs, emit, a.block_kernels, a.old_conv, patches)
    write_text(stem + ".md", markdown(res))
    print(markdown(res), flush=True)


if __name__ == "__main__":
    main()
