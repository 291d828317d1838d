"""task=audio and task=audio_classify end to end, as a user runs them: train, generate WAVs
(unconditional and continuing a prompt WAV), evaluate NLL + IS/mIS/AM/FID; one-line errors."""

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

TINY = ["model.d_model=16", "model.n_layer=1", "model.d_state=4", "trainer.max_steps=2",
        "trainer.val_check_interval=2", "trainer.enable_progress_bar=false"]  # fmt: skip
AUDIO = ["task=audio", "task.data.max_len=64", "task.data.batch_size=2", "task.data.crops_per_epoch=8",
         "task.data.val_clips=2"]  # fmt: skip


def cli(tmp_path, module, *args, timeout=300):
    cmd = [sys.executable, "-m", f"seqssm.{module}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=tmp_path)


def ok(p):
    assert p.returncode == 0, p.stderr[-3000:]
    return p


def one_line_error(p) -> str:
    assert p.returncode != 0 and "Traceback" not in p.stderr, p.stderr[-2000:]
    return p.stderr


@pytest.mark.slow  # about 1-3 minutes on 2 CPU cores: two trainings, two generations, evaluations
def test_train_generate_evaluate(tmp_path):
    ok(cli(tmp_path, "train", *AUDIO, *TINY, f"hydra.run.dir={tmp_path / 'lm'}"))
    m = json.loads((tmp_path / "lm/metrics.json").read_text())
    assert 0 < m["val/bits_per_sample"] < 9
    ok(cli(tmp_path, "train", "task=audio_classify", "task.data.batch_size=8", *TINY,
           f"hydra.run.dir={tmp_path / 'cls'}"))
    lm, cls = tmp_path / "lm/checkpoints/last.ckpt", tmp_path / "cls/checkpoints/last.ckpt"

    sf.write(tmp_path / "prompt.wav", 0.3 * np.sin(np.arange(8000) / 5).astype(np.float32), 16000, subtype="PCM_16")
    p = ok(cli(tmp_path, "generate", "task=audio", f"ckpt={lm}", "num_samples=3", "batch_size=2", "out=gen",
               "task.sample_len=600", "task.prompt_len=200", f"prompt={tmp_path / 'prompt.wav'}", "top_p=0.9"))
    assert "real-time factor" in p.stdout
    prompt_codes = None
    for i in range(3):
        x, rate = sf.read(tmp_path / f"gen/sample_{i:03d}.wav", dtype="float32")
        info = sf.info(str(tmp_path / f"gen/sample_{i:03d}.wav"))
        assert (rate, info.channels, info.subtype, x.shape) == (16000, 1, "PCM_16", (600,))
        # the prompt's first 200 samples (mu-law quantized) are the start of every sample
        head = np.round(x[:200], 2)
        prompt_codes = head if prompt_codes is None else prompt_codes
        assert np.array_equal(head, prompt_codes)
    gen = json.loads((tmp_path / "gen/generation.json").read_text())
    assert gen["real_time_factor"] > 0 and gen["generated_seconds_of_audio"] == pytest.approx(3 * 400 / 16000)

    ok(cli(tmp_path, "generate", "task=audio", f"ckpt={lm}", "num_samples=2", "out=uncond", "task.sample_len=300"))
    p = ok(cli(tmp_path, "evaluate", "task=audio", f"ckpt={lm}", "samples=uncond", f"task.classifier={cls}",
               "task.test_clips=2", "out=ev"))
    m = json.loads((tmp_path / "ev/metrics.json").read_text())
    for key in ("test/nll_bits_per_sample", "IS", "mIS", "AM", "FID"):
        assert np.isfinite(m[key]), key
    assert 1 <= m["IS"] <= 10 and 0 < m["test/nll_bits_per_sample"] < 9 and m["samples"] == 2
    assert (tmp_path / "ev/samples.png").stat().st_size > 10_000

    # errors: scoring samples without a classifier, a classifier of another task, max_new_tokens
    err = one_line_error(cli(tmp_path, "evaluate", "task=audio", f"ckpt={lm}", "samples=uncond"))
    assert "task.classifier=null" in err
    err = one_line_error(cli(tmp_path, "evaluate", "task=audio", f"ckpt={lm}", "samples=uncond",
                             f"task.classifier={lm}"))
    assert "not audio_classify" in err
    err = one_line_error(cli(tmp_path, "generate", "task=audio", f"ckpt={lm}", "max_new_tokens=10"))
    assert "task.sample_len" in err


def test_folder_with_no_digits(tmp_path):
    (tmp_path / "d" / "yes").mkdir(parents=True)
    (tmp_path / "d" / "validation_list.txt").write_text("")
    (tmp_path / "d" / "testing_list.txt").write_text("")
    err = one_line_error(cli(tmp_path, "train", *AUDIO, *TINY, f"task.data.root={tmp_path / 'd'}",
                             f"hydra.run.dir={tmp_path / 'r'}"))
    assert "no digit clips" in err and str(tmp_path / "d") in err


@pytest.mark.slow  # several minutes on 2 CPU cores
def test_classifier_accuracy_on_held_out_voices(tmp_path):
    """The README's classifier command: > 0.9 accuracy on voices it never heard (validation split
    during training; testing split in evaluate)."""
    ok(cli(tmp_path, "train", "task=audio_classify", "model.n_layer=2", "model.d_state=8", "trainer.max_steps=200",
           "trainer.val_check_interval=50", "trainer.enable_progress_bar=false", f"hydra.run.dir={tmp_path / 'cls'}",
           timeout=1800))
    assert json.loads((tmp_path / "cls/metrics.json").read_text())["val/acc"] > 0.9
    ok(cli(tmp_path, "evaluate", "task=audio_classify", f"ckpt={tmp_path / 'cls/checkpoints/best.ckpt'}", "out=ev"))
    assert json.loads((tmp_path / "ev/metrics.json").read_text())["test/acc"] > 0.9
