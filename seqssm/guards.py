"""Numerical guards: a non-finite loss or gradient either stops the run with a message naming the
step, the layer and the parameter, or (``nonfinite=skip``) drops that optimizer step — its
gradients are cleared, so no parameter and no optimizer moment changes — and counts it, up to
``max_skips``."""

from __future__ import annotations

import re

import lightning as L
import torch

from seqssm.errors import SeqssmError


class NumericalError(SeqssmError):
    """A loss or gradient became NaN or infinite."""


def first_nonfinite_grad(module: torch.nn.Module) -> str | None:
    """Name of the first parameter whose gradient holds a NaN or an infinity."""
    for name, p in module.named_parameters():
        if p.grad is not None and not torch.isfinite(p.grad).all():
            return name
    return None


def describe(name: str) -> str:
    layer = re.search(r"layers\.(\d+)\.", name)
    return f"{name} (layer {layer.group(1)})" if layer else name


class NonFiniteGuard(L.Callback):
    def __init__(self, mode: str = "stop", max_skips: int = 10) -> None:
        if mode not in ("stop", "skip"):
            raise ValueError(f"nonfinite={mode!r}: expected stop or skip")
        self.mode, self.max_skips, self.skipped = mode, max_skips, 0

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        name = first_nonfinite_grad(pl_module)
        if name is None:
            return
        where = f"step {trainer.global_step}: non-finite gradient in {describe(name.removeprefix('net.'))}"
        if self.mode == "stop":
            raise NumericalError(f"{where}; stopping (set guard.nonfinite=skip to skip such steps)")
        self.skipped += 1
        if self.skipped > self.max_skips:
            raise NumericalError(f"{where}; more than guard.max_skips={self.max_skips} steps skipped")
        optimizer.zero_grad(set_to_none=True)  # the optimizer leaves parameters without gradients alone
        pl_module.log("guard/skipped_steps", float(self.skipped))
        print(f"seqssm: warning: {where}; step skipped ({self.skipped}/{self.max_skips})")
