"""Data parallel training through Lightning's DDP strategy on the CPU (2 processes, gloo): the ranks
see different windows, and their parameters stay identical after every optimizer step."""

import lightning as L
import torch

from seqssm.config import OptimConfig
from seqssm.lit import SequenceModel
from seqssm.models import ModelConfig
from seqssm.tasks.dna import DNAConfig, DNADataConfig, DNATask


class SaveParams(L.Callback):
    def __init__(self, folder):
        self.folder = folder

    def on_train_end(self, trainer, module):
        flat = torch.cat([p.detach().flatten() for p in module.net.parameters()])
        torch.save(flat, self.folder / f"rank{trainer.global_rank}.pt")


def test_ddp_two_cpu_processes_stay_in_sync(tmp_path):
    task = DNATask(DNAConfig(data=DNADataConfig(max_len=32, batch_size=2, windows_per_epoch=16)), seed=0)
    L.seed_everything(0)
    module = SequenceModel(task, ModelConfig(d_model=16, n_layer=1, d_state=4), OptimConfig(lr=1e-2))
    init = torch.cat([p.detach().flatten() for p in module.net.parameters()])
    trainer = L.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
        max_steps=3,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[SaveParams(tmp_path)],
        default_root_dir=tmp_path,
    )
    trainer.fit(module, datamodule=task.datamodule())
    r0, r1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert torch.equal(r0, r1)
    assert not torch.allclose(r0, init)
