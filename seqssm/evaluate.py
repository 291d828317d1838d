"""``python -m seqssm.evaluate task=TASK ckpt=PATH [out=DIR samples=DIR]``

Loads the network of a training checkpoint and lets the task score it; the task writes a
metrics JSON and PNG plots into ``out`` (default: ``eval/`` beside the checkpoint's run folder)."""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from seqssm.checkpoint import load_model
from seqssm.cli import register_schemas, run_reporting_errors, without
from seqssm.config import EvaluateConfig, pick_device, to_dataclass
from seqssm.tasks import make_task


def run(cfg: DictConfig) -> None:
    ev = to_dataclass(EvaluateConfig, without(cfg, "task"), "evaluate")
    task = make_task(cfg.task, ev.seed)
    net = load_model(ev.ckpt, task, pick_device(ev.device))
    out = Path(ev.out) if ev.out else Path(ev.ckpt).expanduser().resolve().parent.parent / "eval"
    task.evaluate(net, ev, out)


register_schemas()


@hydra.main(version_base=None, config_path="pkg://seqssm.configs", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    run_reporting_errors(run, cfg)


if __name__ == "__main__":
    main()
