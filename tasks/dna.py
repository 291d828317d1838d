"""``task=dna``: next-base prediction on a genome (FASTA through pyfaidx, optional BED of intervals).

Without a BED, each record is split into a held-out validation region (a block of val_fraction of
it, from its middle) and training regions (the rest, on both sides). With ``bed`` (HyenaDNA's
layout: chrom, start, end, split; ``tasks/dna_regions.py``), the intervals of split ``train_split``
are the training regions and those of ``val_split`` the validation regions; a window longer than
its interval is stretched around it inside the chromosome (never past an end).

Training draws random windows of max_len + 1 bases from the training regions (reverse-complemented
with probability 1/2 when ``rc_aug``); one dataset item is one whole batch, so a sequence-length
warmup (``length_warmup``: stages of max_len and batch size, HyenaDNA section 3.2) changes the
window length during one run, in every DataLoader worker, without restarting. Validation tiles the
held-out regions at ``max_len``, so every held-out base after the first of its region is predicted once.
Windows are read through a per-process pyfaidx handle (no copy of a chromosome per sample).
Bad bases are found only when read (the sequence is not scanned at start-up): a training window that
cannot be read (a character that is not a nucleotide code, a file cut short after indexing) is
replaced by the next window drawn from its generator, a validation window by an all-padding one
(scored on no position); each is counted and logged up to ``max_bad_records`` (``seqssm/bad_data.py``).
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

from seqssm.bad_data import BadRecords, BadRecordsMixin
from seqssm.config import GenerateConfig
from seqssm.errors import ConfigError, DataError
from seqssm.generation import generate
from seqssm.genome import BASES, PAD, VOCAB_SIZE, Genome, embedded_genome, reverse_complement, tokenize
from seqssm.io import write_text
from seqssm.markov import MarkovChain
from seqssm.resume import OneLineLoader, train_loader
from seqssm.tasks.base import TokenLMTask
from seqssm.tasks.dna_regions import LengthSchedule, LengthStage, place_window, read_bed

Region = tuple[str, int, int]  # record name, start, end (0-based, end exclusive)


@dataclass
class DNADataConfig:
    fasta: str | None = None  # None: the shipped hg38 chrM
    bed: str | None = None  # intervals with a split column (chrom start end split); None: val_fraction blocks
    train_split: str = "train"  # BED split names
    val_split: str = "valid"
    max_len: int = 512
    batch_size: int = 8
    val_fraction: float = 0.1
    rc_aug: bool = False
    windows_per_epoch: int = 1024  # an epoch is ceil(windows_per_epoch / batch_size) batches
    length_warmup: list[LengthStage] = field(default_factory=list)  # stages before max_len (dna_regions.py)
    num_workers: int = 0
    max_bad_records: int = 100  # unreadable windows skipped while streaming before the run stops (bad_data.py)

    def validate(self) -> None:
        if self.max_bad_records < 0:
            raise ConfigError(f"task.data.max_bad_records={self.max_bad_records}: expected >= 0")
        if self.max_len < 2:
            raise ConfigError(f"task.data.max_len={self.max_len}: expected >= 2")
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"task.data.val_fraction={self.val_fraction}: expected a number in (0, 1)")
        if self.batch_size < 1 or self.windows_per_epoch < 1:
            raise ConfigError("task.data.batch_size and task.data.windows_per_epoch must be >= 1")
        LengthSchedule(self.length_warmup, self.max_len, self.batch_size)  # checks the stages


@dataclass
class DNAConfig:
    name: str = "dna"
    data: DNADataConfig = field(default_factory=DNADataConfig)
    markov_order: int = 2  # the baseline reported beside the model

    def validate(self) -> None:
        self.data.validate()


def pad_window(ids: torch.Tensor, length: int) -> dict:
    """A window of up to ``length`` tokens -> inputs/targets/mask of length - 1 (PAD after the end)."""
    w = torch.full((length,), PAD, dtype=torch.int64)
    w[: ids.numel()] = ids
    return {"inputs": w[:-1], "targets": w[1:], "mask": w[1:] != PAD}


class TrainBatches(Dataset):
    """Item i is training batch i of the current epoch: ``batch_size`` random windows of ``max_len`` + 1
    bases from ``regions`` (both from the length schedule at the batch's global index). Window k of
    the epoch is drawn from a generator seeded by (seed, epoch, k): the same run gives the same windows;
    each epoch gives new ones. An interval is picked with probability proportional to its length. A
    window that cannot be read is counted in ``bad`` and replaced by the generator's next draw."""

    def __init__(
        self,
        genome: Genome,
        regions: list[Region],
        schedule: LengthSchedule,
        n_batches: int,
        last_batch: int,
        rc_aug: bool,
        stretch: bool,
        seed: int,
        bad: BadRecords,
    ):
        self.genome, self.regions, self.schedule, self.n = genome, regions, schedule, n_batches
        self.last_batch, self.rc_aug, self.stretch, self.seed, self.epoch = last_batch, rc_aug, stretch, seed, 0
        self.bad = bad
        sizes = np.array([end - start for _, start, end in regions], dtype=np.float64)
        self.weights = sizes / sizes.sum()

    def __len__(self) -> int:
        return self.n

    def window(self, k: int, length: int) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, self.epoch, k])
        while True:  # ends: every bad window is counted, and more than max_bad_records raise
            name, start, end = self.regions[rng.choice(len(self.regions), p=self.weights)]
            s, e = place_window(rng, start, end, length, self.genome.lengths[name], self.stretch)
            try:
                ids = self.genome.fetch(name, s, e)
                break
            except DataError as err:
                self.bad.skip(f"{err} (training window {k} of epoch {self.epoch}: drawing another)")
        if self.rc_aug and rng.random() < 0.5:
            ids = reverse_complement(ids)
        return ids

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < self.n:
            raise IndexError(f"batch {i} of an epoch of {self.n}")
        first = self.epoch * self.n
        max_len, size = self.schedule.at(first + i)
        if i == self.n - 1 and self.last_batch and (max_len, size) == self.schedule.final:
            size = self.last_batch  # windows_per_epoch not a multiple of batch_size: a shorter last batch
        k0 = self.schedule.windows_before(first, first + i)
        rows = [pad_window(self.window(k0 + j, max_len + 1), max_len + 1) for j in range(size)]
        return {key: torch.stack([r[key] for r in rows]) for key in rows[0]}


def only_item(items: list[dict]) -> dict:
    """Collate for a DataLoader of batch size 1 over a dataset whose items are whole batches."""
    return items[0]


class TiledWindows(Dataset):
    """Windows of ``length`` bases overlapping by one, covering each region exactly once. A window that
    cannot be read is counted in ``bad`` and comes back as padding only (no position is scored)."""

    def __init__(self, genome: Genome, regions: list[Region], length: int, bad: BadRecords):
        self.genome, self.length, self.bad = genome, length, bad
        self.windows = [
            (name, s, min(s + length, end)) for name, start, end in regions for s in range(start, end - 1, length - 1)
        ]

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> dict:
        name, s, e = self.windows[i]
        try:
            ids = self.genome.fetch(name, s, e)
        except DataError as err:
            self.bad.skip(f"{err} (validation window {i}: not scored)")
            ids = torch.empty(0, dtype=torch.int64)
        return pad_window(ids, self.length)


class DNADataModule(BadRecordsMixin, L.LightningDataModule):
    def __init__(self, cfg: DNADataConfig, seed: int):
        super().__init__()
        self.cfg, self.seed = cfg, seed
        self.bad = BadRecords(cfg.max_bad_records)
        path = cfg.fasta or embedded_genome()
        self.genome = Genome(path, rebuild_index=cfg.fasta is not None)
        if cfg.bed is not None:
            self.train_regions, self.val_regions = self.bed_regions(cfg)
        else:
            self.train_regions, self.val_regions = self.block_regions(cfg)
        schedule = LengthSchedule(cfg.length_warmup, cfg.max_len, cfg.batch_size)
        n_batches = -(-cfg.windows_per_epoch // cfg.batch_size)
        self.train_set = TrainBatches(
            self.genome,
            self.train_regions,
            schedule,
            n_batches,
            cfg.windows_per_epoch % cfg.batch_size,
            cfg.rc_aug,
            stretch=cfg.bed is not None,
            seed=seed,
            bad=self.bad,
        )
        self.val_set = TiledWindows(self.genome, self.val_regions, cfg.max_len + 1, self.bad)

    def block_regions(self, cfg: DNADataConfig) -> tuple[list[Region], list[Region]]:
        train: list[Region] = []
        val: list[Region] = []
        for name, length in self.genome.lengths.items():
            lo = int(length * (1 - cfg.val_fraction) / 2)
            hi = lo + int(length * cfg.val_fraction)
            if hi - lo >= 2 and lo >= 2:
                train += [(name, 0, lo), (name, hi, length)]
                val.append((name, lo, hi))
        if not train:
            raise DataError(
                f"task.data.fasta={self.genome.path}: no record is long enough to split into training and "
                f"validation regions (val_fraction={cfg.val_fraction})"
            )
        return train, val

    def bed_regions(self, cfg: DNADataConfig) -> tuple[list[Region], list[Region]]:
        splits = read_bed(cfg.bed, self.genome.lengths)
        for key in ("train_split", "val_split"):
            name = getattr(cfg, key)
            if name not in splits:
                raise DataError(
                    f"task.data.bed={cfg.bed}: no interval with split {name!r} (task.data.{key}); "
                    f"the file has {', '.join(sorted(splits))}"
                )
        val = [r for r in splits[cfg.val_split] if r[2] - r[1] >= 2]
        if not val:
            raise DataError(f"task.data.bed={cfg.bed}: every {cfg.val_split!r} interval is shorter than 2 bases")
        return splits[cfg.train_split], val

    def set_epoch(self, epoch: int) -> None:
        self.train_set.epoch = epoch

    def train_dataloader(self) -> DataLoader:
        # One item is one batch (its length follows the schedule); the windows are already random.
        # Resumable mid-epoch (seqssm.resume), counting items, that is batches.
        return train_loader(self.train_set, 1, self.cfg.num_workers, collate_fn=only_item)

    def val_dataloader(self) -> DataLoader:
        return OneLineLoader(self.val_set, batch_size=self.cfg.batch_size, num_workers=self.cfg.num_workers)


class DNATask(TokenLMTask):
    name = "dna"
    vocab_size = VOCAB_SIZE

    def __init__(self, cfg: DNAConfig, seed: int) -> None:
        self.cfg, self.seed = cfg, seed

    def make_datamodule(self) -> DNADataModule:
        return DNADataModule(self.cfg.data, self.seed)

    def baselines(self, max_bases: int = 20_000_000) -> dict[str, float]:
        """Order-k Markov chain fitted on (up to ``max_bases`` of) the training regions, scored on
        exactly the validation targets (a region or window that cannot be read is counted and left out)."""
        dm, k = self.datamodule(), self.cfg.markov_order
        chain, fitted = MarkovChain(k, 5), 0
        for name, start, end in dm.train_regions:
            end = min(end, start + max_bases - fitted)
            if end > start:
                try:
                    chain.fit(dm.genome.fetch(name, start, end))
                except DataError as err:
                    dm.bad.skip(f"{err} (Markov baseline: region left out)")
                    continue
                fitted += end - start
        total, n = 0.0, 0
        for i in range(len(dm.val_set)):
            if n >= max_bases:  # a very large validation set: score its first max_bases targets
                break
            w = dm.val_set[i]
            if not w["mask"].any():  # a window that could not be read
                continue
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
