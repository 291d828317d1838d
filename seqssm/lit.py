"""``SequenceModel``: the LightningModule that pairs a task's network with its loss, metrics and
the optimizer (AdamW, no weight decay on A_log, D, dt biases, norms and biases; linear warmup
then cosine decay)."""

from __future__ import annotations

import math
from dataclasses import asdict

import lightning as L
import torch
import torch.nn as nn

from seqssm.config import OptimConfig
from seqssm.finetune import init_from_checkpoint
from seqssm.models import ModelConfig
from seqssm.models.streaming import chunked_forward
from seqssm.tasks.base import Task


def param_groups(net: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: decayed weight matrices, and the rest (parameters marked
    ``_no_weight_decay`` — A_log, D, dt biases, norm weights — and every bias / 1-D tensor)."""
    decay, no_decay, seen = [], [], set()
    for p in net.parameters():
        if id(p) in seen or not p.requires_grad:
            continue
        seen.add(id(p))
        (no_decay if getattr(p, "_no_weight_decay", False) or p.dim() < 2 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def warmup_cosine(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """LR multiplier: linear from 0 to 1 over ``warmup`` steps, then cosine down to ``min_ratio``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class SequenceModel(L.LightningModule):
    def __init__(self, task: Task, model_cfg: ModelConfig, optim_cfg: OptimConfig, chunk_len: int = 0) -> None:
        super().__init__()
        self.task, self.model_cfg, self.optim_cfg, self.chunk_len = task, model_cfg, optim_cfg, chunk_len
        self.net = task.build_model(model_cfg)
        if model_cfg.init_from:  # fine-tuning: start from a pretrained backbone (seqssm/finetune.py)
            init_from_checkpoint(self.net, model_cfg.init_from)
        self.val_metrics = task.metrics()
        # Stored in every checkpoint, so that a checkpoint of another model is recognised.
        self.save_hyperparameters({"task": task.name, "task_config": asdict(task.cfg), "model": asdict(model_cfg)})

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.chunk_len and inputs.shape[1] > self.chunk_len and hasattr(self.net, "init_states"):
            return chunked_forward(self.net, inputs, self.chunk_len, checkpoint=self.training)[0]
        return self.net(inputs)

    def on_train_epoch_start(self) -> None:
        dm = self.trainer.datamodule
        if dm is not None and hasattr(dm, "set_epoch"):
            dm.set_epoch(self.current_epoch)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.task.loss(self(batch["inputs"]), batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["inputs"].shape[0])
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        outputs = self(batch["inputs"])
        self.task.update_metrics(self.val_metrics, outputs, batch)

    def on_validation_epoch_end(self) -> None:
        results = self.task.compute_metrics(self.val_metrics)
        for k, v in results.items():
            self.log(f"val/{k}", v, prog_bar=k in ("loss", "ppl"))
        for m in self.val_metrics.values():
            m.reset()

    def configure_optimizers(self):
        cfg = self.optim_cfg
        opt = torch.optim.AdamW(param_groups(self.net, cfg.weight_decay), lr=cfg.lr, betas=tuple(cfg.betas))
        total = int(self.trainer.estimated_stepping_batches)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: warmup_cosine(s, cfg.warmup_steps, total, cfg.min_lr_ratio)
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
