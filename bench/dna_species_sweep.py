"""Species classification (issue 5): which fine-tuning recipe reaches > 0.9 at windows of 1K bases.

    python bench/dna_species_sweep.py --out DIR [--trainer gpu] [--parallel 8] [--only m1_base m2_L1k ...]

For each backbone (mamba, mamba2) it pretrains once on the shipped chrM (the README's command: 60
steps, the middle 20% held out), then fine-tunes every variant from that checkpoint
(``model.init_from``) on the shipped human / mouse / zebrafish mitochondrial genomes and evaluates it
on the held-out middle blocks (50 windows per class and length, with the order-4 Markov classifier
beside it). Each step is a plain ``python -m seqssm.train`` / ``seqssm.evaluate`` run; the commands are
stored in ``results.json`` beside the accuracies. ``results.md`` has the table.
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from run_logged import run  # bench/, beside this script

from seqssm.io import write_json, write_text

BACKBONES = {"m1": ["model=mamba"], "m2": ["model=mamba2"]}
# the validation block at each genome's start must hold a window of the longest training length (2048)
FINETUNE = ["task=dna_classify", "task.data.val_fraction=0.15", "optim.weight_decay=0"]
VARIANTS = {  # name suffix -> fine-tuning overrides (lr 5e-3, 200 steps unless stated)
    "base": ["task.data.train_lengths=[128,256]"],
    "L1k": ["task.data.train_lengths=[1024]"],
    "L256_1k": ["task.data.train_lengths=[256,1024]"],
    "L512_2k": ["task.data.train_lengths=[512,2048]"],
    "L1k_rcaug": ["task.data.train_lengths=[1024]", "task.data.rc_aug=true"],
    "L1k_lr2e-3": ["task.data.train_lengths=[1024]", "optim.lr=2e-3"],
    "L1k_400": ["task.data.train_lengths=[1024]", "trainer.max_steps=400"],
    "L1k_scratch": ["task.data.train_lengths=[1024]"],
}
FROM_SCRATCH = {"L1k_scratch"}  # variants not initialised from the pretrained backbone


def table(results: dict) -> str:
    lengths = sorted({int(n) for r in results.values() for n in r["eval"]["lengths"]})
    lines = [
        "| variant | " + " | ".join(str(n) for n in lengths) + " | fine-tune s |",
        "| --- | " + " | ".join("---" for _ in lengths) + " | --- |",
    ]
    for name, r in sorted(results.items()):
        by = r["eval"]["lengths"]
        cells = [f"{by[str(n)]['accuracy']:.3f}" if str(n) in by else "" for n in lengths]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {r['wall_seconds']['finetune']} |")
    any_eval = next(iter(results.values()))["eval"]["lengths"]
    cells = [f"{any_eval[str(n)]['markov4']['accuracy']:.3f}" if str(n) in any_eval else "" for n in lengths]
    lines.append("| order-4 Markov per species | " + " | ".join(cells) + " | |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--trainer", default="cpu")
    ap.add_argument("--parallel", type=int, default=1)
    ap.add_argument("--only", nargs="*", help="variants as BACKBONE_VARIANT, e.g. m1_base m2_L1k")
    ap.add_argument("--steps", type=int, default=200, help="fine-tuning steps (a variant may override)")
    ap.add_argument("--pretrain-steps", type=int, default=60)
    args = ap.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    names = args.only or [f"{b}_{v}" for b in BACKBONES for v in VARIANTS]
    for n in names:
        b, _, v = n.partition("_")
        if b not in BACKBONES or v not in VARIANTS:
            sys.exit(f"--only: unknown variant {n!r}")
    py = [sys.executable, "-m"]
    pre_s = {}
    for b in sorted({n.partition("_")[0] for n in names}):  # one pretraining per backbone
        pre_s[b] = run(
            [
                *py,
                "seqssm.train",
                "task=dna",
                f"trainer={args.trainer}",
                *BACKBONES[b],
                "task.data.val_fraction=0.2",
                f"trainer.max_steps={args.pretrain_steps}",
                f"trainer.val_check_interval={min(30, args.pretrain_steps)}",
                "trainer.enable_progress_bar=false",
                f"hydra.run.dir={out / ('pre_' + b)}",
            ],
            out / f"pre_{b}.log",
        )
    path, results = out / "results.json", {}

    def one(name: str) -> None:
        b, _, v = name.partition("_")
        init = [] if v in FROM_SCRATCH else [f"model.init_from={out / ('pre_' + b)}/checkpoints/best.ckpt"]
        run_dir, log = out / name, out / f"{name}.log"
        ft = [
            *py,
            "seqssm.train",
            *FINETUNE,
            "trainer.enable_progress_bar=false",
            f"trainer={args.trainer}",
            *BACKBONES[b],
            "optim.lr=5e-3",
            f"trainer.max_steps={args.steps}",
            f"trainer.val_check_interval={min(50, args.steps)}",
            *init,
            *VARIANTS[v],
            f"hydra.run.dir={run_dir}",
        ]
        ev = [
            *py,
            "seqssm.evaluate",
            "task=dna_classify",
            f"ckpt={run_dir}/checkpoints/best.ckpt",
            "task.data.eval_windows=50",
        ]
        ft_s = run(ft, log)
        ev_s = run(ev, log)
        entry = {
            "eval": json.loads((run_dir / "eval/metrics.json").read_text()),
            "commands": [" ".join(ft[2:]), " ".join(ev[2:])],
            "wall_seconds": {"pretrain": round(pre_s[b], 1), "finetune": round(ft_s, 1), "evaluate": round(ev_s, 1)},
        }
        results[name] = entry
        write_json(path, results)
        write_text(out / "results.md", table(results))

    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        futures = {n: pool.submit(one, n) for n in names}
    failed = [f"{n}: {f.exception()}" for n, f in futures.items() if f.exception()]
    if results:
        print(table(results))
    if failed:
        sys.exit("failed:\n" + "\n".join(failed))


if __name__ == "__main__":
    main()
