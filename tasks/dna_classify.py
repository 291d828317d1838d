"""``task=dna_classify``: sequence classification — species from a window of their genome, or the labelled
sequences of Genomic-Benchmarks-style folders or a labelled FASTA (``tasks/dna_labelled.py``).

Species (the default: the shipped mitochondrial genomes of human, mouse and zebrafish, a miniature of
the Mamba paper's Great Apes task, section 4.3.3; any FASTA per species works, e.g. whole genomes):
each record of each genome is split into three blocks,

    [0, v)            validation (checkpoint selection)      v = val_fraction · n
    [lo, lo + m)      test, the middle block                 m = test_fraction · n, lo = (n - m) / 2
    the rest          training

(the test block is the block ``task=dna`` holds out with ``task.data.val_fraction`` = test_fraction, so
a model pretrained there has never seen it). A training batch has one window length drawn from
``train_lengths`` (default: ``lengths``, powers of two), a class drawn uniformly per window, and a
random window of that class's training blocks; ``evaluate`` scores ``eval_windows`` seeded windows per
class at each length from the test blocks, beside per-class order-k Markov chains (the likelihood
classifier) fitted on the training blocks. Loss: cross-entropy of the class logits
(``seqssm.models.classifier``: mean or last-token head).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from torchmetrics import MeanMetric

from seqssm.classification import confusion, plot_accuracy_vs_length, scores
from seqssm.config import EvaluateConfig
from seqssm.errors import ConfigError, DataError
from seqssm.genome import PAD, VOCAB_SIZE, Genome, embedded_genome, reverse_complement
from seqssm.io import write_json
from seqssm.markov import MarkovChain
from seqssm.models import ModelConfig
from seqssm.models.classifier import POOLINGS, SequenceClassifier
from seqssm.tasks.base import Task
from seqssm.tasks.dna_labelled import Labelled, read_folder_split, read_labelled_fasta

Region = tuple[str, int, int]  # record, start, end (0-based, end exclusive)
MITO = {"human": "hg38_chrM", "mouse": "mm10_chrM", "zebrafish": "danRer10_chrM"}


@dataclass
class ClassifyDataConfig:
    species: dict[str, str] | None = None  # class -> FASTA path; null (and no folder/fasta): the shipped mito genomes
    folder: str | None = None  # Genomic Benchmarks layout: folder/train/<class>/*.txt, folder/test/<class>/*.txt
    train_fasta: str | None = None  # labelled FASTA ('>name label=CLASS'); with test_fasta
    test_fasta: str | None = None
    lengths: list[int] = field(default_factory=lambda: [32, 64, 128, 256, 512, 1024, 2048])  # species: evaluated
    train_lengths: list[int] | None = None  # species: window lengths of training and validation; null: lengths
    test_fraction: float = 0.2  # species: the middle block of every record, held out for evaluate
    val_fraction: float = 0.05  # species: block at each record's start; folder/FASTA: share of the training set
    eval_windows: int = 100  # species: test windows per class and length
    val_windows: int = 16  # species: validation windows per class and length
    windows_per_epoch: int = 1024  # species: training windows per epoch
    batch_size: int = 16
    rc_aug: bool = False  # reverse-complement each training sequence with probability 1/2
    num_workers: int = 0

    def validate(self) -> None:
        sources = [self.species is not None, self.folder is not None, self.train_fasta is not None]
        if sum(sources) > 1:
            raise ConfigError("task.data: give one of species, folder or train_fasta (+ test_fasta), not several")
        if (self.train_fasta is None) != (self.test_fasta is None):
            raise ConfigError("task.data.train_fasta and task.data.test_fasta go together: give both")
        for key in ("lengths", "train_lengths"):
            value = getattr(self, key)
            if value is not None and (not value or any(n < 2 for n in value)):
                raise ConfigError(f"task.data.{key}={value}: expected a list of window lengths >= 2")
        if not (
            0 < self.test_fraction < 1 and 0 < self.val_fraction < 1 and self.test_fraction + self.val_fraction < 1
        ):
            raise ConfigError(
                f"task.data.test_fraction={self.test_fraction}, val_fraction={self.val_fraction}: expected "
                "fractions in (0, 1) with a sum below 1"
            )
        for key in ("eval_windows", "val_windows", "windows_per_epoch", "batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"task.data.{key}={getattr(self, key)}: expected >= 1")


@dataclass
class DNAClassifyConfig:
    name: str = "dna_classify"
    data: ClassifyDataConfig = field(default_factory=ClassifyDataConfig)
    head: str = "mean"  # pooling before the linear head: "mean" over positions or the "last" token
    markov_order: int = 4  # the per-class Markov chain baseline of evaluate

    def validate(self) -> None:
        self.data.validate()
        if self.head not in POOLINGS:
            raise ConfigError(f"task.head={self.head!r}: expected one of {', '.join(POOLINGS)}")


def split_record(n: int, val_fraction: float, test_fraction: float) -> tuple[Region, list[Region], Region]:
    """Blocks of a record of n bases, as (val, train, test) with the record name left empty."""
    v = int(n * val_fraction)
    lo = int(n * (1 - test_fraction) / 2)
    hi = lo + int(n * test_fraction)
    return ("", 0, v), [("", v, lo), ("", hi, n)], ("", lo, hi)


def pick_window(rng: np.random.Generator, regions: list[Region], length: int) -> tuple[str, int]:
    """A uniformly random window of ``length`` bases inside one of ``regions`` (record, start)."""
    room = np.array([max(0, e - s - length + 1) for _, s, e in regions], dtype=np.float64)
    i = int(rng.choice(len(regions), p=room / room.sum()))
    name, s, _ = regions[i]
    return name, s + int(rng.integers(0, int(room[i])))


class SpeciesData:
    """The genomes of every class and their validation / training / test blocks."""

    def __init__(self, cfg: ClassifyDataConfig) -> None:
        paths = cfg.species or {c: str(embedded_genome(name)) for c, name in MITO.items()}
        self.classes = sorted(paths)
        if len(self.classes) < 2:
            raise ConfigError(f"task.data.species: {len(self.classes)} species, expected at least 2")
        shipped = cfg.species is None
        self.genomes, self.val, self.train, self.test = {}, {}, {}, {}
        for c in self.classes:
            g = Genome(paths[c], key=f"task.data.species.{c}", rebuild_index=not shipped)
            self.genomes[c] = g
            self.val[c], self.train[c], self.test[c] = [], [], []
            for name, n in g.lengths.items():
                val, train, test = split_record(n, cfg.val_fraction, cfg.test_fraction)
                self.val[c].append((name, *val[1:]))
                self.train[c] += [(name, s, e) for _, s, e in train if e > s]
                self.test[c].append((name, *test[1:]))
        self.fits = {}  # which lengths fit in which blocks
        wanted = {"train": cfg.train_lengths or cfg.lengths, "test": cfg.lengths}
        wanted["val"] = wanted["train"]
        for blocks, key in ((self.train, "train"), (self.test, "test"), (self.val, "val")):
            self.fits[key] = [
                n for n in wanted[key] if all(any(e - s >= n for _, s, e in blocks[c]) for c in blocks)
            ]
        for key in ("train", "test"):
            too_long = sorted(set(wanted[key]) - set(self.fits[key]))
            if too_long:
                raise DataError(
                    f"task.data.lengths: a window of {too_long[0]} bases does not fit in the {key} blocks of every "
                    f"species (largest blocks: {self.largest(key)}); lower the lengths or change test_fraction"
                )
        if not self.fits["val"]:
            raise DataError(f"task.data.val_fraction={cfg.val_fraction}: no window length fits the validation blocks")

    def largest(self, key: str) -> str:
        blocks = getattr(self, key)
        return ", ".join(f"{c} {max(e - s for _, s, e in blocks[c])}" for c in self.classes)

    def window(self, c: int, name: str, start: int, length: int) -> torch.Tensor:
        return self.genomes[self.classes[c]].fetch(name, start, start + length)


class SpeciesTrain(Dataset):
    """Item i is a whole batch: one length, a uniform class per window; seeded by (seed, epoch, i)."""

    def __init__(self, data: SpeciesData, cfg: ClassifyDataConfig, seed: int) -> None:
        self.data, self.cfg, self.seed, self.epoch = data, cfg, seed, 0
        self.n = -(-cfg.windows_per_epoch // cfg.batch_size)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < self.n:
            raise IndexError(f"batch {i} of an epoch of {self.n}")
        rng = np.random.default_rng([self.seed, self.epoch, i])
        length = int(rng.choice(self.data.fits["train"]))
        labels = rng.integers(0, len(self.data.classes), self.cfg.batch_size)
        rows = []
        for c in labels:
            name, s = pick_window(rng, self.data.train[self.data.classes[c]], length)
            ids = self.data.window(int(c), name, s, length)
            rows.append(reverse_complement(ids) if self.cfg.rc_aug and rng.random() < 0.5 else ids)
        return {"inputs": torch.stack(rows), "targets": torch.from_numpy(labels).long()}


def fixed_windows(data: SpeciesData, blocks: dict, lengths: list[int], per_class: int, seed: int) -> list[tuple]:
    """(class, record, start, length) windows, seeded per (seed, length, class): independent of batching."""
    out = []
    for length in lengths:
        for c, name in enumerate(data.classes):
            rng = np.random.default_rng([seed, length, c])
            out += [(c, *pick_window(rng, blocks[name], length), length) for _ in range(per_class)]
    return out


class WindowBatches(Dataset):
    """Fixed windows in batches of one length each."""

    def __init__(self, data: SpeciesData, windows: list[tuple], batch_size: int) -> None:
        self.data, self.batches = data, []
        for length in sorted({w[3] for w in windows}):
            same = [w for w in windows if w[3] == length]
            self.batches += [same[i : i + batch_size] for i in range(0, len(same), batch_size)]

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> dict:
        batch = self.batches[i]
        inputs = torch.stack([self.data.window(c, name, s, n) for c, name, s, n in batch])
        return {"inputs": inputs, "targets": torch.tensor([c for c, *_ in batch])}


class LabelledSet(Dataset):
    def __init__(self, items: list[Labelled], rc_aug: bool = False, seed: int = 0) -> None:
        self.items, self.rc_aug, self.seed, self.epoch = items, rc_aug, seed, 0

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Labelled:
        item = self.items[i]
        if self.rc_aug and np.random.default_rng([self.seed, self.epoch, i]).random() < 0.5:
            return Labelled(reverse_complement(item.ids), item.label, item.source)
        return item


def pad_batch(items: list[Labelled]) -> dict:
    """Sequences of different lengths -> inputs padded with PAD at the end; targets = labels."""
    length = max(it.ids.numel() for it in items)
    inputs = torch.full((len(items), length), PAD, dtype=torch.int64)
    for row, it in zip(inputs, items, strict=True):
        row[: it.ids.numel()] = it.ids
    return {"inputs": inputs, "targets": torch.tensor([it.label for it in items])}


class ClassifyDataModule(L.LightningDataModule):
    def __init__(self, cfg: ClassifyDataConfig, seed: int) -> None:
        super().__init__()
        self.cfg, self.seed = cfg, seed
        if cfg.folder is not None or cfg.train_fasta is not None:
            self.species = None
            train, self.classes = read_labelled(cfg, "train")
            test, _ = read_labelled(cfg, "test", self.classes)
            perm = np.random.default_rng(seed).permutation(len(train))
            n_val = max(1, int(len(train) * cfg.val_fraction))
            if len(train) - n_val < 1:
                raise DataError(f"task.data: {len(train)} training sequences, too few to hold out a validation set")
            self.train_set = LabelledSet([train[i] for i in perm[n_val:]], cfg.rc_aug, seed)
            self.val_set: Dataset = LabelledSet([train[i] for i in perm[:n_val]])
            self.test_set: Dataset = LabelledSet(test)
        else:
            self.species = SpeciesData(cfg)
            self.classes = self.species.classes
            self.train_set = SpeciesTrain(self.species, cfg, seed)
            val = fixed_windows(self.species, self.species.val, self.species.fits["val"], cfg.val_windows, seed + 1)
            self.val_set = WindowBatches(self.species, val, cfg.batch_size)
            self.test_set = None  # evaluate draws the test windows per length

    def set_epoch(self, epoch: int) -> None:
        self.train_set.epoch = epoch

    def _loader(self, ds: Dataset, shuffle: bool) -> DataLoader:
        if isinstance(ds, LabelledSet):
            g = torch.Generator().manual_seed(self.seed)
            return DataLoader(
                ds,
                batch_size=self.cfg.batch_size,
                shuffle=shuffle,
                collate_fn=pad_batch,
                num_workers=self.cfg.num_workers,
                generator=g,
            )
        return DataLoader(ds, batch_size=None, shuffle=False, num_workers=self.cfg.num_workers)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def test_batches(self, length: int, per_class: int, batch_size: int, seed: int) -> DataLoader:
        """Species: ``per_class`` test windows per class at ``length``; labelled sets: the test set."""
        if self.species is None:
            return self._loader(self.test_set, shuffle=False)
        windows = fixed_windows(self.species, self.species.test, [length], per_class, seed)
        return DataLoader(WindowBatches(self.species, windows, batch_size), batch_size=None)


def read_labelled(cfg: ClassifyDataConfig, split: str, classes: list[str] | None = None):
    if cfg.folder is not None:
        return read_folder_split(Path(cfg.folder).expanduser(), split, classes, "task.data.folder")
    path = cfg.train_fasta if split == "train" else cfg.test_fasta
    return read_labelled_fasta(Path(path).expanduser(), classes, f"task.data.{split}_fasta")


class DNAClassifyTask(Task):
    name = "dna_classify"

    def __init__(self, cfg: DNAClassifyConfig, seed: int) -> None:
        self.cfg, self.seed = cfg, seed

    def make_datamodule(self) -> ClassifyDataModule:
        return ClassifyDataModule(self.cfg.data, self.seed)

    def build_model(self, cfg: ModelConfig) -> nn.Module:
        return SequenceClassifier(cfg, VOCAB_SIZE, len(self.datamodule().classes), self.cfg.head)

    def loss(self, outputs: torch.Tensor, batch: dict) -> torch.Tensor:
        return F.cross_entropy(outputs.float(), batch["targets"])

    def metrics(self) -> nn.ModuleDict:
        return nn.ModuleDict({"nll": MeanMetric(), "acc": MeanMetric()})

    def update_metrics(self, metrics: nn.ModuleDict, outputs: torch.Tensor, batch: dict) -> None:
        metrics["nll"].update(F.cross_entropy(outputs.float(), batch["targets"], reduction="none"))
        metrics["acc"].update((outputs.argmax(-1) == batch["targets"]).float())

    def compute_metrics(self, metrics: nn.ModuleDict) -> dict[str, float]:
        return {"loss": float(metrics["nll"].compute()), "acc": float(metrics["acc"].compute())}

    def summary(self, results: dict[str, float]) -> str:
        chance = 1 / len(self.datamodule().classes)
        return f"validation accuracy {results['val/acc']:.4f} (chance {chance:.3f}), loss {results['val/loss']:.4f}"

    def markov_classifier(self) -> list[MarkovChain]:
        """One order-k chain per class, fitted on its training blocks (species data)."""
        dm, chains = self.datamodule(), []
        for c in dm.classes:
            chain = MarkovChain(self.cfg.markov_order, 5)
            for name, s, e in dm.species.train[c]:
                chain.fit(dm.species.genomes[c].fetch(name, s, e))
            chains.append(chain)
        return chains

    def check_checkpoint(self, ckpt: str) -> None:
        from seqssm.checkpoint import read_hparams  # here: seqssm.checkpoint imports the tasks

        hp = read_hparams(ckpt)
        head = hp.get("task_config", {}).get("head", self.cfg.head)
        if head != self.cfg.head:
            raise ConfigError(f"task.head={self.cfg.head!r}, but ckpt={ckpt} was trained with task.head={head!r}")

    @torch.no_grad()
    def evaluate(self, net: nn.Module, cfg: EvaluateConfig, out: Path) -> dict:
        """Accuracy, macro-F1 and MCC on the test data — per window length for species — written to
        ``out/metrics.json``, with ``out/accuracy_vs_length.png`` (model and Markov baseline)."""
        self.check_checkpoint(cfg.ckpt)
        dm = self.datamodule()
        device = next(net.parameters()).device
        k = len(dm.classes)
        lengths = self.cfg.data.lengths if dm.species is not None else [0]
        chains = self.markov_classifier() if dm.species is not None else None
        results: dict = {
            "classes": dm.classes,
            "chance": 1 / k,
            "checkpoint": str(cfg.ckpt),
            "task_config": asdict(self.cfg),
            "lengths": {},
        }
        for length in lengths:
            preds, trues, base = [], [], []
            for batch in dm.test_batches(length, self.cfg.data.eval_windows, cfg.batch_size, cfg.seed):
                preds.append(net(batch["inputs"].to(device)).argmax(-1).cpu())
                trues.append(batch["targets"])
                if chains is not None:
                    base += [int(np.argmin([ch.nll(x)[0] for ch in chains])) for x in batch["inputs"]]
            pred, true = torch.cat(preds), torch.cat(trues)
            key = str(length) if length else "all"
            results["lengths"][key] = scores(confusion(pred, true, k))
            if chains is not None:
                results["lengths"][key][f"markov{self.cfg.markov_order}"] = scores(
                    confusion(torch.tensor(base), true, k)
                )
            r = results["lengths"][key]
            line = (
                f"seqssm: length {key}: accuracy {r['accuracy']:.4f}, macro-F1 {r['macro_f1']:.4f}, MCC {r['mcc']:.4f}"
            )
            if chains is not None:
                line += (
                    f" (order-{self.cfg.markov_order} Markov: {r[f'markov{self.cfg.markov_order}']['accuracy']:.4f})"
                )
            print(line + f", n={r['n']}")
        write_json(out / "metrics.json", results)
        if dm.species is not None:
            curves = {
                "model": {n: results["lengths"][str(n)]["accuracy"] for n in lengths},
                f"order-{self.cfg.markov_order} Markov (per class)": {
                    n: results["lengths"][str(n)][f"markov{self.cfg.markov_order}"]["accuracy"] for n in lengths
                },
            }
            plot_accuracy_vs_length(
                curves, 1 / k, out / "accuracy_vs_length.png", f"{self.name}: {', '.join(dm.classes)}"
            )
        print(f"seqssm: wrote {out / 'metrics.json'}")
        return results
