"""``python -m seqssm.train task=dna model=mamba trainer=cpu [key=value ...]``

One run writes one folder (``outputs/DATE/TIME/``): ``config.yaml`` (resolved), ``csv/`` and
``tb/`` logs, ``checkpoints/last.ckpt`` and ``best.ckpt``, ``metrics.json`` and ``loss.png``.
Resume with ``ckpt_path=.../checkpoints/last.ckpt``.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from seqssm.checkpoint import check_checkpoint
from seqssm.cli import register_schemas, run_reporting_errors
from seqssm.config import GuardConfig, OptimConfig, TrainerConfig, to_dataclass
from seqssm.errors import ConfigError
from seqssm.guards import NonFiniteGuard
from seqssm.io import AtomicCheckpointIO, write_json, write_text
from seqssm.lit import SequenceModel
from seqssm.models import ModelConfig
from seqssm.plots import plot_loss_curve
from seqssm.resume import resolve_ckpt_path
from seqssm.tasks import make_task

KNOWN_KEYS = {
    "task",
    "model",
    "trainer",
    "optim",
    "guard",
    "seed",
    "ckpt_path",
    "checkpoint_every_n_steps",
    "chunk_len",
}


def run(cfg: DictConfig, out_dir: Path) -> dict:
    unknown = sorted(set(cfg.keys()) - KNOWN_KEYS)
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown top-level key (expected one of: {', '.join(sorted(KNOWN_KEYS))})")
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    model_cfg = to_dataclass(ModelConfig, cfg.model, "model")
    optim_cfg = to_dataclass(OptimConfig, cfg.optim, "optim")
    trainer_cfg = to_dataclass(TrainerConfig, cfg.trainer, "trainer")
    guard_cfg = to_dataclass(GuardConfig, cfg.guard, "guard")
    task = make_task(cfg.task, cfg.seed)
    ckpt_path = check_checkpoint(resolve_ckpt_path(cfg.ckpt_path), task.name, model_cfg) if cfg.ckpt_path else None
    write_text(out_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))

    dm = task.datamodule()
    if cfg.chunk_len < 0:
        raise ConfigError(f"chunk_len={cfg.chunk_len}: expected 0 (one pass) or a positive number of tokens")
    module = SequenceModel(task, model_cfg, optim_cfg, chunk_len=cfg.chunk_len)
    n_params = sum(p.numel() for p in module.net.parameters())
    print(f"seqssm: task={task.name} mixer={model_cfg.mixer} params={n_params:,} run folder {out_dir}")

    checkpoint = ModelCheckpoint(dirpath=out_dir / "checkpoints", filename="best", monitor="val/loss", mode="min")
    # last.ckpt: at every validation, at the end, and every checkpoint_every_n_steps steps, so that a run
    # killed mid-epoch resumes from close to where it stopped.
    last = ModelCheckpoint(
        dirpath=out_dir / "checkpoints",
        save_last=True,
        save_top_k=0,
        every_n_train_steps=cfg.checkpoint_every_n_steps or None,
    )
    callbacks = [checkpoint, last, LearningRateMonitor(logging_interval="step")]
    callbacks.append(NonFiniteGuard(guard_cfg.nonfinite, guard_cfg.max_skips))
    trainer = L.Trainer(
        **asdict(trainer_cfg),
        default_root_dir=str(out_dir),
        logger=[CSVLogger(out_dir, name="", version="csv"), TensorBoardLogger(out_dir, name="", version="tb")],
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
    )
    start = time.time()
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
    train_seconds = time.time() - start
    # Early stopping by selection: score the checkpoint with the best validation loss.
    best = "best" if checkpoint.best_model_path else None
    (val,) = trainer.validate(module, datamodule=dm, ckpt_path=best, verbose=False)
    results = {k: float(v) for k, v in val.items()}
    results.update(task.baselines())
    results.update({"params": n_params, "steps": trainer.global_step, "train_seconds": round(train_seconds, 1)})
    if trainer.is_global_zero:
        write_json(out_dir / "metrics.json", results)
        csv_path = out_dir / "csv" / "metrics.csv"
        if csv_path.exists():
            plot_loss_curve(csv_path, out_dir / "loss.png", f"{task.name} / {model_cfg.mixer}")
        print(f"seqssm: {task.summary(results)}")
        print(f"seqssm: wrote {out_dir / 'metrics.json'}")
    return results


register_schemas()


@hydra.main(version_base=None, config_path="pkg://seqssm.configs", config_name="train")
def main(cfg: DictConfig) -> None:
    torch.set_float32_matmul_precision("high")
    run_reporting_errors(lambda c: run(c, Path(HydraConfig.get().runtime.output_dir)), cfg)


if __name__ == "__main__":
    main()
