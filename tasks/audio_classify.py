"""``task=audio_classify``: which digit is spoken in a 1-second 16 kHz clip (SC09 layout; default:
the offline synthesized digits, ``seqssm/digits.py``). The network is ``MelClassifier`` (log-mel
frames -> Mamba blocks -> mean pool -> 10 logits). Its checkpoint is the judge of ``task=audio``'s
sample metrics (IS, mIS, AM, FID): ``python -m seqssm.evaluate task=audio task.classifier=PATH``.

Training clips are augmented: a random shift of up to ``shift_ms`` (silence fills the gap) and a
random gain in [0.5, 1.5], drawn from a generator seeded by (seed, epoch, index).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from torchmetrics import MeanMetric

from seqssm.audio import CLIP_LEN, SAMPLE_RATE
from seqssm.config import EvaluateConfig
from seqssm.digits import offline_digits
from seqssm.errors import ConfigError
from seqssm.io import write_json
from seqssm.models import ModelConfig
from seqssm.models.mel_classifier import MelClassifier
from seqssm.sc09 import DIGITS, load_clips, split_files
from seqssm.tasks.base import Task


@dataclass
class AudioClassifyDataConfig:
    root: str | None = None  # an SC09 folder (python -m data_prep.sc09); None: the offline digits
    batch_size: int = 32
    shift_ms: float = 100.0  # augmentation: random time shift of up to this many milliseconds
    num_workers: int = 0

    def validate(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"task.data.batch_size={self.batch_size}: expected >= 1")
        if not 0 <= self.shift_ms < 1000:
            raise ConfigError(f"task.data.shift_ms={self.shift_ms}: expected a number in [0, 1000)")


@dataclass
class AudioClassifyConfig:
    name: str = "audio_classify"
    data: AudioClassifyDataConfig = field(default_factory=AudioClassifyDataConfig)
    n_mels: int = 40

    def validate(self) -> None:
        if self.n_mels < 8:
            raise ConfigError(f"task.n_mels={self.n_mels}: expected >= 8")


def data_root(root: str | None) -> Path:
    return Path(root).expanduser() if root else offline_digits()


class Clips(Dataset):
    """int16 clips + labels -> {"inputs": float waveform, "targets": label}, augmented if ``shift``."""

    def __init__(self, pcm: torch.Tensor, labels: torch.Tensor, shift: int = 0, seed: int = 0) -> None:
        self.pcm, self.labels, self.shift, self.seed, self.epoch = pcm, labels, shift, seed, 0

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        x = self.pcm[i].float() / 32767
        if self.shift:
            rng = np.random.default_rng([self.seed, self.epoch, i])
            s = int(rng.integers(-self.shift, self.shift + 1))
            x = torch.roll(x, s)
            if s > 0:
                x[:s] = 0
            elif s < 0:
                x[s:] = 0
            x = x * float(rng.uniform(0.5, 1.5))
        return {"inputs": x, "targets": self.labels[i]}


class AudioClassifyDataModule(L.LightningDataModule):
    def __init__(self, cfg: AudioClassifyDataConfig, seed: int) -> None:
        super().__init__()
        self.cfg = cfg
        root = data_root(cfg.root)
        files = split_files(root)
        where = f"task.data.root={root}"
        shift = int(cfg.shift_ms * SAMPLE_RATE / 1000)
        self.train_set = Clips(*load_clips(files["train"], CLIP_LEN, where), shift=shift, seed=seed)
        self.val_set = Clips(*load_clips(files["validation"], CLIP_LEN, where))
        self.test_files = files["testing"]
        self.root = root

    def set_epoch(self, epoch: int) -> None:
        self.train_set.epoch = epoch

    def train_dataloader(self) -> DataLoader:
        g = torch.Generator().manual_seed(self.train_set.seed + self.train_set.epoch)
        drop_last = len(self.train_set) > self.cfg.batch_size
        return DataLoader(self.train_set, self.cfg.batch_size, shuffle=True, generator=g,
                          num_workers=self.cfg.num_workers, drop_last=drop_last)  # fmt: skip

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, self.cfg.batch_size, num_workers=self.cfg.num_workers)


class AudioClassifyTask(Task):
    name = "audio_classify"

    def __init__(self, cfg: AudioClassifyConfig, seed: int) -> None:
        self.cfg, self.seed = cfg, seed

    def make_datamodule(self) -> AudioClassifyDataModule:
        return AudioClassifyDataModule(self.cfg.data, self.seed)

    def build_model(self, cfg: ModelConfig) -> nn.Module:
        return MelClassifier(cfg, len(DIGITS), SAMPLE_RATE, self.cfg.n_mels)

    def loss(self, outputs: torch.Tensor, batch: dict) -> torch.Tensor:
        return F.cross_entropy(outputs.float(), batch["targets"])

    def metrics(self) -> nn.ModuleDict:
        return nn.ModuleDict({"nll": MeanMetric(), "acc": MeanMetric()})

    def update_metrics(self, metrics: nn.ModuleDict, outputs: torch.Tensor, batch: dict) -> None:
        metrics["nll"].update(F.cross_entropy(outputs.float(), batch["targets"], reduction="none"))
        metrics["acc"].update((outputs.argmax(-1) == batch["targets"]).float())

    def compute_metrics(self, metrics: nn.ModuleDict) -> dict[str, float]:
        return {"loss": float(metrics["nll"].compute()), "acc": float(metrics["acc"].compute())}

    @torch.inference_mode()
    def evaluate(self, net: nn.Module, cfg: EvaluateConfig, out: Path) -> dict[str, float]:
        """Accuracy on the testing split (speakers never seen in training or validation), overall
        and per digit -> ``out/metrics.json``."""
        dm = self.datamodule()
        pcm, labels = load_clips(dm.test_files, CLIP_LEN, f"task.data.root={dm.root}")
        device = next(net.parameters()).device
        preds = torch.cat([
            net(pcm[i : i + cfg.batch_size].float().div(32767).to(device)).argmax(-1).cpu()
            for i in range(0, len(labels), cfg.batch_size)
        ])  # fmt: skip
        correct = (preds == labels).float()
        results = {"test/acc": float(correct.mean()), "test/clips": len(labels)}
        for d, word in enumerate(DIGITS):
            results[f"test/acc_{word}"] = float(correct[labels == d].mean())
        write_json(out / "metrics.json", results)
        print(f"seqssm: test accuracy {results['test/acc']:.4f} on {len(labels)} clips; wrote {out / 'metrics.json'}")
        return results

    def summary(self, results: dict[str, float]) -> str:
        return f"validation accuracy {results['val/acc']:.4f}, cross-entropy {results['val/loss']:.4f}"
