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
The order of an epoch is a function of (seed, epoch): with ``num_workers`` > 0 every worker runs the
same stream and keeps its share of the batches (batch b goes to worker b mod num_workers, the order in
which the DataLoader collects them), so the batches are those of ``num_workers=0``; a run restored
mid-epoch skips the batches it had already trained on (``seqssm.resume.train_loader``).

Bad data: every training file must exist and be readable at start-up (else one DataError naming it).
A file that vanishes or cannot be read mid-run is skipped from there on; with a tokenizer, text is
decoded as UTF-8 and each run of invalid bytes is dropped; both are counted and logged, naming the file
and line / byte offset, up to ``max_bad_records`` (``seqssm/bad_data.py``). Byte tokens decode nothing:
any byte is a token.
Validation tiles the held-out text (at most ``val_bytes`` bytes of it) in windows overlapping by one
token, so every held-out token after the first is predicted once.

Metrics: bits per byte = Σ NLL / (ln 2 · Σ bytes of the target tokens) (for bytes, the mean NLL in
bits), and perplexity per token = exp(mean NLL).
"""

from __future__ import annotations

import math
import re
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
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from torchmetrics import SumMetric

from seqssm.bad_data import BadRecords, BadRecordsMixin
from seqssm.config import GenerateConfig
from seqssm.errors import ConfigError, DataError
from seqssm.generation import stream
from seqssm.io import write_text
from seqssm.resume import train_loader
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
    max_bad_records: int = 100  # unreadable files / invalid UTF-8 runs skipped before the run stops (bad_data.py)

    def validate(self) -> None:
        if self.max_bad_records < 0:
            raise ConfigError(f"task.data.max_bad_records={self.max_bad_records}: expected >= 0")
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
    """The bytes of ``source`` in blocks of up to ``block`` bytes (an OSError if it cannot be read)."""
    path, start, end = source
    with open(path, "rb") as f:
        f.seek(start)
        left = math.inf if end < 0 else end - start
        while left > 0:
            data = f.read(int(min(block, left)))
            if not data:
                return
            left -= len(data)
            yield data


_INVALID = re.compile("[\udc80-\udcff]+")  # bytes that are not UTF-8, as surrogateescape decodes them


def complete_utf8(buf: bytes) -> int:
    """The length of ``buf`` without a trailing incomplete UTF-8 character (its end is in the next block)."""
    for k in range(1, min(3, len(buf)) + 1):
        b = buf[-k]
        if b < 0x80 or b > 0xF4 or 0xC0 <= b < 0xC2:  # ASCII, or never part of UTF-8
            return len(buf)
        if 0xC2 <= b <= 0xF4:  # the lead byte of a character of 2, 3 or 4 bytes
            need = 2 if b < 0xE0 else 3 if b < 0xF0 else 4
            return len(buf) - k if k < need else len(buf)
    return len(buf)


def utf8_text(blocks: Iterator[bytes], source: Source, bad: BadRecords) -> Iterator[str]:
    """The text of ``blocks`` decoded as UTF-8 (characters split between blocks joined); each run of
    invalid bytes is dropped, counted and logged with its line and byte offset (a run that a block
    boundary cuts counts as two)."""
    path, offset, _ = source
    carry, line = b"", 1
    for data in _with_end(blocks):  # None after the last block: flush what is left
        buf = carry + (data or b"")
        cut = len(buf) if data is None else complete_utf8(buf)
        text = buf[:cut].decode("utf-8", "surrogateescape")
        pieces, pos = [], 0
        for m in _INVALID.finditer(text):
            before = text[: m.start()]
            at = offset + len(before.encode("utf-8", "surrogateescape"))
            bad.skip(f"task.data.path: {path}, line {line + before.count(chr(10))} (byte offset {at}): "
                     f"{m.end() - m.start()} byte(s) of invalid UTF-8 dropped")  # fmt: skip
            pieces.append(text[pos : m.start()])
            pos = m.end()
        line += text.count("\n")
        offset += cut
        carry = buf[cut:]
        yield "".join(pieces) + text[pos:] if pieces else text


def _with_end(blocks: Iterator[bytes]) -> Iterator[bytes | None]:
    yield from blocks
    yield None


def token_stream(sources: list[Source], codec, block: int, bad: BadRecords) -> Iterator[tuple[list[int], list[int]]]:
    """(ids, bytes per id) pieces of the sources in order, EOS before each source. A source that cannot
    be read is skipped from where the error occurred, counted and logged."""
    for source in sources:
        yield [codec.eos], [0]
        blocks = read_blocks(source, block)
        try:
            for piece in utf8_text(blocks, source, bad) if codec.decodes_text else blocks:
                yield codec.encode(piece)
        except OSError as e:
            bad.skip(f"task.data.path: cannot read {source[0]} ({e.strerror or e}); the rest of this file skipped")


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
    """One pass over the training sources per epoch, shuffled by file and through a window buffer; in
    a DataLoader worker, only that worker's batches (see the module docstring)."""

    def __init__(self, sources: list[Source], codec, cfg: LMDataConfig, seed: int, bad: BadRecords) -> None:
        self.sources, self.codec, self.cfg, self.seed, self.epoch = sources, codec, cfg, seed, 0
        self.bad = bad

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        for i, window in enumerate(self.windows()):
            if (i // self.cfg.batch_size) % workers == worker:
                yield window

    def windows(self) -> Iterator[dict]:
        """Every training window of the epoch, in order."""
        rng = np.random.default_rng([self.seed, self.epoch])
        order = [self.sources[i] for i in rng.permutation(len(self.sources))]
        n = self.cfg.max_len + 1
        buffer: list[dict] = []
        for ids, nbytes in windows(token_stream(order, self.codec, self.cfg.block_bytes, self.bad), n, n - 1):
            buffer.append(make_window(ids, nbytes, n, self.codec.pad))
            if len(buffer) >= self.cfg.shuffle_windows:
                yield buffer.pop(int(rng.integers(len(buffer))))
        rng.shuffle(buffer)
        yield from buffer


class ValWindows(IterableDataset):
    """The held-out text (up to ``val_bytes`` bytes), tiled by windows overlapping by one token."""

    def __init__(self, sources: list[Source], codec, cfg: LMDataConfig, bad: BadRecords | None = None) -> None:
        self.sources, self.codec, self.cfg = sources, codec, cfg
        self.bad = bad if bad is not None else BadRecords(cfg.max_bad_records)

    def __iter__(self) -> Iterator[dict]:
        n, seen = self.cfg.max_len + 1, 0
        pieces = token_stream(self.sources, self.codec, self.cfg.block_bytes, self.bad)
        for ids, nbytes in windows(pieces, n, n - 1):
            if seen >= self.cfg.val_bytes:
                return
            seen += sum(nbytes[1:])
            yield make_window(ids, nbytes, n, self.codec.pad)


class LMDataModule(BadRecordsMixin, L.LightningDataModule):
    def __init__(self, cfg: LMDataConfig, codec, seed: int) -> None:
        super().__init__()
        self.cfg, self.bad = cfg, BadRecords(cfg.max_bad_records)
        self.train_sources, self.val_sources = split_corpus(cfg, seed)
        self.train_set = TrainStream(self.train_sources, codec, cfg, seed, self.bad)
        self.val_set = ValWindows(self.val_sources, codec, cfg, self.bad)

    def set_epoch(self, epoch: int) -> None:
        self.train_set.epoch = epoch

    def train_dataloader(self) -> DataLoader:
        return train_loader(self.train_set, self.cfg.batch_size, self.cfg.num_workers)  # resumable mid-epoch

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
