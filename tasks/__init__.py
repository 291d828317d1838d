"""The tasks, by the name used on the command line (``task=NAME``). A task is one file."""

from __future__ import annotations

from seqssm.config import to_dataclass
from seqssm.errors import ConfigError
from seqssm.tasks.audio import AudioConfig, AudioTask
from seqssm.tasks.audio_classify import AudioClassifyConfig, AudioClassifyTask
from seqssm.tasks.base import Task
from seqssm.tasks.dna import DNAConfig, DNATask
from seqssm.tasks.dna_classify import DNAClassifyConfig, DNAClassifyTask
from seqssm.tasks.lm import LMConfig, LMTask
from seqssm.tasks.synthetic import SyntheticConfig, SyntheticTask

TASKS = {
    "dna": (DNATask, DNAConfig),
    "dna_classify": (DNAClassifyTask, DNAClassifyConfig),
    "synthetic": (SyntheticTask, SyntheticConfig),
    "lm": (LMTask, LMConfig),
    "audio": (AudioTask, AudioConfig),
    "audio_classify": (AudioClassifyTask, AudioClassifyConfig),
}


def make_task(cfg, seed: int) -> Task:
    """Build the task named by ``cfg.name`` from its config group."""
    name = cfg.get("name") if cfg is not None else None
    if name not in TASKS:
        raise ConfigError(f"task.name={name!r}: expected one of {', '.join(sorted(TASKS))}")
    task_cls, cfg_cls = TASKS[name]
    return task_cls(to_dataclass(cfg_cls, cfg, "task"), seed)
