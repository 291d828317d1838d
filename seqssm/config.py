"""Typed configuration: Hydra composes YAML, these dataclasses check it (unknown keys, wrong types)
and every class is built from them, so a reader can follow the code with "go to definition"."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from seqssm.errors import ConfigError

T = TypeVar("T")


def to_dataclass(cls: type[T], cfg: DictConfig | dict | None, where: str) -> T:
    """Check ``cfg`` against dataclass ``cls`` and build it; ``where`` names the config group in
    the error ("model", "task.data", ...)."""
    raw = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg or {})
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key (expected one of: {', '.join(sorted(names))})")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(cls), raw)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or "?"
        raise ConfigError(f"{where}.{key}: {str(e).splitlines()[0]}") from None
    obj = OmegaConf.to_object(merged)
    validate_all(obj)
    return obj


def validate_all(obj: object) -> None:
    """Call ``validate()`` on a config dataclass and on every dataclass nested in it (children first)."""
    if not dataclasses.is_dataclass(obj):
        return
    for f in dataclasses.fields(obj):
        validate_all(getattr(obj, f.name))
    if hasattr(obj, "validate"):
        obj.validate()


@dataclass
class OptimConfig:
    """AdamW with linear warmup then cosine decay to ``min_lr_ratio`` · lr."""

    lr: float = 3e-3
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int = 20
    min_lr_ratio: float = 0.1

    def validate(self) -> None:
        if self.lr <= 0:
            raise ConfigError(f"optim.lr={self.lr}: expected a positive learning rate")
        if self.warmup_steps < 0:
            raise ConfigError(f"optim.warmup_steps={self.warmup_steps}: expected >= 0")


@dataclass
class GuardConfig:
    """What happens when a loss or gradient becomes NaN or infinite (``seqssm.guards``)."""

    nonfinite: str = "stop"  # "stop": end the run naming step, layer, parameter; "skip": drop the step
    max_skips: int = 10  # with "skip": stop after this many skipped steps

    def validate(self) -> None:
        if self.nonfinite not in ("stop", "skip"):
            raise ConfigError(f"guard.nonfinite={self.nonfinite!r}: expected stop or skip")
        if self.max_skips < 0:
            raise ConfigError(f"guard.max_skips={self.max_skips}: expected >= 0")


@dataclass
class TrainerConfig:
    """Arguments for ``lightning.Trainer`` (a subset; names as Lightning's)."""

    accelerator: str = "cpu"
    devices: Any = 1
    strategy: str = "auto"
    num_nodes: int = 1
    precision: str = "32-true"
    max_steps: int = 200
    max_epochs: int = -1
    val_check_interval: Any = 100
    check_val_every_n_epoch: Any = None
    limit_val_batches: Any = None
    log_every_n_steps: int = 10
    gradient_clip_val: float | None = 1.0
    accumulate_grad_batches: int = 1
    num_sanity_val_steps: int = 0
    enable_progress_bar: bool = True
    deterministic: bool = False


@dataclass
class GenerateConfig:
    """``python -m seqssm.generate``: sampling options common to every task."""

    ckpt: str = "???"
    out: str = "samples"
    num_samples: int = 4
    batch_size: int = 4
    max_new_tokens: int = 256
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0
    prompt: str | None = None  # task-specific: text for lm, a WAV path for audio, bases for dna
    device: str = "auto"


@dataclass
class EvaluateConfig:
    """``python -m seqssm.evaluate``: what to score and where to write the JSON and plots."""

    ckpt: str = "???"
    out: str | None = None  # default: an ``eval`` folder beside the checkpoint's run
    samples: str | None = None  # a folder of generated samples, for tasks that score samples
    batch_size: int = 8
    seed: int = 0
    device: str = "auto"


def pick_device(name: str) -> torch.device:
    """``auto``: the GPU when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device={name!r}: expected auto, cpu, cuda or cuda:N") from None
