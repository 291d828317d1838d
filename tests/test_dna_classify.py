"""task=dna_classify: labelled data readers, species blocks, the scores, and fine-tune -> evaluate
through the CLIs with a tiny model."""

import json
import subprocess
import sys
from dataclasses import asdict

import pytest
import torch
from torchmetrics.functional.classification import multiclass_f1_score, multiclass_matthews_corrcoef

from seqssm.classification import confusion, scores
from seqssm.errors import DataError
from seqssm.models import MambaLMHeadModel, ModelConfig
from seqssm.tasks.dna_classify import ClassifyDataConfig, ClassifyDataModule
from seqssm.tasks.dna_labelled import read_folder_split, read_labelled_fasta


def test_scores_match_torchmetrics():
    g = torch.Generator().manual_seed(0)
    true = torch.randint(0, 4, (500,), generator=g)
    pred = torch.where(torch.rand(500, generator=g) < 0.6, true, torch.randint(0, 4, (500,), generator=g))
    s = scores(confusion(pred, true, 4))
    assert s["n"] == 500 and s["accuracy"] == pytest.approx(float((pred == true).float().mean()))
    assert s["macro_f1"] == pytest.approx(float(multiclass_f1_score(pred, true, 4, average="macro")), abs=1e-6)
    assert s["mcc"] == pytest.approx(float(multiclass_matthews_corrcoef(pred, true, 4)), abs=1e-6)
    assert scores(confusion(true, true, 4))["mcc"] == pytest.approx(1.0)


def test_genomic_benchmarks_folders(tmp_path):
    for split, n in (("train", 6), ("test", 2)):
        for c, base in (("coding", "ACGT"), ("intergenomic", "GGCA")):
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(n):
                (tmp_path / split / c / f"{i}.txt").write_text(base * (5 + i) + "\r\n")
    items, classes = read_folder_split(tmp_path, "train", None, "task.data.folder")
    assert classes == ["coding", "intergenomic"] and len(items) == 12
    assert items[0].ids.tolist()[:4] == [0, 1, 2, 3] and items[0].ids.numel() == 20
    dm = ClassifyDataModule(ClassifyDataConfig(folder=str(tmp_path), batch_size=4, val_fraction=0.2), seed=0)
    assert len(dm.train_set) + len(dm.val_set) == 12 and len(dm.test_set) == 4
    batch = next(iter(dm.train_dataloader()))
    assert batch["inputs"].shape[0] == 4 and batch["targets"].shape == (4,)
    (tmp_path / "test" / "other").mkdir()
    with pytest.raises(DataError, match="test/other is not a class of train/"):
        read_folder_split(tmp_path, "test", classes, "task.data.folder")
    (tmp_path / "train" / "coding" / "9.txt").write_text("\n")
    with pytest.raises(DataError, match="9.txt is empty"):
        read_folder_split(tmp_path, "train", None, "task.data.folder")


def test_labelled_fasta(tmp_path):
    path = tmp_path / "train.fa"
    path.write_bytes(
        b">s1 label=promoter\r\nACGTAC\r\nGT\r\n>s2 x=1 label=enhancer\nAC\nGTACGT\nA\n>s3 label=promoter\nTTTT\n"
    )
    items, classes = read_labelled_fasta(path, None, "task.data.train_fasta")
    assert classes == ["enhancer", "promoter"]
    assert [it.label for it in items] == [1, 0, 1] and items[1].ids.numel() == 9  # mixed widths: fine here
    for text, message in [
        (b">s1 label=a\nACGT\n>s2 label=b\n>s3 label=a\nAC\n", "line 3: record 's2' has no sequence"),
        (b">s1\nACGT\n>s2 label=b\nAC\n", "line 1: header 's1' has no label"),
        (b">s1 label=a\nAC!T\n>s2 label=b\nAC\n", "line 1: character '!'"),
    ]:
        path.write_bytes(text)
        with pytest.raises(DataError, match=message):
            read_labelled_fasta(path, None, "task.data.train_fasta")
    path.write_bytes(b">s1 label=c\nACGT\n")
    with pytest.raises(DataError, match="label 'c' is not a training class"):
        read_labelled_fasta(path, ["a", "b"], "task.data.test_fasta")


def test_species_blocks_are_disjoint_and_seeded():
    cfg = ClassifyDataConfig(lengths=[64, 1024], batch_size=6, windows_per_epoch=12)
    dm = ClassifyDataModule(cfg, seed=0)
    assert dm.classes == ["human", "mouse", "zebrafish"]
    sp = dm.species
    for c in dm.classes:
        ((name, lo, hi),) = sp.test[c]
        n = sp.genomes[c].lengths[name]
        assert hi - lo == int(n * 0.2) and lo == int(n * 0.4)  # the block task=dna holds out at val_fraction=0.2
        for _, s, e in sp.train[c] + sp.val[c]:
            assert e <= lo or s >= hi
    batch = dm.train_set[0]
    assert batch["inputs"].shape[0] == 6 and batch["inputs"].shape[1] in (64, 1024)
    assert torch.equal(batch["inputs"], ClassifyDataModule(cfg, seed=0).train_set[0]["inputs"])
    test = list(dm.test_batches(1024, 5, 4, seed=0))
    assert sum(b["targets"].numel() for b in test) == 15
    short = ClassifyDataModule(ClassifyDataConfig(lengths=[64, 1024], train_lengths=[32], batch_size=6), seed=0)
    assert short.train_set[0]["inputs"].shape == (6, 32) and short.species.fits["test"] == [64, 1024]
    with pytest.raises(DataError, match="a window of 8192 bases does not fit in the train blocks"):
        ClassifyDataModule(ClassifyDataConfig(lengths=[8192]), seed=0)


TINY = ["model.d_model=16", "model.n_layer=1", "model.d_state=8", "trainer.enable_progress_bar=false"]


def cli(tmp_path, module, *args):
    cmd = [sys.executable, "-m", module, "task=dna_classify", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)


def test_finetune_and_evaluate_cli(tmp_path):
    """Fine-tune from a (pretend) pretrained dna checkpoint, evaluate per length: JSON and plot."""
    pre = ModelConfig(d_model=16, n_layer=1, d_state=8)
    lm = MambaLMHeadModel(pre, 6)
    state = {f"net.{k}": v for k, v in lm.state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": {"task": "dna", "model": asdict(pre)}}, tmp_path / "pre.ckpt")
    data = [
        "task.data.lengths=[32,64]",
        "task.data.batch_size=4",
        "task.data.val_windows=2",
        "task.data.eval_windows=4",
    ]
    p = cli(
        tmp_path,
        "seqssm.train",
        *TINY,
        *data,
        f"model.init_from={tmp_path / 'pre.ckpt'}",
        "trainer.max_steps=3",
        "trainer.val_check_interval=3",
        "model.rc_equivariant=true",
        f"hydra.run.dir={tmp_path / 'ft'}",
    )
    assert p.returncode == 0, p.stderr[-3000:]
    assert "validation accuracy" in p.stdout
    p = cli(tmp_path, "seqssm.evaluate", *data, f"ckpt={tmp_path / 'ft/checkpoints/best.ckpt'}")
    assert p.returncode == 0, p.stderr[-3000:]
    m = json.loads((tmp_path / "ft/eval/metrics.json").read_text())
    assert set(m["lengths"]) == {"32", "64"} and m["classes"] == ["human", "mouse", "zebrafish"]
    for r in m["lengths"].values():
        assert r["n"] == 12 and 0 <= r["accuracy"] <= 1 and {"macro_f1", "mcc", "markov4"} <= set(r)
    assert (tmp_path / "ft/eval/accuracy_vs_length.png").stat().st_size > 1000
    # a pretrained checkpoint of another shape: one clear line, before any training
    p = cli(
        tmp_path,
        "seqssm.train",
        *TINY[1:],
        "model.d_model=32",
        *data,
        f"model.init_from={tmp_path / 'pre.ckpt'}",
        f"hydra.run.dir={tmp_path / 'bad'}",
    )
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert "model.init_from=" in p.stderr and "model.d_model=16, this model has model.d_model=32" in p.stderr
