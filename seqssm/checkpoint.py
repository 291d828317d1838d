"""Checkpoints: recognise one that belongs to another model before Lightning tries to load it."""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

import torch

from seqssm.errors import CheckpointError
from seqssm.models import ModelConfig
from seqssm.tasks.base import Task

# Keys that change only how a model runs, not what its parameters are.
RUNTIME_KEYS = {"backend", "chunk_size", "init_from"}  # init_from: where training started, not a shape


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The checkpoint's contents, loaded on the CPU; CheckpointError if it is not a seqssm one."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise CheckpointError(f"ckpt_path={path}: no such file")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=False, mmap=True)
    except Exception as e:  # a truncated or foreign file
        raise CheckpointError(f"ckpt_path={path}: not a readable checkpoint ({type(e).__name__}: {e})") from None
    hp = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if not isinstance(hp, dict) or "model" not in hp or "task" not in hp:
        raise CheckpointError(f"ckpt_path={path}: not a seqssm training checkpoint (no task/model hyper-parameters)")
    return ckpt


def read_hparams(path: str | os.PathLike) -> dict:
    return read_checkpoint(path)["hyper_parameters"]


def check_checkpoint(path: str | os.PathLike, task: str, model_cfg: ModelConfig) -> str:
    """Return ``path`` if it is a checkpoint of the same task and model shape, else raise a
    CheckpointError naming the first difference."""
    hp = read_hparams(path)
    if hp["task"] != task:
        raise CheckpointError(f"ckpt_path={path}: a checkpoint of task {hp['task']!r}, this run is task {task!r}")
    ours = asdict(model_cfg)
    for key, value in hp["model"].items():
        if key not in RUNTIME_KEYS and ours.get(key) != value:
            raise CheckpointError(
                f"ckpt_path={path}: checkpoint has model.{key}={value!r}, this run has model.{key}={ours.get(key)!r}"
            )
    return str(Path(path).expanduser())


def load_model(path: str | os.PathLike, task: Task, device: str | torch.device = "cpu") -> torch.nn.Module:
    """The network of a training checkpoint, built by ``task`` with the checkpoint's model config,
    in eval mode on ``device``."""
    ckpt = read_checkpoint(path)
    hp = ckpt["hyper_parameters"]
    if hp["task"] != task.name:
        raise CheckpointError(f"ckpt={path}: a checkpoint of task {hp['task']!r}, not {task.name!r}")
    net = task.build_model(ModelConfig(**hp["model"]))
    state = {k.removeprefix("net."): v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    try:
        missing, unexpected = net.load_state_dict(state, strict=False)
    except RuntimeError as e:  # a parameter of another shape (e.g. another number of classes)
        detail = next((line.strip() for line in str(e).splitlines() if "size mismatch" in line), str(e))
        raise CheckpointError(f"ckpt={path}: the checkpoint does not fit the model the task builds: {detail}") from None
    if missing or unexpected:
        raise CheckpointError(
            f"ckpt={path}: parameters do not match the model (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    return net.to(device).eval()
