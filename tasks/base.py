"""What every task provides to the training loop (DESIGN.md, "Tasks").

A task owns its data (``datamodule``), the network on top of the backbone (``build_model``),
the loss and the metrics. ``TokenLMTask`` is the shared base of the next-token tasks (DNA bases,
bytes, mu-law samples): LM head tied to the embedding, masked cross-entropy, perplexity.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from pathlib import Path

import lightning as L
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchmetrics import MeanMetric

from seqssm.config import EvaluateConfig, GenerateConfig
from seqssm.errors import ConfigError
from seqssm.models import MambaLMHeadModel, ModelConfig


class Task(ABC):
    name: str
    cfg: object  # the task's config dataclass

    def datamodule(self) -> L.LightningDataModule:
        """The task's data, built once (files are opened and checked on first use)."""
        if getattr(self, "_dm", None) is None:
            self._dm = self.make_datamodule()
        return self._dm

    @abstractmethod
    def make_datamodule(self) -> L.LightningDataModule: ...

    @abstractmethod
    def build_model(self, cfg: ModelConfig) -> nn.Module: ...

    @abstractmethod
    def loss(self, outputs: torch.Tensor, batch: dict) -> torch.Tensor: ...

    @abstractmethod
    def metrics(self) -> nn.ModuleDict:
        """Fresh torchmetrics, updated by ``update_metrics`` and read by ``compute_metrics``."""

    @abstractmethod
    def update_metrics(self, metrics: nn.ModuleDict, outputs: torch.Tensor, batch: dict) -> None: ...

    @abstractmethod
    def compute_metrics(self, metrics: nn.ModuleDict) -> dict[str, float]: ...

    def generate(self, net: nn.Module, cfg: GenerateConfig, out: Path) -> None:
        """Sample from ``net`` and write the samples under ``out`` (``python -m seqssm.generate``)."""
        raise ConfigError(f"task={self.name} has no generate step")

    def evaluate(self, net: nn.Module, cfg: EvaluateConfig, out: Path) -> dict[str, float]:
        """Score ``net``; write ``out/metrics.json`` and plots (``python -m seqssm.evaluate``)."""
        raise ConfigError(f"task={self.name} has no evaluate step")

    def baselines(self) -> dict[str, float]:
        """Numbers a trained model should beat, measured on the same validation data."""
        return {}

    def summary(self, results: dict[str, float]) -> str:
        """One line for the end of a run."""
        return ", ".join(f"{k} {v:.4g}" for k, v in results.items())


def masked_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy (nats) over positions where ``mask`` is true."""
    ce = F.cross_entropy(logits.float().flatten(0, -2), targets.flatten(), reduction="none")
    m = mask.flatten().to(ce.dtype)
    return (ce * m).sum() / m.sum().clamp(min=1)


class TokenLMTask(Task):
    """Next-token prediction over a vocabulary of ``vocab_size`` tokens."""

    vocab_size: int

    def build_model(self, cfg: ModelConfig) -> nn.Module:
        return MambaLMHeadModel(cfg, self.vocab_size)

    def loss(self, outputs: torch.Tensor, batch: dict) -> torch.Tensor:
        return masked_cross_entropy(outputs, batch["targets"], batch["mask"])

    def metrics(self) -> nn.ModuleDict:
        return nn.ModuleDict({"nll": MeanMetric(), "acc": MeanMetric()})

    def update_metrics(self, metrics: nn.ModuleDict, outputs: torch.Tensor, batch: dict) -> None:
        mask = batch["mask"]
        ce = F.cross_entropy(outputs.float().flatten(0, -2), batch["targets"].flatten(), reduction="none")
        correct = (outputs.argmax(-1) == batch["targets"]).flatten().float()
        m = mask.flatten()
        metrics["nll"].update(ce[m])
        metrics["acc"].update(correct[m])

    def compute_metrics(self, metrics: nn.ModuleDict) -> dict[str, float]:
        nll = float(metrics["nll"].compute())
        return {
            "loss": nll,
            "ppl": math.exp(nll),
            "bits_per_token": nll / math.log(2),
            "acc": float(metrics["acc"].compute()),
        }
