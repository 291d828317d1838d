"""``python -m seqssm.generate task=TASK ckpt=PATH [num_samples=N out=DIR temperature=... top_p=...]``

Loads the network of a training checkpoint and lets the task sample from it with the recurrent
step path (O(1) time and memory per token) and write the results (text, FASTA, WAV files)."""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from seqssm.checkpoint import load_model
from seqssm.cli import register_schemas, run_reporting_errors, without
from seqssm.config import GenerateConfig, pick_device, to_dataclass
from seqssm.tasks import make_task


def run(cfg: DictConfig) -> None:
    gen = to_dataclass(GenerateConfig, without(cfg, "task"), "generate")
    task = make_task(cfg.task, gen.seed)
    net = load_model(gen.ckpt, task, pick_device(gen.device))
    task.generate(net, gen, Path(gen.out))


register_schemas()


@hydra.main(version_base=None, config_path="pkg://seqssm.configs", config_name="generate")
def main(cfg: DictConfig) -> None:
    run_reporting_errors(run, cfg)


if __name__ == "__main__":
    main()
