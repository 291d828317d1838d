"""What the command-line entry points share: typed schemas for Hydra's config groups, and
errors printed as one line instead of a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig

from seqssm.config import TrainerConfig
from seqssm.errors import SeqssmError
from seqssm.models import ModelConfig
from seqssm.tasks import TASKS


def register_schemas() -> None:
    """Typed schemas for the config groups: Hydra then rejects unknown keys and wrong types when it
    composes the config, naming the key."""
    cs = ConfigStore.instance()
    cs.store(group="model", name="schema", node=ModelConfig)
    cs.store(group="trainer", name="schema", node=TrainerConfig)
    for name, (_, cfg_cls) in TASKS.items():
        cs.store(group="task", name=f"{name}_schema", node=cfg_cls)


def run_reporting_errors(fn: Callable[[DictConfig], object], cfg: DictConfig) -> None:
    """Run ``fn(cfg)``; a SeqssmError (bad file, key or value) ends the process with one line."""
    try:
        fn(cfg)
    except SeqssmError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def without(cfg: DictConfig, *keys: str) -> dict:
    return {k: v for k, v in cfg.items() if k not in keys}
