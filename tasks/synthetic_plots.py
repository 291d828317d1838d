"""Plots of the synthetic suite: accuracy vs evaluation length (extrapolation, as the Mamba paper's
Table 2 / Figure) and accuracy vs state size (MQAR, as the Mamba-2 paper's Figure 8)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from seqssm.io import atomic_write  # noqa: E402


def _save(fig, out_png: Path) -> None:
    fig.tight_layout()
    atomic_write(Path(out_png), lambda p: fig.savefig(p, format="png", dpi=100))
    plt.close(fig)


def plot_accuracy(runs: dict[str, dict], out_png: Path, kind: str, train_len: int) -> None:
    """``runs``: label -> an evaluation result (``by_length``: {length: {"acc": ...}}), one curve each."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, r in runs.items():
        lengths = sorted(int(n) for n in r["by_length"])
        ax.plot(lengths, [r["by_length"][str(n)]["acc"] for n in lengths], "o-", label=label)
    ax.axvline(train_len, color="grey", ls="--", lw=1, label=f"training length {train_len}")
    ax.set_xscale("log", base=2)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("evaluation sequence length")
    ax.set_ylabel("accuracy on answer tokens")
    ax.set_title(f"{kind}: accuracy vs length")
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, out_png)


def plot_vs_state(series: dict[str, dict[int, float]], out_png: Path, title: str) -> None:
    """``series``: label -> {d_state: accuracy}."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, points in series.items():
        xs = sorted(points)
        ax.plot(xs, [points[x] for x in xs], "o-", label=label)
    ax.set_xscale("log", base=2)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("d_state")
    ax.set_ylabel("accuracy on answer tokens")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, out_png)
