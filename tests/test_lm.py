"""task=lm: corpus split by file, streamed windows, byte codec and tokenizer hook, bits per byte,
data_prep.text on local archives, and the train -> generate CLI round trip."""

import hashlib
import io
import json
import math
import subprocess
import sys
import zipfile

import pytest
import torch

from data_prep.text import CORPORA, Corpus, main, prepare
from seqssm.errors import ConfigError, DataError
from seqssm.tasks.lm import LMConfig, LMDataConfig, LMTask, ValWindows, split_corpus, stdlib_files
from seqssm.tasks.text_codec import ByteCodec, TokenizerCodec


def corpus(tmp_path, n=10):
    for i in range(n):
        (tmp_path / f"doc{i}.txt").write_text(f"document {i}: héllo wörld ✓ " * (i + 3))
    return tmp_path


def test_split_is_by_file_and_seeded(tmp_path):
    cfg = LMDataConfig(path=str(corpus(tmp_path)), val_fraction=0.2)
    train, val = split_corpus(cfg, seed=3)
    t, v = {s[0] for s in train}, {s[0] for s in val}
    assert len(v) == 2 and len(t) == 8 and not t & v
    assert split_corpus(cfg, seed=3) == (train, val)


def test_stdlib_default_corpus():
    files = stdlib_files()
    assert len(files) > 100 and all(f.suffix == ".py" and "site-packages" not in f.parts for f in files)


def test_validation_tiles_every_byte_once(tmp_path):
    cfg = LMDataConfig(path=str(corpus(tmp_path)), val_fraction=0.3, max_len=16, val_bytes=10**9, block_bytes=7)
    _, val = split_corpus(cfg, seed=0)
    codec = ByteCodec()
    expected = []
    for path, _, _ in val:
        expected += [codec.eos, *path.read_bytes()]
    windows = list(ValWindows(val, codec, cfg))
    got = [int(windows[0]["inputs"][0])] + [int(t) for w in windows for t in w["targets"][w["mask"]]]
    assert got == expected
    assert sum(float(w["target_bytes"][w["mask"]].sum()) for w in windows) == sum(p.stat().st_size for p, _, _ in val)


def test_byte_decoder_streams_multibyte_characters():
    codec = ByteCodec()
    text = "naïve ✓ 🧬"
    ids, nbytes = codec.encode(text)
    feed = codec.decoder()
    assert "".join(feed(i) for i in [*ids, codec.eos]) == text and sum(nbytes) == len(text.encode())


def test_bits_per_byte_of_uniform_prediction(tmp_path):
    task = LMTask(LMConfig(data=LMDataConfig(path=str(corpus(tmp_path)))), seed=0)
    metrics = task.metrics()
    targets = torch.randint(0, 256, (2, 9))
    batch = {"targets": targets, "mask": torch.ones_like(targets, dtype=torch.bool),
             "target_bytes": torch.ones(2, 9)}
    task.update_metrics(metrics, torch.zeros(2, 9, task.vocab_size), batch)
    r = task.compute_metrics(metrics)
    assert r["bpb"] == pytest.approx(math.log2(258)) and r["ppl"] == pytest.approx(258, rel=1e-4)


def test_tokenizer_hook(tmp_path):
    try:
        from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    except ImportError:
        with pytest.raises(ConfigError, match="pip install tokenizers"):
            TokenizerCodec(str(tmp_path / "tok.json"))
        return
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(["hello world, hello tokens"] * 20, trainers.BpeTrainer(vocab_size=300,
                            initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.save(str(tmp_path / "tok.json"))
    codec = TokenizerCodec(str(tmp_path / "tok.json"))
    ids, nbytes = codec.encode("hello world")
    assert len(ids) < 11 and sum(nbytes) == 11 and codec.vocab_size == tok.get_vocab_size() + 2
    with pytest.raises(ConfigError, match="no such file"):
        TokenizerCodec(str(tmp_path / "missing.json"))


def fake_enwik8(tmp_path, payload: bytes):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("enwik8", payload)
    (tmp_path / "enwik8.zip").write_bytes(buf.getvalue())
    return tmp_path / "enwik8.zip"


def test_data_prep_splits_and_checksums(tmp_path, capsys):
    payload = bytes(range(256)) * 40
    archive = fake_enwik8(tmp_path, payload)
    spec = Corpus(url="local", archive_name="enwik8.zip", archive_check=None,
                  member_checks={"enwik8": ("sha1", hashlib.sha1(payload).hexdigest(), len(payload))},
                  splits={"train": ("enwik8", 0, 9000), "valid": ("enwik8", 9000, 9500),
                          "test": ("enwik8", 9500, 10240)})
    info = prepare(spec, archive, tmp_path / "out")
    parts = [(tmp_path / "out" / f"{s}.txt").read_bytes() for s in ("train", "valid", "test")]
    assert b"".join(parts) == payload and info["split_bytes"] == {"train": 9000, "valid": 500, "test": 740}
    with pytest.raises(DataError, match="sha1"):  # the real enwik8 checksum rejects the fake file
        prepare(CORPORA["enwik8"], archive, tmp_path / "out2")
    with pytest.raises(SystemExit) as e:  # the command line: one line naming the checksum, exit status 2
        main(["--dataset", "wikitext103", "--out", str(tmp_path / "o"), "--archive", str(archive)])
    assert e.value.code == 2 and "md5" in capsys.readouterr().err


def test_train_and_generate_cli(tmp_path):
    (tmp_path / "c").mkdir()
    data = corpus(tmp_path / "c")
    train = [sys.executable, "-m", "seqssm.train", "task=lm", f"task.data.path={data}", "task.data.max_len=32",
             "task.data.batch_size=4", "model.d_model=16", "model.n_layer=1", "trainer.max_steps=3",
             "trainer.val_check_interval=3", "trainer.enable_progress_bar=false", f"hydra.run.dir={tmp_path / 'run'}"]
    p = subprocess.run(train, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    m = json.loads((tmp_path / "run/metrics.json").read_text())
    assert 0 < m["val/bpb"] < 9 and "bits per byte" in p.stdout
    gen = [sys.executable, "-m", "seqssm.generate", "task=lm", f"ckpt={tmp_path / 'run/checkpoints/best.ckpt'}",
           'prompt="document 1:"', "max_new_tokens=12", "num_samples=1", f"out={tmp_path / 'samples'}", "top_k=5"]
    p = subprocess.run(gen, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    text = (tmp_path / "samples/samples.txt").read_text()
    assert text.startswith("--- sample 0 ---\ndocument 1:") and "document 1:" in p.stdout


def test_missing_corpus_named(tmp_path):
    with pytest.raises(DataError, match="task.data.path=.*no such file or folder"):
        LMTask(LMConfig(data=LMDataConfig(path=str(tmp_path / "nope"))), seed=0).datamodule()
    (tmp_path / "one.txt").write_text("x")
    with pytest.raises(DataError, match="pattern"):
        LMTask(LMConfig(data=LMDataConfig(path=str(tmp_path))), seed=0).datamodule()
