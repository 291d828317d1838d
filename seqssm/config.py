"""Typed configuration: Hydra composes YAML, these dataclasses check it (unknown keys, wrong types)
and every class is built from them, so a reader can follow the code with "go to definition"."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypeVar

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
    if hasattr(obj, "validate"):
        obj.validate()
    return obj


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
