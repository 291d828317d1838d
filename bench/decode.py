"""Decode throughput: seqssm's generation (CUDA-graph step, and eager) vs mamba_ssm's generation
(``cg=True``) vs HuggingFace transformers' ``MambaForCausalLM.generate``, at batch 1, 16, 64, 128, for a
~130M and a ~1.3B Mamba configuration with random weights (the same weights in every library).

usage (one command, on a GPU machine, from the repository root):
    python bench/decode.py --sdist .pkgs/mamba_ssm-2.3.2.post1
options: --sizes 130m,1.3b --batches 1,16,64,128 --new-tokens 128 --prompt-len 16 --dtype bf16
         --mixer mamba|mamba2 --systems seqssm-graph,seqssm-eager,mamba_ssm,transformers --out bench/results
CPU check of the logic (tiny sizes, no mamba_ssm, no graphs): python bench/decode.py --device cpu --sizes tiny
         --batches 1,2 --new-tokens 8 --dtype fp32 --out /tmp/decode

Method. Every system decodes greedily from the same random prompts (prompt_len tokens), for exactly
``new_tokens`` tokens (no stop token). T(n) is the wall time of one generate call producing n tokens,
timed with CUDA events after a synchronisation, median of ``--reps`` after one warm-up call (graph
capture, Triton autotuning, cuBLAS heuristics happen there). Decode throughput excludes the prompt:
per-token time = (T(new_tokens) - T(1)) / (new_tokens - 1), tokens/s = batch / per-token time.

mamba_ssm: if its CUDA extension is not built, ``selective_scan_cuda`` is stubbed and the prefill's scan
is mamba_ssm's own PyTorch ``selective_scan_ref`` (it is outside the decode time by the method above);
its decode step is unchanged (Triton ``selective_state_update``; the conv update is its PyTorch
fallback when the ``causal_conv1d`` package is missing, which is recorded in the notes).
Results: bench/results/decode_<date>.json and .md (written after every measurement, atomically).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import time
import traceback
import types

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checkout import ROOT, map_kernels_package  # noqa: E402

SIZES = {  # mamba-130m and mamba-1.4b shapes (state-spaces), GPT-NeoX vocabulary
    "130m": dict(d_model=768, n_layer=24, vocab=50277),
    "1.3b": dict(d_model=2048, n_layer=48, vocab=50277),
    "tiny": dict(d_model=64, n_layer=2, vocab=256),
}
SYSTEMS = ("seqssm-graph", "seqssm-eager", "mamba_ssm", "transformers")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def model_config(size: str, mixer: str):
    from seqssm.models import ModelConfig

    s = SIZES[size]
    extra = dict(d_state=128, headdim=64, ngroups=1) if mixer == "mamba2" else dict(d_state=16)
    return ModelConfig(mixer=mixer, d_model=s["d_model"], n_layer=s["n_layer"], **extra), s["vocab"]


def build_seqssm(size: str, mixer: str, dtype: torch.dtype, device: torch.device):
    from seqssm.models import MambaLMHeadModel

    cfg, vocab = model_config(size, mixer)
    torch.manual_seed(0)
    with torch.device(device):
        model = MambaLMHeadModel(cfg, vocab)
    return model.to(dtype).eval()


def build_transformers(ours, dtype: torch.dtype, device: torch.device):
    """transformers' Mamba(2)ForCausalLM with ours' weights (seqssm.models' hf layout)."""
    import transformers

    from seqssm.models.formats import to_hf_config
    from seqssm.models.pretrained import _hf_state

    raw = to_hf_config(ours.config, ours.vocab_size)
    arch = raw.pop("architectures")[0]
    raw.pop("model_type")
    config_cls = transformers.MambaConfig if arch == "MambaForCausalLM" else transformers.Mamba2Config
    with torch.device(device):
        hf = getattr(transformers, arch)(config_cls(**raw))
    missing, unexpected = hf.load_state_dict(_hf_state(ours), strict=False)
    if unexpected or set(missing) - {"lm_head.weight"}:
        raise RuntimeError(f"transformers model: missing {missing[:3]}, unexpected {unexpected[:3]}")
    if "lm_head.weight" in missing:
        hf.tie_weights()
    return hf.to(dtype).eval()


def import_mamba_ssm(sdist: str | None) -> tuple[types.ModuleType, list[str]]:
    """mamba_ssm's LM class, from an installed package or the sdist folder; notes on what is missing."""
    notes = []
    if sdist:
        sys.path.insert(0, os.path.abspath(sdist))
    try:
        import selective_scan_cuda  # noqa: F401
    except ImportError:
        sys.modules["selective_scan_cuda"] = types.ModuleType("selective_scan_cuda")
        notes.append("selective_scan_cuda not built: prefill scan = mamba_ssm selective_scan_ref")
    import mamba_ssm.modules.mamba_simple as simple
    from mamba_ssm.models.mixer_seq_simple import MambaLMHeadModel
    from mamba_ssm.ops.selective_scan_interface import selective_scan_ref

    if notes:
        simple.selective_scan_fn = selective_scan_ref
    if simple.causal_conv1d_update is None:
        notes.append("causal_conv1d not installed: conv update = mamba_ssm PyTorch fallback")
    return MambaLMHeadModel, notes


def build_mamba_ssm(ours, dtype: torch.dtype, device: torch.device, sdist: str | None):
    from seqssm.models.formats import to_mamba_ssm_config

    cls, notes = import_mamba_ssm(sdist)
    from mamba_ssm.models.config_mamba import MambaConfig

    model = cls(MambaConfig(**to_mamba_ssm_config(ours.config, ours.vocab_size)), device=device, dtype=dtype)
    model.load_state_dict(ours.state_dict())
    return model.eval(), notes


def runner(system: str, model, prompt: torch.Tensor, vocab: int):
    """generate(n) -> (batch, prompt_len + n) token ids, greedy."""
    from seqssm.generation import generate

    p = prompt.shape[1]
    if system == "seqssm-graph":
        return lambda n: generate(model, prompt, n, temperature=0, cuda_graph=True)
    if system == "seqssm-eager":
        return lambda n: generate(model, prompt, n, temperature=0, cuda_graph=False)
    if system == "mamba_ssm":
        return lambda n: model.generate(prompt, max_length=p + n, cg=True, top_k=1, vocab_size=vocab)
    if system == "transformers":
        return lambda n: model.generate(
            prompt, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0, eos_token_id=None
        )
    raise ValueError(system)


def timed(fn, device: torch.device) -> tuple[float, torch.Tensor]:
    """Seconds for fn(), measured with CUDA events between synchronisations (perf_counter on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        out = fn()
        end.record()
        torch.cuda.synchronize(device)
        return start.elapsed_time(end) / 1e3, out
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def measure(run, batch: int, prompt_len: int, new_tokens: int, reps: int, device: torch.device) -> dict:
    for n in (new_tokens, 1):  # warm-up: capture, autotune, allocator
        out = run(n)
        if tuple(out.shape) != (batch, prompt_len + n):
            raise RuntimeError(f"generate({n}) returned shape {tuple(out.shape)}, expected {(batch, prompt_len + n)}")
    full = statistics.median(timed(lambda: run(new_tokens), device)[0] for _ in range(reps))
    one = statistics.median(timed(lambda: run(1), device)[0] for _ in range(reps))
    per_token = max(full - one, 1e-9) / (new_tokens - 1)
    return {
        "tokens_per_s": batch / per_token,
        "ms_per_step": per_token * 1e3,
        "total_s": full,
        "prefill_and_first_token_s": one,
    }


def agreement(a: torch.Tensor, b: torch.Tensor, prompt_len: int) -> float:
    """Fraction of rows' new tokens equal up to each row's first difference (greedy paths diverge after)."""
    a, b = a[:, prompt_len:].cpu(), b[:, prompt_len:].cpu()
    same = (a == b).long().cumprod(1).sum(1)
    return float(same.sum()) / a.numel()


def to_markdown(result: dict) -> str:
    env = result["env"]
    lines = [
        f"# Decode throughput, {env['date']} ({env['device']})",
        "",
        f"Command: `{env['command']}`  ",
        f"torch {env['torch']}, transformers {env.get('transformers', '-')}, dtype {env['dtype']}, mixer "
        f"{env['mixer']}, prompt {env['prompt_len']} tokens, {env['new_tokens']} new tokens, greedy, median of "
        f"{env['reps']}; tokens/s = batch / ((T(n) - T(1)) / (n - 1)).",
        "",
        "| size | params | batch | system | decode tokens/s | ms / step | vs transformers | vs mamba_ssm |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    rows = result["rows"]
    for r in rows:
        if "tokens_per_s" not in r:
            cells = [r["size"], r["params_m"], r["batch"], r["system"], "-", "-", "-", r.get("error", "skipped")]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
            continue
        ref = {x["system"]: x.get("tokens_per_s") for x in rows if x["size"] == r["size"] and x["batch"] == r["batch"]}
        hf, ms = ref.get("transformers"), ref.get("mamba_ssm")
        cells = [
            r["size"],
            f"{r['params_m']:.0f}M",
            r["batch"],
            r["system"],
            f"{r['tokens_per_s']:,.0f}",
            f"{r['ms_per_step']:.2f}",
            f"{r['tokens_per_s'] / hf:.1f}x" if hf else "-",
            f"{r['tokens_per_s'] / ms:.2f}x" if ms else "-",
        ]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    if result["checks"]:
        lines += ["", "Checks (greedy tokens on a batch of 4, fraction equal to seqssm-eager before the first "
                  "difference):", ""]  # fmt: skip
        lines += [f"- {c}" for c in result["checks"]]
    if result["notes"]:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in result["notes"]]
    return "\n".join(lines) + "\n"


def save(result: dict, out_dir: str) -> None:
    from seqssm.io import write_json, write_text

    stem = os.path.join(out_dir, f"decode_{result['env']['date']}")
    write_json(stem + ".json", result)
    write_text(stem + ".md", to_markdown(result))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="130m,1.3b")
    ap.add_argument("--batches", default="1,16,64,128")
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--mixer", default="mamba", choices=["mamba", "mamba2"])
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--prompt-len", type=int, default=16)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--dtype", default="bf16", choices=list(DTYPES))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--sdist", default=None, help="mamba_ssm source folder (if not installed)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    args = ap.parse_args(argv)
    if args.new_tokens < 2:
        ap.error(f"--new-tokens={args.new_tokens}: expected >= 2 (the prompt is timed apart with T(1))")
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    if device.type == "cuda":
        map_kernels_package()
    import transformers

    result = {
        "env": {
            "date": dt.date.today().isoformat(),
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "dtype": args.dtype,
            "mixer": args.mixer,
            "prompt_len": args.prompt_len,
            "new_tokens": args.new_tokens,
            "reps": args.reps,
            "command": "python bench/decode.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        },
        "rows": [],
        "checks": [],
        "notes": [],
    }
    systems = args.systems.split(",")
    for size in args.sizes.split(","):
        ours = build_seqssm(size, args.mixer, dtype, device)
        params_m = sum(p.numel() for p in ours.parameters()) / 1e6
        vocab = ours.vocab_size
        print(f"== {size}: {params_m:.0f}M parameters, {args.mixer}, {args.dtype}, {device}", flush=True)
        gen = torch.Generator().manual_seed(0)
        check_prompt = torch.randint(0, vocab, (4, args.prompt_len), generator=gen).to(device)
        reference = runner("seqssm-eager", ours, check_prompt, vocab)(32)
        for system in systems:
            if system not in SYSTEMS:
                raise SystemExit(f"--systems: {system!r} is not one of {', '.join(SYSTEMS)}")
            model, label = ours, system
            try:
                if system == "seqssm-graph" and device.type != "cuda":
                    raise RuntimeError("CUDA graphs need a CUDA device")
                if system == "mamba_ssm":
                    if device.type != "cuda":
                        raise RuntimeError("mamba_ssm's kernels need a CUDA device")
                    if args.mixer != "mamba":
                        raise RuntimeError("only the Mamba-1 comparison is wired")
                    model, notes = build_mamba_ssm(ours, dtype, device, args.sdist)
                    result["notes"] += [f"mamba_ssm: {n}" for n in notes if f"mamba_ssm: {n}" not in result["notes"]]
                if system == "transformers":
                    model = build_transformers(ours, dtype, device)
                got = runner(system, model, check_prompt, vocab)(32)
                result["checks"].append(f"{size} {system}: {agreement(got, reference, args.prompt_len):.3f}")
                if system == "seqssm-graph" and not torch.equal(got, reference):
                    raise RuntimeError("CUDA-graph tokens differ from eager tokens")
            except Exception as e:  # record and go on: one missing library must not lose the other rows
                msg = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:200]
                print(f"   {system}: skipped ({msg})", flush=True)
                if os.environ.get("DECODE_BENCH_TRACEBACK"):
                    traceback.print_exc()
                for batch in map(int, args.batches.split(",")):
                    result["rows"].append(dict(size=size, params_m=params_m, batch=batch, system=label, error=msg))
                save(result, args.out)
                continue
            for batch in map(int, args.batches.split(",")):
                prompt = torch.randint(0, vocab, (batch, args.prompt_len), generator=gen).to(device)
                row = dict(size=size, params_m=params_m, batch=batch, system=label)
                try:
                    row.update(measure(runner(system, model, prompt, vocab), batch, args.prompt_len,
                                       args.new_tokens, args.reps, device))  # fmt: skip
                    print(f"   {system:14s} batch {batch:4d}: {row['tokens_per_s']:12,.0f} tokens/s "
                          f"({row['ms_per_step']:.3f} ms/step)", flush=True)  # fmt: skip
                except Exception as e:
                    row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:200]
                    print(f"   {system:14s} batch {batch:4d}: {row['error']}", flush=True)
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
                result["rows"].append(row)
                save(result, args.out)
            if model is not ours:
                del model
                if device.type == "cuda":
                    torch.cuda.empty_cache()
        del ours
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print(to_markdown(result))
    return result


if __name__ == "__main__":
    main()
