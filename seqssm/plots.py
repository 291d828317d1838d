"""Plots written at the end of a run (PNG, through matplotlib's non-interactive backend)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from seqssm.io import atomic_write  # noqa: E402


def read_metrics_csv(path: str | os.PathLike) -> dict[str, list[tuple[int, float]]]:
    """Lightning's CSVLogger file -> {metric: [(step, value), ...]}."""
    series: dict[str, list[tuple[int, float]]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            step = int(row.get("step") or 0)
            for key, value in row.items():
                if key not in ("step", "epoch") and value not in ("", None):
                    series.setdefault(key, []).append((step, float(value)))
    return series


def plot_loss_curve(metrics_csv: str | os.PathLike, out_png: str | os.PathLike, title: str) -> None:
    series = read_metrics_csv(metrics_csv)
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, style in (("train/loss", "-"), ("val/loss", "o-")):
        if key in series:
            steps, values = zip(*series[key], strict=True)
            ax.plot(steps, values, style, label=key)
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats per token)")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(Path(out_png), lambda p: fig.savefig(p, format="png", dpi=100))
    plt.close(fig)
