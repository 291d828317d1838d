"""``task=synthetic``: the long-context synthetic suite — selective copying, induction heads and
multi-query associative recall (``task.data.kind``); generators and their papers in
``synthetic_data.py``.

Training draws fresh examples every epoch from a generator seeded per (seed, split, epoch, index);
validation is a fixed set from another seed stream, so no validation example is a training one
(except by chance collisions of random sequences). Loss and accuracy are on answer positions only
(``mask``).

``python -m seqssm.evaluate task=synthetic ckpt=...`` scores accuracy per evaluation length
(``task.eval.lengths``: the extrapolation curve of the Mamba paper's Table 2, e.g. 2^6 .. 2^20 for
induction heads trained at 2^8) and, for MQAR, per number of key-value pairs. Long sequences run in
pieces of ``task.eval.piece_len`` tokens, the recurrent state passed from piece to piece
(``forward(ids, states, return_states=True)``), so memory stays bounded by the piece, not the
length. The attention baseline has no bounded state (its KV cache grows with the length): it runs
each sequence in one causal SDPA call, one sequence at a time.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

from seqssm.config import EvaluateConfig
from seqssm.errors import ConfigError
from seqssm.io import write_json
from seqssm.resume import train_loader
from seqssm.tasks.base import TokenLMTask
from seqssm.tasks.synthetic_data import KINDS, check_sizes, make_example, vocab_size
from seqssm.tasks.synthetic_plots import plot_accuracy

TRAIN, VAL, EVAL = 0, 1, 2  # seed streams


@dataclass
class SyntheticDataConfig:
    kind: str = "induction_heads"  # selective_copying | induction_heads | mqar | modular_sum
    seq_len: int = 256  # tokens per example (selective copying: the noise region, copy markers follow)
    vocab: int = 16  # data tokens (MQAR: half keys, half values); special tokens are added on top
    num_tokens: int = 16  # selective copying: tokens to memorize
    num_kv_pairs: int = 16  # MQAR: key-value pairs (each queried once)
    batch_size: int = 32
    examples_per_epoch: int = 8192
    val_examples: int = 512
    num_workers: int = 0

    def validate(self) -> None:
        why = check_sizes(self.kind, self.seq_len, self.vocab, self.num_tokens, self.num_kv_pairs, "task.data")
        if why:
            raise ConfigError(why)
        if min(self.batch_size, self.examples_per_epoch, self.val_examples) < 1:
            raise ConfigError("task.data.batch_size, examples_per_epoch and val_examples must be >= 1")


@dataclass
class SyntheticEvalConfig:
    lengths: list[int] = field(default_factory=list)  # evaluation seq_len values; empty: the training length
    num_kv_pairs: list[int] = field(default_factory=list)  # MQAR: also score these pair counts (training length)
    examples: int = 64  # per length, at most ...
    max_tokens: int = 1 << 20  # ... and at most this many tokens per length (but at least min_examples)
    min_examples: int = 8
    piece_len: int = 8192  # recurrent models run long sequences in pieces of this many tokens

    def validate(self) -> None:
        for n in self.lengths:
            if n < 3:
                raise ConfigError(f"task.eval.lengths: {n} is too short (expected >= 3)")
        if min(self.examples, self.min_examples, self.piece_len, self.max_tokens) < 1:
            raise ConfigError("task.eval.examples, min_examples, max_tokens and piece_len must be >= 1")


@dataclass
class SyntheticConfig:
    name: str = "synthetic"
    data: SyntheticDataConfig = field(default_factory=SyntheticDataConfig)
    eval: SyntheticEvalConfig = field(default_factory=SyntheticEvalConfig)


class SyntheticDataset(Dataset):
    """``n`` examples, example i drawn from ``default_rng([seed, stream, epoch, i])``."""

    def __init__(self, cfg: SyntheticDataConfig, n: int, seed: int, stream: int, seq_len: int | None = None,
                 num_kv_pairs: int | None = None) -> None:
        self.cfg, self.n, self.seed, self.stream, self.epoch = cfg, n, seed, stream, 0
        self.seq_len = seq_len or cfg.seq_len
        self.num_kv_pairs = num_kv_pairs or cfg.num_kv_pairs

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        rng = np.random.default_rng([self.seed, self.stream, self.epoch, self.seq_len, self.num_kv_pairs, i])
        c = self.cfg
        return make_example(c.kind, rng, self.seq_len, c.vocab, c.num_tokens, self.num_kv_pairs)


class SyntheticDataModule(L.LightningDataModule):
    def __init__(self, cfg: SyntheticDataConfig, seed: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.train_set = SyntheticDataset(cfg, cfg.examples_per_epoch, seed, TRAIN)
        self.val_set = SyntheticDataset(cfg, cfg.val_examples, seed, VAL)

    def set_epoch(self, epoch: int) -> None:
        self.train_set.epoch = epoch

    def train_dataloader(self) -> DataLoader:
        return train_loader(self.train_set, self.cfg.batch_size, self.cfg.num_workers)  # resumable mid-epoch

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.cfg.batch_size, num_workers=self.cfg.num_workers)


@torch.inference_mode()
def predict_in_pieces(net: nn.Module, inputs: torch.Tensor, piece_len: int) -> torch.Tensor:
    """Greedy next-token predictions (batch, L) for inputs (batch, L), running the network over pieces
    of ``piece_len`` tokens with the recurrent state carried between pieces (exact, not an approximation:
    the state after a piece is the state the full-length scan would have there)."""
    preds, states = [], None
    for a in range(0, inputs.shape[1], piece_len):
        logits, states = net(inputs[:, a : a + piece_len], states, return_states=True)
        preds.append(logits.argmax(-1))
    return torch.cat(preds, 1)


class SyntheticTask(TokenLMTask):
    name = "synthetic"

    def __init__(self, cfg: SyntheticConfig, seed: int) -> None:
        self.cfg, self.seed = cfg, seed
        self.vocab_size = vocab_size(cfg.data.kind, cfg.data.vocab)

    def make_datamodule(self) -> SyntheticDataModule:
        return SyntheticDataModule(self.cfg.data, self.seed)

    def accuracy(self, net: nn.Module, seq_len: int, num_kv_pairs: int, ev: EvaluateConfig) -> dict:
        """Answer-token and whole-example accuracy on fresh examples of this length (eval seed stream)."""
        e = self.cfg.eval
        n = max(e.min_examples, min(e.examples, e.max_tokens // seq_len))
        ds = SyntheticDataset(self.cfg.data, n, ev.seed, EVAL, seq_len, num_kv_pairs)
        device = next(net.parameters()).device
        attention = getattr(getattr(net, "config", None), "mixer", None) == "transformer"
        batch = 1 if attention else ev.batch_size
        piece = math.inf if attention else e.piece_len
        hits = total = exact = 0
        start = time.time()
        for first in range(0, n, batch):
            items = [ds[i] for i in range(first, min(n, first + batch))]
            inputs, targets, mask = (
                torch.stack([x[k] for x in items]).to(device) for k in ("inputs", "targets", "mask")
            )
            preds = predict_in_pieces(net, inputs, int(min(piece, inputs.shape[1])))
            right = (preds == targets) | ~mask
            hits += int(((preds == targets) & mask).sum())
            total += int(mask.sum())
            exact += int(right.all(1).sum())
        return {"acc": hits / total, "exact": exact / n, "examples": n, "seconds": round(time.time() - start, 2)}

    def evaluate(self, net: nn.Module, cfg: EvaluateConfig, out: Path) -> dict:
        d, e = self.cfg.data, self.cfg.eval
        mixer = getattr(getattr(net, "config", None), "mixer", "?")
        lengths = e.lengths or [d.seq_len]
        results: dict = {"kind": d.kind, "mixer": mixer, "train_seq_len": d.seq_len, "task": asdict(self.cfg),
                         "model": asdict(net.config) if hasattr(net, "config") else {}, "by_length": {}}
        for n in lengths:
            why = check_sizes(d.kind, n, d.vocab, d.num_tokens, d.num_kv_pairs, "task.eval")
            if why:
                raise ConfigError(f"task.eval.lengths: {n}: {why}")
            results["by_length"][str(n)] = r = self.accuracy(net, n, d.num_kv_pairs, cfg)
            print(f"seqssm: {d.kind} {mixer} length {n}: accuracy {r['acc']:.4f} ({r['examples']} examples, "
                  f"{r['seconds']} s)", flush=True)
        if d.kind == "mqar" and e.num_kv_pairs:
            results["by_num_kv_pairs"] = {}
            for k in e.num_kv_pairs:
                why = check_sizes(d.kind, d.seq_len, d.vocab, d.num_tokens, k, "task.eval")
                if why:
                    raise ConfigError(f"task.eval.num_kv_pairs: {k}: {why}")
                results["by_num_kv_pairs"][str(k)] = r = self.accuracy(net, d.seq_len, k, cfg)
                print(f"seqssm: mqar {mixer} {k} pairs: accuracy {r['acc']:.4f}", flush=True)
        write_json(out / "metrics.json", results)
        plot_accuracy({mixer: results}, out / "accuracy_vs_length.png", d.kind, d.seq_len)
        print(f"seqssm: wrote {out / 'metrics.json'} and {out / 'accuracy_vs_length.png'}")
        return results

    def summary(self, results: dict[str, float]) -> str:
        return f"{self.cfg.data.kind}: validation accuracy on answer tokens {results['val/acc']:.4f}"


__all__ = ["KINDS", "SyntheticConfig", "SyntheticTask", "predict_in_pieces"]
