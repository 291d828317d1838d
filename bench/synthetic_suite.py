"""Train and evaluate the synthetic suite for mamba, mamba2 and the Transformer baseline, and write the
combined results (``results.json``, Markdown tables, PNG plots) into ``--out``.

    python bench/synthetic_suite.py --out bench/results/synthetic [--only ih_mamba ih_transformer ...]
        [--lr 3e-3] [--batch-size 32] [--tag @b128] [--parallel 8] [--set optim.weight_decay=0 ...]

Each experiment is a plain ``python -m seqssm.train`` then ``python -m seqssm.evaluate`` run (the
commands are printed and stored), so any number here can be reproduced by hand. ``--only`` runs a
subset and merges it into an existing results.json. Budgets are small (CPU minutes each). ``--tag``
suffixes the experiment names, so runs with another ``--lr`` / ``--batch-size`` sit beside the default
ones in the same tables; ``--parallel N`` runs N experiments at once (a GPU holds many of these small
models, whose steps are bound by kernel launches, not by the GPU).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from run_logged import run  # bench/, beside this script

from seqssm.io import write_json, write_text
from seqssm.tasks.synthetic_plots import plot_accuracy, plot_vs_state

MODELS = {
    "mamba": ["model=mamba", "model.n_layer=2", "model.d_model=64"],
    "mamba2": ["model=mamba2", "model.n_layer=2", "model.d_model=64", "model.headdim=32", "model.chunk_size=64"],
    "transformer": ["model=transformer", "model.n_layer=2", "model.d_model=64", "model.headdim=32"],
}
STATE_MODELS = {  # the state-tracking comparison (issue 11): real vs complex / rotary states
    "mamba": MODELS["mamba"],
    "mamba_complex": ["model=mamba_complex", "model.n_layer=2", "model.d_model=64"],
    "mamba2": MODELS["mamba2"],
    "mamba2_rotary": ["model=mamba2_rotary", *MODELS["mamba2"][1:]],
}
IH_LENGTHS = "[64,128,256,512,1024,2048,4096,8192,16384,32768,65536]"
ST_LENGTHS = "[64,128,256,512,1024,2048]"
TRAIN = ["trainer.enable_progress_bar=false", "optim.warmup_steps=20", "task.data.val_examples=256"]


def experiments(steps: dict[str, int], ih_lengths: str = IH_LENGTHS) -> dict[str, tuple[list[str], list[str]]]:
    """name -> (train overrides, evaluate overrides); task overrides are shared by both."""
    ex = {}
    for m in MODELS:
        ex[f"ih_{m}"] = (
            [
                "task.data.kind=induction_heads",
                "task.data.seq_len=256",
                "task.data.vocab=16",
                *MODELS[m],
                f"trainer.max_steps={steps['ih']}",
                "trainer.val_check_interval=100",
            ],
            [
                f"task.eval.lengths={ih_lengths}",
                "task.eval.examples=64",
                "task.eval.max_tokens=524288",
                "task.eval.min_examples=8",
            ],
        )
        ex[f"sc_{m}"] = (
            [
                "task.data.kind=selective_copying",
                "task.data.seq_len=256",
                "task.data.vocab=16",
                "task.data.num_tokens=16",
                *MODELS[m],
                f"trainer.max_steps={steps['sc']}",
                "trainer.val_check_interval=100",
            ],
            ["task.eval.examples=256"],
        )
    mqar = [
        "task.data.kind=mqar",
        "task.data.seq_len=128",
        "task.data.vocab=128",
        "task.data.num_kv_pairs=16",
        f"trainer.max_steps={steps['mqar']}",
        "trainer.val_check_interval=100",
    ]
    mqar_eval = ["task.eval.examples=256", "task.eval.num_kv_pairs=[4,8,16,24,32]"]
    ex["mqar_mamba_n16"] = ([*mqar, *MODELS["mamba"], "model.d_state=16"], mqar_eval)
    for n in (16, 64, 256):
        ex[f"mqar_mamba2_n{n}"] = ([*mqar, *MODELS["mamba2"], f"model.d_state={n}"], mqar_eval)
    ex["mqar_transformer"] = ([*mqar, *MODELS["transformer"]], mqar_eval)
    for modulus in (2, 5):  # running parity and the running sum mod 5, trained at 64
        for m, overrides in STATE_MODELS.items():
            ex[f"st{modulus}_{m}"] = (
                [
                    "task.data.kind=modular_sum",
                    "task.data.seq_len=64",
                    f"task.data.vocab={modulus}",
                    *overrides,
                    f"trainer.max_steps={steps['st']}",
                    "trainer.val_check_interval=100",
                ],
                [f"task.eval.lengths={ST_LENGTHS}", "task.eval.examples=64", "task.eval.min_examples=8"],
            )
    return ex


def tables(results: dict) -> str:
    lines = []
    ih = {k.removeprefix("ih_"): v for k, v in results.items() if k.startswith("ih_")}
    if ih:
        lengths = sorted({int(n) for r in ih.values() for n in r["eval"]["by_length"]})
        lines += [
            "### Induction heads (trained at 256): accuracy per evaluation length",
            "",
            "| model | steps | val acc @256 | " + " | ".join(f"{n}" for n in lengths) + " |",
            "| --- | --- | --- | " + " | ".join("---" for _ in lengths) + " |",
        ]
        for m, r in ih.items():
            by = r["eval"]["by_length"]
            cells = [f"{by[str(n)]['acc']:.3f}" if str(n) in by else "" for n in lengths]
            lines.append(f"| {m} | {r['train']['steps']} | {r['train']['val/acc']:.3f} | " + " | ".join(cells) + " |")
        lines.append("")
    sc = {k.removeprefix("sc_"): v for k, v in results.items() if k.startswith("sc_")}
    if sc:
        lines += [
            "### Selective copying (16 tokens to copy among noise, vocab 16)",
            "",
            "| model | noise region | steps | train s | val acc | eval acc | eval exact |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for m, r in sc.items():
            (length, e), *_ = r["eval"]["by_length"].items()  # one length: the training one
            lines.append(
                f"| {m} | {length} | {r['train']['steps']} | {r['train']['train_seconds']} "
                f"| {r['train']['val/acc']:.4f} | {e['acc']:.4f} | {e['exact']:.3f} |"
            )
        lines.append("")
    mq = {k.removeprefix("mqar_"): v for k, v in results.items() if k.startswith("mqar_")}
    if mq:
        pairs = sorted({int(k) for r in mq.values() for k in r["eval"].get("by_num_kv_pairs", {})})
        lines += [
            "### MQAR (length 128, vocab 128, trained with 16 pairs): accuracy per number of pairs",
            "",
            "| model | d_state | params | steps | " + " | ".join(f"{k} pairs" for k in pairs) + " |",
            "| --- | --- | --- | --- | " + " | ".join("---" for _ in pairs) + " |",
        ]
        for m, r in mq.items():
            by = r["eval"].get("by_num_kv_pairs", {})
            d_state = r["eval"]["model"].get("d_state", "") if "transformer" not in m else "-"
            cells = [f"{by[str(k)]['acc']:.3f}" if str(k) in by else "" for k in pairs]
            lines.append(
                f"| {m} | {d_state} | {r['train']['params']:,} | {r['train']['steps']} | " + " | ".join(cells) + " |"
            )
        lines.append("")
    for modulus, what in ((2, "running parity"), (5, "running sum mod 5")):
        st = {k.removeprefix(f"st{modulus}_"): v for k, v in results.items() if k.startswith(f"st{modulus}_")}
        if not st:
            continue
        lengths = sorted({int(n) for r in st.values() for n in r["eval"]["by_length"]})
        lines += [
            f"### State tracking: {what} (trained at 64; accuracy on every position, chance {1 / modulus:.2f})",
            "",
            "| model | params | steps | " + " | ".join(f"{n}" for n in lengths) + " |",
            "| --- | --- | --- | " + " | ".join("---" for _ in lengths) + " |",
        ]
        for m, r in st.items():
            by = r["eval"]["by_length"]
            cells = [f"{by[str(n)]['acc']:.3f}" if str(n) in by else "" for n in lengths]
            lines.append(f"| {m} | {r['train']['params']:,} | {r['train']['steps']} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def plots(results: dict, out: Path) -> None:
    ih = {k.removeprefix("ih_"): v["eval"] for k, v in results.items() if k.startswith("ih_")}
    if ih:
        plot_accuracy(ih, out / "induction_heads_extrapolation.png", "induction heads", 256)
    mq = {k: v for k, v in results.items() if k.startswith("mqar_") and "transformer" not in k}
    if mq:
        series: dict[str, dict[int, float]] = {}
        for r in mq.values():
            m = r["eval"]["model"]
            series.setdefault(m["mixer"], {})[m["d_state"]] = r["eval"]["by_num_kv_pairs"].get("16", {}).get("acc", 0)
        plot_vs_state(series, out / "mqar_vs_state.png", "MQAR (16 pairs, length 128): accuracy vs state size")
    for modulus, what in ((2, "running parity"), (5, "running sum mod 5")):
        st = {k.removeprefix(f"st{modulus}_"): v["eval"] for k, v in results.items() if k.startswith(f"st{modulus}_")}
        if st:
            plot_accuracy(st, out / f"state_tracking_mod{modulus}.png", what, 64)


def run_experiment(name: str, train_o: list[str], eval_o: list[str], args: argparse.Namespace, out: Path) -> dict:
    """Train then evaluate one experiment; returns its results entry."""
    run_dir, log = out / "runs" / name, out / "runs" / f"{name}.log"
    train_cmd = [
        sys.executable,
        "-m",
        "seqssm.train",
        "task=synthetic",
        f"trainer={args.trainer}",
        *TRAIN,
        f"optim.lr={args.lr}",
        f"task.data.batch_size={args.batch_size}",
        *train_o,
        *args.set,
        f"hydra.run.dir={run_dir}",
    ]
    train_s = run(train_cmd, log)
    ckpt = run_dir / "checkpoints/best.ckpt"  # written at validation; a run shorter than one interval has last.ckpt
    ckpt = ckpt if ckpt.exists() else run_dir / "checkpoints/last.ckpt"
    task_o = [o for o in [*train_o, *args.set] if o.startswith("task.")]
    eval_cmd = [
        sys.executable,
        "-m",
        "seqssm.evaluate",
        "task=synthetic",
        *task_o,
        *eval_o,
        f"ckpt={ckpt}",
        f"out={run_dir / 'eval'}",
        "batch_size=8",
    ]
    eval_s = run(eval_cmd, log)
    return {
        "train": json.loads((run_dir / "metrics.json").read_text()),
        "eval": json.loads((run_dir / "eval/metrics.json").read_text()),
        "commands": [" ".join(train_cmd[1:]), " ".join(eval_cmd[1:])],
        "wall_seconds": {"train": round(train_s, 1), "evaluate": round(eval_s, 1)},
        "machine": (
            torch.cuda.get_device_name()
            if args.trainer == "gpu"
            else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads"
        )
        + f", torch {torch.__version__}",
        "date": time.strftime("%Y-%m-%d"),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("bench/results/synthetic"))
    ap.add_argument("--only", nargs="*", help="experiment names (default: all)")
    ap.add_argument("--ih-steps", type=int, default=400)
    ap.add_argument("--sc-steps", type=int, default=400)
    ap.add_argument("--mqar-steps", type=int, default=300)
    ap.add_argument("--st-steps", type=int, default=300, help="state tracking (modular sum) training steps")
    ap.add_argument("--trainer", default="cpu", help="trainer config group: cpu or gpu")
    ap.add_argument("--ih-lengths", default=IH_LENGTHS, help="induction-heads evaluation lengths, a Hydra list")
    ap.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (warmup 20 steps, then cosine)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--tag", default="", help="suffix of the experiment names in results.json, e.g. @lr1e-3")
    ap.add_argument("--parallel", type=int, default=1, help="experiments run at once")
    ap.add_argument("--set", nargs="*", default=[], help="overrides after the experiment's own")
    args = ap.parse_args()
    out = args.out.resolve()
    (out / "runs").mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    ex = experiments(
        {"ih": args.ih_steps, "sc": args.sc_steps, "mqar": args.mqar_steps, "st": args.st_steps}, args.ih_lengths
    )
    names = args.only or list(ex)
    for name in names:
        if name not in ex:
            sys.exit(f"--only: unknown experiment {name!r} (expected one of {', '.join(ex)})")
    lock = threading.Lock()

    def one(name: str) -> None:
        entry = run_experiment(name + args.tag, *ex[name], args, out)
        with lock:
            results[name + args.tag] = entry
            write_json(path, results)
            write_text(out / "results.md", tables(results))
            plots(results, out)

    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        futures = {n: pool.submit(one, n) for n in names}
    failed = [f"{n}: {f.exception()}" for n, f in futures.items() if f.exception()]
    print(tables(results))
    if failed:
        sys.exit("failed experiments:\n" + "\n".join(failed))


if __name__ == "__main__":
    main()
