"""``model.init_from=CKPT``: start a model from the backbone of a training checkpoint (fine-tuning).

The option lives in the model config because it is about the model's parameters, and it is applied
once, when training builds the network (``SequenceModel``); evaluating or resuming the fine-tuned run
reads its own checkpoint and never opens CKPT again. What is copied: every ``backbone.*`` parameter
(embedding, blocks, final norm). The task's head (LM head, classifier) keeps its fresh initialisation.

- A unidirectional checkpoint initialises a bidirectional model: both directions of every block start
  from the pretrained mixer (``mixer.X`` -> ``mixer.fwd.X`` and ``mixer.rev.X``); the "concat"
  projection stays fresh.
- ``rc_equivariant`` shares parameters between strands, so it has the same parameters as the plain model.
- Any other difference in shape is refused with a CheckpointError naming the first differing model key
  (or parameter).
"""

from __future__ import annotations

import os
from dataclasses import asdict

import torch
import torch.nn as nn

from seqssm.checkpoint import read_checkpoint
from seqssm.errors import CheckpointError

# ModelConfig keys that decide the shapes of the backbone's parameters.
SHAPE_KEYS = (
    "mixer",
    "d_model",
    "n_layer",
    "d_state",
    "d_conv",
    "expand",
    "headdim",
    "ngroups",
    "complex",
    "dt_rank",
    "conv_bias",
    "bias",
)


def pretrained_backbone(path: str | os.PathLike, key: str = "model.init_from") -> tuple[dict, dict]:
    """(model hyper-parameters, {name under backbone.: tensor}) of a training checkpoint."""
    try:
        ckpt = read_checkpoint(path)
    except CheckpointError as e:
        raise CheckpointError(str(e).replace("ckpt_path=", f"{key}=", 1)) from None
    prefix = "net.backbone."
    state = {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    if not state:
        raise CheckpointError(f"{key}={path}: the checkpoint has no backbone parameters (net.backbone.*)")
    return ckpt["hyper_parameters"]["model"], state


def source_name(name: str, source: dict) -> str | None:
    """The checkpoint's name for our backbone parameter ``name`` (bidirectional from unidirectional)."""
    if name in source:
        return name
    for direction in (".mixer.fwd.", ".mixer.rev."):
        if direction in name and name.replace(direction, ".mixer.", 1) in source:
            return name.replace(direction, ".mixer.", 1)
    return None


@torch.no_grad()
def init_from_checkpoint(net: nn.Module, path: str | os.PathLike, key: str = "model.init_from") -> int:
    """Copy the checkpoint's backbone into ``net.backbone``; returns the number of tensors copied."""
    hp, source = pretrained_backbone(path, key)
    ours = asdict(net.config)
    for k in SHAPE_KEYS:
        if k in hp and hp[k] != ours.get(k):
            raise CheckpointError(
                f"{key}={path}: the checkpoint has model.{k}={hp[k]!r}, this model has model.{k}={ours.get(k)!r} "
                "(the backbones must have the same shape)"
            )
    if hp.get("bidirectional") and not net.config.bidirectional:
        raise CheckpointError(f"{key}={path}: a bidirectional checkpoint; set model.bidirectional=true to load it")
    copied = 0
    for name, param in net.backbone.state_dict().items():
        src = source_name(name, source)
        if src is None:
            if ".mixer.proj." in name:  # the concat projection of a bidirectional model: new
                continue
            raise CheckpointError(f"{key}={path}: the checkpoint has no parameter backbone.{name}")
        if source[src].shape != param.shape:
            raise CheckpointError(
                f"{key}={path}: backbone.{name} has shape {tuple(source[src].shape)} in the checkpoint, "
                f"{tuple(param.shape)} in this model"
            )
        param.copy_(source[src])
        copied += 1
    return copied
