"""One training step and one inference pass of a ~100M-parameter DNA model at L = 1K .. 1M tokens
on one GPU: time and peak memory, beside a Transformer of the same width (SDPA attention) until it
runs out of memory or time. Writes long_context.json, .md and a log-log PNG into --out.

Training runs the sequence in chunks of --chunk-len tokens with activation checkpointing
(``seqssm.models.streaming.chunked_forward``), so memory grows with the chunk (plus the per-token
outputs), not with L; inference streams the sequence (``stream_log_likelihood``).

usage: python bench/long_context.py --out DIR [--mixers mamba,mamba2,transformer] [--lens 1024,...]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from seqssm.models import MambaLMHeadModel, ModelConfig
from seqssm.models.streaming import chunked_forward, stream_log_likelihood

SIZES = {  # about 100M parameters each, vocabulary of DNA (6 tokens)
    "mamba": ModelConfig(mixer="mamba", d_model=768, n_layer=24, d_state=16),
    "mamba2": ModelConfig(mixer="mamba2", d_model=768, n_layer=24, d_state=128, headdim=64, chunk_size=256),
    "transformer": ModelConfig(mixer="transformer", d_model=768, n_layer=12, headdim=64, expand=4),
}


def timed(fn, reps: int) -> tuple[float, float]:
    """Median seconds over ``reps`` runs after one warm-up, and peak GiB allocated above the start."""
    fn()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    times = []
    for _ in range(reps):
        torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2], (torch.cuda.max_memory_allocated() - base) / 2**30


def measure(mixer: str, L: int, chunk_len: int, reps: int) -> dict:
    torch.manual_seed(0)
    model = MambaLMHeadModel(SIZES[mixer], 6).cuda().to(torch.bfloat16)
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(0, 5, (1, L), device="cuda")
    row = {"mixer": mixer, "L": L, "params": params}
    chunked = mixer != "transformer" and L > chunk_len

    def train_step():
        logits = chunked_forward(model, ids, chunk_len)[0] if chunked else model(ids)
        loss = torch.nn.functional.cross_entropy(logits[0, :-1].float(), ids[0, 1:])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def infer():
        with torch.inference_mode():
            if mixer == "transformer":
                model(ids).float().log_softmax(-1)
            else:
                stream_log_likelihood(model, ids, chunk_len)

    for name, fn in (("train", train_step), ("infer", infer)):
        try:
            row[f"{name}_s"], row[f"{name}_GiB"] = timed(fn, reps)
        except torch.cuda.OutOfMemoryError:
            row[f"{name}_s"], row[f"{name}_GiB"] = None, "OOM"
        torch.cuda.empty_cache()
    return row


def slope(rows: list[dict], key: str) -> float | None:
    """Least-squares exponent of time ~ L^k over the rows with L >= 16K."""
    pts = [(math.log(r["L"]), math.log(r[key])) for r in rows if r.get(key) and r["L"] >= 16384]
    if len(pts) < 2:
        return None
    mx, my = sum(x for x, _ in pts) / len(pts), sum(y for _, y in pts) / len(pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for mixer in dict.fromkeys(r["mixer"] for r in rows):
        for key, style in (("train_s", "o-"), ("infer_s", "s--")):
            pts = [(r["L"], r[key]) for r in rows if r["mixer"] == mixer and r.get(key)]
            if pts:
                axes[0].loglog(*zip(*pts, strict=True), style, label=f"{mixer} {key[:-2]}")
            mem = [(r["L"], r[key[:-2] + "_GiB"]) for r in rows if r["mixer"] == mixer and r.get(key)]
            if mem:
                axes[1].loglog(*zip(*mem, strict=True), style, label=f"{mixer} {key[:-2]}")
    axes[0].set(xlabel="sequence length (tokens)", ylabel="seconds", title="time, batch 1")
    axes[1].set(xlabel="sequence length (tokens)", ylabel="peak GiB", title="peak memory, batch 1")
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--mixers", default="mamba,mamba2,transformer")
    ap.add_argument("--lens", default="1024,4096,16384,65536,262144,1048576")
    ap.add_argument("--chunk-len", type=int, default=65536)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--max-seconds", type=float, default=40.0, help="skip the next L if its step would take longer")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for mixer in a.mixers.split(","):
        for L in (int(v) for v in a.lens.split(",")):
            row = measure(mixer, L, a.chunk_len, a.reps if L < 262144 else 1)
            rows.append(row)
            print(json.dumps(row), flush=True)
            growth = 16 if mixer == "transformer" else 4  # time per 4x length: attention is quadratic
            if row.get("train_s") is None or row["train_s"] * growth > a.max_seconds:
                break
    res = {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "triton": __import__("triton").__version__,
        "date": time.strftime("%Y-%m-%d"),
        "chunk_len": a.chunk_len,
        "rows": rows,
        "exponents": {
            m: {k: slope([r for r in rows if r["mixer"] == m], k) for k in ("train_s", "infer_s")}
            for m in dict.fromkeys(r["mixer"] for r in rows)
        },
    }
    (out / "long_context.json").write_text(json.dumps(res, indent=1))
    lines = [
        f"# Long context on one GPU ({res['device']}, torch {res['torch']}, triton {res['triton']}, {res['date']})",
        "",
        f"bf16 weights, batch 1, DNA vocabulary; training = forward + backward + AdamW step, in chunks of "
        f"{a.chunk_len} tokens with activation checkpointing (Mamba models); inference = streamed log-likelihood.",
        "",
        "| model | params | L | train s | train peak GiB | infer s | infer peak GiB |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        def f(v):
            return v if isinstance(v, str) else ("-" if v is None else f"{v:.3g}")

        lines.append(
            f"| {r['mixer']} | {r['params'] / 1e6:.0f}M | {r['L']:,} | {f(r.get('train_s'))} | "
            f"{f(r.get('train_GiB'))} | {f(r.get('infer_s'))} | {f(r.get('infer_GiB'))} |"
        )
    lines += ["", "Fitted exponent of time ~ L^k for L >= 16K: " + json.dumps(res["exponents"])]
    (out / "long_context.md").write_text("\n".join(lines) + "\n")
    plot(rows, out / "long_context.png")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
