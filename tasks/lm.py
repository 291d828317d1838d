"""``task=lm``: next-token prediction on text — UTF-8 bytes (256 ids + EOS + PAD) by default, or a
user's tokenizer (``task.tokenizer``; see ``text_codec.py``).

Corpus (``task.data.path``):

* a folder with ``train.txt`` and ``valid.txt`` (what ``python -m data_prep.text`` writes): those two;
* any other folder: the files matching ``task.data.pattern``, a held-out ``val_fraction`` of the files
  (a seeded choice, by file, so no validation text is in a training file);
* one file: its last ``val_fraction`` of bytes are held out;
* nothing (the default): the Python standard library's own ``.py`` files (``sysconfig`` ``stdlib``,
  without site-packages), present wherever Python is, so ``python -m seqssm.train task=lm`` runs offline.

Streaming: training reads the files in a seeded shuffled order each epoch, in blocks of
``block_bytes``, EOS between files, cuts consecutive windows of max_len + 1 tokens and draws
batches from a shuffle buffer of ``shuffle_windows`` windows; nothing holds the corpus in memory.
Validation tiles the held-out text (at most ``val_bytes`` bytes of it) in windows overlapping by one
token, so every held-out token after the first is predicted once.

Metrics: bits per byte = Σ NLL / (ln 2 · Σ bytes of the target tokens) (for bytes, the mean NLL in
bits), and perplexity per token = exp(mean NLL).
"""

from __future__ import annotations

import math
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, IterableDataset
from torchmetrics import SumMetric

from seqssm.config import GenerateConfig
from seqssm.errors import ConfigError, DataError
from seqssm.generation import stream
from seqssm.io import write_text
from seqssm.tasks.base import TokenLMTask
from seqssm.tasks.text_codec import make_codec

Source = tuple[Path, int, int]  # file, first byte, end byte (exclusive; -1 = end of file)


@dataclass
class LMDataConfig:
    path: str | None = None  # folder or file; None: the standard library's .py files
    pattern: str = "**/*.txt"  # files of a folder (the default corpus uses **/*.py)
    max_len: int = 512
    batch_size: int = 8
    val_fraction: float = 0.05
    val_bytes: int = 262144  # validate on at most this many held-out bytes
    block_bytes: int = 1 << 20
    shuffle_windows: int = 256
    num_workers: int = 0

    def validate(self) -> None:
        if self.max_len < 2:
            raise ConfigError(f"task.data.max_len={self.max_len}: expected >= 2")
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"task.data.val_fraction={self.val_fraction}: expected a number in (0, 1)")
        if min(self.batch_size, self.val_bytes, self.block_bytes, self.shuffle_windows) < 1:
            raise ConfigError("task.data.batch_size, val_bytes, block_bytes and shuffle_windows must be >= 1")


@dataclass
class LMConfig:
    name: str = "lm"
    data: LMDataConfig = field(default_factory=LMDataConfig)
    tokenizer: str | None = None  # a tokenizers JSON file; None: UTF-8 bytes


def stdlib_files() -> list[Path]:
    """The standard library's .py files (sorted), without third-party packages."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(f for f in root.rglob("*.py") if "site-packages" not in f.parts and f.is_file())
    if not files:
        raise DataError(f"task.data.path=null: no .py files under the standard library folder {root}")
    return files


def split_corpus(cfg: LMDataConfig, seed: int) -> tuple[list[Source], list[Source]]:
    """(training sources, validation sources) for ``cfg.path`` (see the module docstring)."""
    if cfg.path is None:
        files = stdlib_files()
    else:
        p = Path(cfg.path).expanduser()
        if p.is_file():
            size = p.stat().st_size
            cut = int(size * (1 - cfg.val_fraction))
            if cut < 2 or size - cut < 2:
                raise DataError(f"task.data.path={cfg.path}: {size} bytes is too small to hold out validation text")
            return [(p, 0, cut)], [(p, cut, size)]
        if not p.is_dir():
            raise DataError(f"task.data.path={cfg.path}: no such file or folder")
        if (p / "train.txt").is_file() and (p / "valid.txt").is_file():
            return [(p / "train.txt", 0, -1)], [(p / "valid.txt", 0, -1)]
        files = sorted(f for f in p.glob(cfg.pattern) if f.is_file())
        if len(files) < 2:
            raise DataError(
                f"task.data.path={cfg.path}: {len(files)} file(s) match task.data.pattern={cfg.pattern!r}; "
                "expected >= 2 (training and held-out files), or train.txt and valid.txt"
            )
    order = np.random.default_rng(seed).permutation(len(files))
    n_val = max(1, round(len(files) * cfg.val_fraction))
    val = sorted(files[i] for i in order[:n_val])
    train = sorted(files[i] for i in order[n_val:])
    return [(f, 0, -1) for f in train], [(f, 0, -1) for f in val]


def read_blocks(source: Source, block: int) -> Iterator[bytes]:
    path, start, end = source
    try:
        with open(path, "rb") as f:
            f.seek(start)
            left = math.inf if end < 0 else end - start
            while left > 0:
                data = f.read(int(min(block, left)))
                if not data:
                    return
                left -= len(data)
                yield data
    except OSError as e:
        raise DataError(f"task.data.path: cannot read {path} ({e.strerror})") from None


def token_stream(sources: list[Source], codec, block: int) -> Iterator[tuple[list[int], list[int]]]:
    """(ids, bytes per id) pieces of the sources in order, EOS before each source."""
    for source in sources:
        yield [codec.eos], [0]
        for data in read_blocks(source, block):
            yield codec.encode(data)


def windows(pieces: Iterator[tuple[list[int], list[int]]], length: int, step: int) -> Iterator[tuple[list, list]]:
    """Windows of ``length`` tokens every ``step`` tokens; the last, shorter one if it has >= 2 tokens."""
    ids: list[int] = []
    nbytes: list[int] = []
    for i, b in pieces:
        ids += i
        nbytes += b
        while len(ids) >= length:
            yield ids[:length], nbytes[:length]
            ids, nbytes = ids[step:], nbytes[step:]
    if len(ids) >= 2:
        yield ids, nbytes


def make_window(ids: list[int], nbytes: list[int], length: int, pad: int) -> dict:
    w = torch.full((length,), pad, dtype=torch.int64)
    w[: len(ids)] = torch.tensor(ids, dtype=torch.int64)
    b = torch.zeros(length, dtype=torch.float32)
    b[: len(nbytes)] = torch.tensor(nbytes, dtype=torch.float32)
    return {"inputs": w[:-1], "targets": w[1:], "mask": w[1:] != pad, "target_bytes": b[1:]}


class TrainStream(IterableDataset):
    """One pass over the training sources per epoch, shuffled by file and through a window buffer."""

    def __init__(self, sources: list[Source], codec, cfg: LMDataConfig, seed: int) -> None:
        self.sources, self.codec, self.cfg, self.seed, self.epoch = sources, codec, cfg, seed, 0

    def __iter__(self) -> Iterator[dict]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = [self.sources[i] for i in rng.permutation(len(self.sources))]
        n = self.cfg.max_len + 1
        buffer: list[dict] = []
        for ids, nbytes in windows(token_stream(order, self.codec, self.cfg.block_bytes), n, n - 1):
            buffer.append(make_window(ids, nbytes, n, self.codec.pad))
            if len(buffer) >= self.cfg.shuffle_windows:
                yield buffer.pop(int(rng.integers(len(buffer))))
        rng.shuffle(buffer)
        yield from buffer


class ValWindows(IterableDataset):
    """The held-out text (up to ``val_bytes`` bytes), tiled by windows overlapping by one token."""

    def __init__(self, sources: list[Source], codec, cfg: LMDataConfig) -> None:
        self.sources, self.codec, self.cfg = sources, codec, cfg

    def __iter__(self) -> Iterator[dict]:
        n, seen = self.cfg.max_len + 1, 0
        for ids, nbytes in windows(token_stream(self.sources, self.codec, self.cfg.block_bytes), n, n - 1):
            if seen >= self.cfg.val_bytes:
                return
            seen += sum(nbytes[1:])
            yield make_window(ids, nbytes, n, self.codec.pad)


class LMDataModule(L.LightningDataModule):
    def __init__(self, cfg: LMDataConfig, codec, seed: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.train_sources, self.val_sources = split_corpus(cfg, seed)
        self.train_set = TrainStream(self.train_sources, codec, cfg, seed)
        self.val_set = ValWindows(self.val_sources, codec, cfg)

    def set_epoch(self, epoch: int) -> None:
        self.train_set.epoch = epoch

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.cfg.batch_size, num_workers=self.cfg.num_workers)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.cfg.batch_size, num_workers=0)


class LMTask(TokenLMTask):
    name = "lm"

    def __init__(self, cfg: LMConfig, seed: int) -> None:
        self.cfg, self.seed = cfg, seed
        self.codec = make_codec(cfg.tokenizer)
        self.vocab_size = self.codec.vocab_size

    def make_datamodule(self) -> LMDataModule:
        return LMDataModule(self.cfg.data, self.codec, self.seed)

    def metrics(self) -> nn.ModuleDict:
        return nn.ModuleDict({k: SumMetric() for k in ("nll", "tokens", "bytes", "correct")})

    def update_metrics(self, metrics: nn.ModuleDict, outputs: torch.Tensor, batch: dict) -> None:
        m = batch["mask"].flatten()
        ce = F.cross_entropy(outputs.float().flatten(0, -2), batch["targets"].flatten(), reduction="none")[m]
        metrics["nll"].update(ce.sum())
        metrics["tokens"].update(m.sum().float())
        metrics["bytes"].update(batch["target_bytes"].flatten()[m].sum())
        metrics["correct"].update((outputs.argmax(-1) == batch["targets"]).flatten()[m].float().sum())

    def compute_metrics(self, metrics: nn.ModuleDict) -> dict[str, float]:
        nll, tokens = float(metrics["nll"].compute()), max(float(metrics["tokens"].compute()), 1.0)
        nbytes = max(float(metrics["bytes"].compute()), 1.0)
        return {
            "loss": nll / tokens,
            "ppl": math.exp(nll / tokens),
            "bpb": nll / nbytes / math.log(2),
            "acc": float(metrics["correct"].compute()) / tokens,
        }

    def generate(self, net: nn.Module, cfg: GenerateConfig, out: Path) -> None:
        """Sample ``num_samples`` continuations of ``prompt`` (after an EOS, as documents start in training),
        printing each token as it comes (the recurrent step path), up to ``max_new_tokens`` or an EOS;
        all samples are written to ``out/samples.txt``."""
        device = next(net.parameters()).device
        ids, _ = self.codec.encode(cfg.prompt or "")
        prompt = torch.tensor([[self.codec.eos, *ids]], device=device)
        texts = []
        for i in range(cfg.num_samples):
            decode, pieces = self.codec.decoder(), [cfg.prompt or ""]
            print(f"--- sample {i} ---\n{cfg.prompt or ''}", end="", flush=True)
            for token in stream(net, prompt, cfg.max_new_tokens, cfg.temperature, cfg.top_k, cfg.top_p, cfg.seed + i):
                t = int(token[0])
                if t == self.codec.eos:
                    break
                pieces.append(decode(t))
                print(pieces[-1], end="", flush=True)
            print(flush=True)
            texts.append("".join(pieces))
        write_text(out / "samples.txt", "".join(f"--- sample {i} ---\n{t}\n" for i, t in enumerate(texts)))
        print(f"seqssm: wrote {len(texts)} samples to {out / 'samples.txt'}", file=sys.stderr)

    def summary(self, results: dict[str, float]) -> str:
        return (f"validation bits per byte {results['val/bpb']:.4f}, perplexity per token {results['val/ppl']:.4f}, "
                f"accuracy {results['val/acc']:.4f}")
