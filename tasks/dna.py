"""``task=dna``: next-base prediction on a genome (FASTA through pyfaidx).

Each record is split into a held-out validation region (a block of val_fraction of it, from its
middle) and training regions (the rest, on both sides). Training draws random windows of max_len + 1 bases from the
training regions (reverse-complemented with probability 1/2 when ``rc_aug``); validation tiles
the held-out regions, so every held-out base after the first of its region is predicted once.
The embedded default is the human mitochondrial genome from hg38 (chrM, 16,569 bp).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

from seqssm.config import GenerateConfig
from seqssm.errors import ConfigError, DataError
from seqssm.generation import generate
from seqssm.genome import BASES, PAD, VOCAB_SIZE, Genome, embedded_genome, reverse_complement, tokenize
from seqssm.io import write_text
from seqssm.markov import MarkovChain
from seqssm.tasks.base import TokenLMTask

Region = tuple[str, int, int]  # record name, start, end (0-based, end exclusive)


@dataclass
class DNADataConfig:
    fasta: str | None = None  # None: the shipped hg38 chrM
    max_len: int = 512
    batch_size: int = 8
    val_fraction: float = 0.1
    rc_aug: bool = False
    windows_per_epoch: int = 1024
    num_workers: int = 0

    def validate(self) -> None:
        if self.max_len < 2:
            raise ConfigError(f"task.data.max_len={self.max_len}: expected >= 2")
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"task.data.val_fraction={self.val_fraction}: expected a number in (0, 1)")
        if self.batch_size < 1 or self.windows_per_epoch < 1:
            raise ConfigError("task.data.batch_size and task.data.windows_per_epoch must be >= 1")


@dataclass
class DNAConfig:
    name: str = "dna"
    data: DNADataConfig = field(default_factory=DNADataConfig)
    markov_order: int = 2  # the baseline reported beside the model


def pad_window(ids: torch.Tensor, length: int) -> dict:
    """A window of up to ``length`` tokens -> inputs/targets/mask of length - 1 (PAD after the end)."""
    w = torch.full((length,), PAD, dtype=torch.int64)
    w[: ids.numel()] = ids
    return {"inputs": w[:-1], "targets": w[1:], "mask": w[1:] != PAD}


class RandomWindows(Dataset):
    """``n`` random windows of ``length`` bases from ``regions``, drawn from a seeded generator per
    (seed, epoch, index): the same run gives the same windows; each epoch gives new ones."""

    def __init__(self, genome: Genome, regions: list[Region], length: int, n: int, rc_aug: bool, seed: int):
        self.genome, self.regions, self.length, self.n = genome, regions, length, n
        self.rc_aug, self.seed, self.epoch = rc_aug, seed, 0
        sizes = np.array([end - start for _, start, end in regions], dtype=np.float64)
        self.weights = sizes / sizes.sum()

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        rng = np.random.default_rng([self.seed, self.epoch, i])
        name, start, end = self.regions[rng.choice(len(self.regions), p=self.weights)]
        span = min(self.length, end - start)
        s = int(rng.integers(start, end - span + 1))
        ids = self.genome.fetch(name, s, s + span)
        if self.rc_aug and rng.random() < 0.5:
            ids = reverse_complement(ids)
        return pad_window(ids, self.length)


class TiledWindows(Dataset):
    """Windows of ``length`` bases overlapping by one, covering each region exactly once."""

    def __init__(self, genome: Genome, regions: list[Region], length: int):
        self.genome, self.length = genome, length
        self.windows = [
            (name, s, min(s + length, end)) for name, start, end in regions for s in range(start, end - 1, length - 1)
        ]

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> dict:
        name, s, e = self.windows[i]
        return pad_window(self.genome.fetch(name, s, e), self.length)


class DNADataModule(L.LightningDataModule):
    def __init__(self, cfg: DNADataConfig, seed: int):
        super().__init__()
        self.cfg, self.seed = cfg, seed
        path = cfg.fasta or embedded_genome()
        self.genome = Genome(path, rebuild_index=cfg.fasta is not None)
        self.train_regions: list[Region] = []
        self.val_regions: list[Region] = []
        for name, length in self.genome.lengths.items():
            lo = int(length * (1 - cfg.val_fraction) / 2)
            hi = lo + int(length * cfg.val_fraction)
            if hi - lo >= 2 and lo >= 2:
                self.train_regions += [(name, 0, lo), (name, hi, length)]
                self.val_regions.append((name, lo, hi))
        if not self.train_regions:
            raise DataError(
                f"task.data.fasta={self.genome.path}: no record is long enough to split into training and "
                f"validation regions (val_fraction={cfg.val_fraction})"
            )
        self.train_set = RandomWindows(
            self.genome, self.train_regions, cfg.max_len + 1, cfg.windows_per_epoch, cfg.rc_aug, seed
        )
        self.val_set = TiledWindows(self.genome, self.val_regions, cfg.max_len + 1)

    def set_epoch(self, epoch: int) -> None:
        self.train_set.epoch = epoch

    def _loader(self, ds: Dataset, shuffle: bool) -> DataLoader:
        return DataLoader(
            ds,
            batch_size=self.cfg.batch_size,
            shuffle=shuffle,
            num_workers=self.cfg.num_workers,
            persistent_workers=False,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=False)  # windows are already random

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)


class DNATask(TokenLMTask):
    name = "dna"
    vocab_size = VOCAB_SIZE

    def __init__(self, cfg: DNAConfig, seed: int) -> None:
        self.cfg, self.seed = cfg, seed
        self._dm: DNADataModule | None = None

    def datamodule(self) -> DNADataModule:
        if self._dm is None:
            self._dm = DNADataModule(self.cfg.data, self.seed)
        return self._dm

    def baselines(self, max_bases: int = 20_000_000) -> dict[str, float]:
        """Order-k Markov chain fitted on (up to ``max_bases`` of) the training regions, scored on
        exactly the validation targets."""
        dm, k = self.datamodule(), self.cfg.markov_order
        chain, fitted = MarkovChain(k, 5), 0
        for name, start, end in dm.train_regions:
            end = min(end, start + max_bases - fitted)
            if end > start:
                chain.fit(dm.genome.fetch(name, start, end))
                fitted += end - start
        total, n = 0.0, 0
        for i in range(len(dm.val_set)):
            w = dm.val_set[i]
            seq = torch.cat([w["inputs"][:1], w["targets"][w["mask"]]])
            t, c = chain.nll(seq)
            total, n = total + t, n + c
        return {f"markov{k}_ppl": float(np.exp(total / n))}

    def generate(self, net: nn.Module, cfg: GenerateConfig, out: Path) -> None:
        """Sample ``num_samples`` sequences of ``max_new_tokens`` bases after ``prompt`` (bases; default:
        one random base) and write them to ``out/samples.fa``."""
        device = next(net.parameters()).device
        g = torch.Generator().manual_seed(cfg.seed)
        records = []
        for first in range(0, cfg.num_samples, cfg.batch_size):
            n = min(cfg.batch_size, cfg.num_samples - first)
            if cfg.prompt:
                prompt = tokenize(cfg.prompt).repeat(n, 1)
            else:
                prompt = torch.randint(0, 4, (n, 1), generator=g)
            ids = generate(
                net, prompt.to(device), cfg.max_new_tokens, cfg.temperature, cfg.top_k, cfg.top_p, seed=cfg.seed + first
            )
            for row in ids.cpu().tolist():
                records.append("".join(BASES[t] if t < len(BASES) else "N" for t in row))
        lines = [f">sample_{i:03d}\n{seq}" for i, seq in enumerate(records)]
        write_text(out / "samples.fa", "\n".join(lines) + "\n")
        print(f"seqssm: wrote {len(records)} sequences to {out / 'samples.fa'}")

    def summary(self, results: dict[str, float]) -> str:
        k = self.cfg.markov_order
        line = f"validation perplexity per base {results['val/ppl']:.4f}"
        if f"markov{k}_ppl" in results:
            line += f" (order-{k} Markov: {results[f'markov{k}_ppl']:.4f})"
        return line + f", accuracy {results['val/acc']:.4f}"
