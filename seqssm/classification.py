"""Classification scores from a confusion matrix, and the accuracy-vs-context-length plot.

With C[i, j] the number of examples of true class i predicted as j, s = Σ C, c = Σ_k C[k, k],
t_k = Σ_j C[k, j] (true counts) and p_k = Σ_i C[i, k] (predicted counts):

    accuracy  = c / s
    macro-F1  = (1/K) Σ_k 2 C[k,k] / (t_k + p_k)             (a class never true nor predicted: F1 = 0)
    MCC       = (c·s - Σ_k p_k t_k) / sqrt((s² - Σ_k p_k²)(s² - Σ_k t_k²))
                (Gorodkin 2004, the K-class Matthews correlation; 0 when a factor of the root is 0)
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from seqssm.io import atomic_write  # noqa: E402


def confusion(pred: torch.Tensor, true: torch.Tensor, n_classes: int) -> torch.Tensor:
    """(n_classes, n_classes) int64 counts, rows = true class, columns = prediction."""
    flat = true.long() * n_classes + pred.long()
    return torch.bincount(flat, minlength=n_classes * n_classes).view(n_classes, n_classes)


def scores(cm: torch.Tensor) -> dict[str, float]:
    """accuracy, macro_f1, mcc and n of a confusion matrix (formulas in the module docstring)."""
    cm = cm.double()
    s, c = cm.sum(), cm.diag().sum()
    t, p = cm.sum(1), cm.sum(0)
    denom = t + p
    f1 = torch.where(denom > 0, 2 * cm.diag() / denom.clamp(min=1), torch.zeros_like(denom))
    cov = c * s - (p * t).sum()
    root = (s * s - (p * p).sum()) * (s * s - (t * t).sum())
    mcc = float(cov / root.sqrt()) if root > 0 else 0.0
    return {"accuracy": float(c / s) if s > 0 else math.nan, "macro_f1": float(f1.mean()), "mcc": mcc, "n": int(s)}


def plot_accuracy_vs_length(
    curves: dict[str, dict[int, float]], chance: float, out_png: str | os.PathLike, title: str
) -> None:
    """One line per model/baseline: accuracy against window length (log2 axis), chance dashed."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, points in curves.items():
        lengths = sorted(points)
        ax.plot(lengths, [points[n] for n in lengths], "o-", label=label)
    ax.axhline(chance, color="gray", linestyle="--", label=f"chance ({chance:.2f})")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("window length (bases)")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(Path(out_png), lambda p: fig.savefig(p, format="png", dpi=100))
    plt.close(fig)
