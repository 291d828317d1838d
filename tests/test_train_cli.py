"""``python -m seqssm.train`` end to end, as a user runs it: the run folder, resuming, the three
models, and one-line errors for bad input."""

import json
import subprocess
import sys

import pytest

TINY = [
    "model.d_model=32",
    "model.n_layer=1",
    "task.data.max_len=64",
    "task.data.batch_size=4",
    "task.data.windows_per_epoch=16",
    "trainer.max_steps=4",
    "trainer.val_check_interval=2",
    "trainer.enable_progress_bar=false",
]


def train(tmp_path, *overrides, run="run"):
    cmd = [sys.executable, "-m", "seqssm.train", *TINY, *overrides, f"hydra.run.dir={tmp_path / run}"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)


def test_run_folder_and_resume(tmp_path):
    p = train(tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    out = tmp_path / "run"
    for f in ("config.yaml", "csv/metrics.csv", "checkpoints/last.ckpt", "checkpoints/best.ckpt", "metrics.json",
              "loss.png"):
        assert (out / f).is_file(), f
    assert list((out / "tb").glob("events.out.tfevents.*"))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 4 and metrics["val/ppl"] > 1 and "markov2_ppl" in metrics
    assert "validation perplexity per base" in p.stdout

    p = train(tmp_path, f"ckpt_path={out / 'checkpoints/last.ckpt'}", "trainer.max_steps=6", run="resumed")
    assert p.returncode == 0, p.stderr[-3000:]
    assert json.loads((tmp_path / "resumed/metrics.json").read_text())["steps"] == 6


@pytest.mark.parametrize("model", ["mamba2", "mamba_complex", "mamba2_rotary"])
def test_other_models_train(tmp_path, model):
    extra = ["model.headdim=16", "model.chunk_size=16", "model.d_state=16"] if model.startswith("mamba2") else []
    p = train(tmp_path, f"model={model}", *extra)
    assert p.returncode == 0, p.stderr[-3000:]
    assert json.loads((tmp_path / "run/metrics.json").read_text())["val/ppl"] > 1


def one_line_error(p) -> str:
    assert p.returncode != 0
    assert "Traceback" not in p.stderr, p.stderr[-2000:]
    return p.stderr


def test_missing_fasta(tmp_path):
    err = one_line_error(train(tmp_path, f"task.data.fasta={tmp_path / 'nope.fa'}"))
    assert "task.data.fasta=" in err and "no such file" in err


def test_not_a_fasta(tmp_path):
    (tmp_path / "x.fa").write_text("this is not a genome\n")
    err = one_line_error(train(tmp_path, f"task.data.fasta={tmp_path / 'x.fa'}"))
    assert "not a FASTA file" in err


def test_unknown_config_key(tmp_path):
    err = one_line_error(train(tmp_path, "task.data.max_lenght=10"))
    assert "max_lenght" in err
    err = one_line_error(train(tmp_path, "+model.d_modle=10"))
    assert "model.d_modle: unknown key" in err


def test_impossible_model(tmp_path):
    err = one_line_error(train(tmp_path, "model=mamba2", "model.headdim=48"))
    assert "headdim" in err


def test_checkpoint_of_another_model(tmp_path):
    assert train(tmp_path).returncode == 0
    err = one_line_error(train(tmp_path, "model.d_model=48", f"ckpt_path={tmp_path / 'run/checkpoints/last.ckpt'}",
                               run="other"))
    assert "model.d_model=32" in err and "model.d_model=48" in err


def test_default_dna_run_learns(tmp_path):
    """The README's first command, unchanged: the model beats an order-2 Markov chain on the
    held-out region of hg38 chrM (a model that learned nothing sits near perplexity 4)."""
    cmd = [sys.executable, "-m", "seqssm.train", "task=dna", f"hydra.run.dir={tmp_path / 'default'}"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    m = json.loads((tmp_path / "default/metrics.json").read_text())
    assert m["val/ppl"] < 3.85 and m["val/ppl"] < m["markov2_ppl"], m
