"""Real vs complex vs rotary states on raw audio (issue 11): the same `task=audio` run (data, steps,
schedule, seed, sizes) for mamba, mamba_complex, mamba2 and mamba2_rotary, then the test NLL in bits per
sample of each; writes ``results.json`` and ``results.md`` into ``--out``.

    python bench/audio_variants.py --out DIR [--steps 1000] [--trainer gpu] [--parallel]

Each experiment is a plain ``python -m seqssm.train`` then ``python -m seqssm.evaluate`` (commands
stored with the numbers). ``--parallel`` runs the four at once (one GPU holds them easily); the data
set (offline digits by default) is made once before.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from seqssm.digits import offline_digits
from seqssm.io import write_json, write_text

SIZES = ["model.d_model=64", "model.n_layer=4"]
MODELS = {
    "mamba": ["model=mamba", *SIZES],
    "mamba_complex": ["model=mamba_complex", *SIZES],
    "mamba2": ["model=mamba2", *SIZES, "model.headdim=32", "model.d_state=32"],
    "mamba2_rotary": ["model=mamba2_rotary", *SIZES, "model.headdim=32", "model.d_state=32"],
}


def commands(name: str, out: Path, steps: int, trainer: str, max_len: int, batch: int) -> tuple[list, list]:
    run = out / "runs" / name
    train = [
        sys.executable,
        "-m",
        "seqssm.train",
        "task=audio",
        f"trainer={trainer}",
        *MODELS[name],
        f"trainer.max_steps={steps}",
        f"trainer.val_check_interval={max(steps // 4, 1)}",
        "trainer.enable_progress_bar=false",
        f"task.data.max_len={max_len}",
        f"task.data.batch_size={batch}",
        "task.data.val_clips=32",
        f"hydra.run.dir={run}",
    ]
    evaluate = [
        sys.executable,
        "-m",
        "seqssm.evaluate",
        "task=audio",
        f"ckpt={run / 'checkpoints/best.ckpt'}",
        f"out={run / 'eval'}",
        "task.test_clips=64",
    ]
    return train, evaluate


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("bench/results/audio_variants"))
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--trainer", default="gpu")
    ap.add_argument("--max-len", type=int, default=4096, help="samples per training crop")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--parallel", action="store_true")
    args = ap.parse_args()
    out = args.out.resolve()
    (out / "runs").mkdir(parents=True, exist_ok=True)
    offline_digits()  # once, before any run
    procs, started = {}, time.time()
    for name in MODELS:
        train, evaluate = commands(name, out, args.steps, args.trainer, args.max_len, args.batch)
        script = " ".join(train) + " && " + " ".join(evaluate)
        log = open(out / "runs" / f"{name}.log", "w")
        procs[name] = (subprocess.Popen(script, shell=True, stdout=log, stderr=subprocess.STDOUT), train, evaluate)
        if not args.parallel:
            procs[name][0].wait()
    results = {}
    for name, (p, train, evaluate) in procs.items():
        rc = p.wait()
        run = out / "runs" / name
        if rc:
            results[name] = {"error": f"exit {rc}; see runs/{name}.log"}
            continue
        results[name] = {
            "train": json.loads((run / "metrics.json").read_text()),
            "eval": json.loads((run / "eval" / "metrics.json").read_text()),
            "commands": [" ".join(train[1:]), " ".join(evaluate[1:])],
        }
    meta = {
        "device": torch.cuda.get_device_name() if args.trainer == "gpu" else "cpu",
        "date": time.strftime("%Y-%m-%d"),
        "torch": torch.__version__,
        "wall_s": round(time.time() - started),
        "command": " ".join(sys.argv),
    }
    write_json(out / "results.json", {"meta": meta, "results": results})
    lines = [
        f"# Audio: real vs complex vs rotary states ({meta['device']}, {meta['date']})",
        "",
        f"`python {meta['command']}`; {args.steps} steps of {args.batch} x {args.max_len}-sample crops, offline "
        "digits, same seed, schedule and data for every model; test NLL on 64 whole 1 s test clips.",
        "",
        "| model | params | val bits/sample | test NLL bits/sample |",
        "| --- | --- | --- | --- |",
    ]
    for name, r in results.items():
        if "error" in r:
            lines.append(f"| {name} | {r['error']} | | |")
            continue
        lines.append(
            f"| {name} | {r['train']['params']:,} | {r['train']['val/bits_per_sample']:.4f} | "
            f"{r['eval']['test/nll_bits_per_sample']:.4f} |"
        )
    write_text(out / "results.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
