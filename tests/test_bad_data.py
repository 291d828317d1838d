"""Bad data found only while streaming is skipped, counted and logged up to task.data.max_bad_records,
then stops the run with one line; bad data that start-up can see stops the run before any work.
Every file here is a real file on disk, made bad before or after the data module was built."""

import csv
import pickle
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from seqssm.bad_data import BadRecords
from seqssm.errors import ConfigError, DataError
from seqssm.resume import train_loader
from seqssm.tasks.dna import DNADataConfig, DNADataModule, only_item
from seqssm.tasks.lm import LMDataConfig, LMDataModule, utf8_text
from seqssm.tasks.text_codec import ByteCodec, TokenizerCodec

GOOD = "".join(np.random.default_rng(0).choice(list("ACGT"), 400))


def fasta(path, records: dict[str, str]):
    lines = []
    for name, seq in records.items():
        lines += [f">{name}", *(seq[i : i + 60] for i in range(0, len(seq), 60))]
    path.write_text("\n".join(lines) + "\n")
    return path


def dna(path, **kw) -> DNADataModule:
    kw = {"max_len": 32, "batch_size": 2, "windows_per_epoch": 8, **kw}
    return DNADataModule(DNADataConfig(fasta=str(path), **kw), seed=0)


def test_counter_limit_and_config():
    bad = BadRecords(1)
    bad.skip("f.wav: truncated")
    assert bad.count == 1
    with pytest.raises(DataError, match=r"^g\.wav: truncated; stopping: more than task\.data\.max_bad_records=1 "):
        bad.skip("g.wav: truncated")
    copy = pickle.loads(pickle.dumps(bad))  # DDP ranks, spawned workers: a counter of their own, from the count
    assert (copy.count, copy.limit) == (2, 1)
    copy.count = 0
    assert bad.count == 2
    with pytest.raises(ConfigError, match="task.data.max_bad_records=-1: expected an integer >= 0"):
        BadRecords(-1)
    with pytest.raises(ConfigError, match="max_bad_records=-1"):
        DNADataConfig(max_bad_records=-1).validate()


def test_bad_bases_found_while_streaming_are_skipped_counted_and_logged(tmp_path, capfd):
    # Start-up reads the index, not the bases: record 'bad' passes it, and fails when a window is read.
    path = fasta(tmp_path / "g.fa", {"good": GOOD, "bad": "ACGX" * 100})
    dm = dna(path)
    batches = [dm.train_set[i] for i in range(len(dm.train_set))]
    n = dm.bad.count
    assert n > 0
    for b in batches:  # every window is a whole, readable one (from 'good')
        assert b["inputs"].shape == (2, 32) and bool(b["mask"].all())
    err = capfd.readouterr().err
    assert err.count("seqssm: warning: skipped bad record") == n
    # names the file, the record, the base and its byte offset (record 'bad' starts at byte 418)
    assert f"task.data.fasta={path}: record 'bad', base 75 (byte offset 494): character 'X'" in err
    assert [dm.train_set[i]["inputs"].tolist() for i in range(len(dm.train_set))] == [
        b["inputs"].tolist() for b in batches
    ]  # the replacement windows are seeded: the same run draws the same ones
    val = [dm.val_set[i] for i in range(len(dm.val_set))]
    unread = [w for w in val if not w["mask"].any()]
    assert unread and dm.bad.count == 2 * n + len(unread)  # a bad validation window is scored on nothing

    strict = dna(path, max_bad_records=0)
    with pytest.raises(DataError, match=r"record 'bad', base \d+ .*stopping: more than task.data.max_bad_records=0"):
        [strict.train_set[i] for i in range(len(strict.train_set))]


def test_fasta_cut_short_after_start_up_is_skipped(tmp_path, capfd):
    path = fasta(tmp_path / "g.fa", {"a": GOOD, "b": GOOD[::-1]})
    dm = dna(path)
    with open(path, "r+") as f:  # the file changes under the running job
        f.truncate(path.stat().st_size // 2)
    for i in range(len(dm.train_set)):
        assert bool(dm.train_set[i]["mask"].all())
    assert dm.bad.count > 0
    assert "(the file is shorter than its .fai index says" in capfd.readouterr().err


def test_one_count_over_dataloader_workers(tmp_path):
    path = fasta(tmp_path / "g.fa", {"good": GOOD, "bad": "ACGX" * 100})
    dm, single = dna(path, windows_per_epoch=16), dna(path, windows_per_epoch=16)
    list(train_loader(dm.train_set, 1, num_workers=2, collate_fn=only_item))
    list(train_loader(single.train_set, 1, collate_fn=only_item))
    assert dm.bad.count == single.bad.count > 2  # the main process sees the skips of both workers
    # (a DataError raised in a worker reaching the CLI as one line: test_cli_logs_the_count_and_stops_...)


def corpus(root, n=6):
    root.mkdir()
    for i in range(n):
        (root / f"doc{i}.txt").write_text(f"document {i}: héllo wörld ✓\n" * 30)
    return root


def test_text_file_gone_mid_run_is_skipped(tmp_path, capfd):
    root = corpus(tmp_path / "c")
    cfg = LMDataConfig(path=str(root), max_len=32, batch_size=2, val_fraction=0.2, shuffle_windows=4)
    dm = LMDataModule(cfg, ByteCodec(), seed=0)
    all_windows = len(list(dm.train_set))
    gone = dm.train_sources[0][0]
    gone.unlink()
    left = list(dm.train_set)
    assert dm.bad.count == 1 and 0 < len(left) < all_windows
    assert f"task.data.path: cannot read {gone} (No such file or directory); the rest of this file skipped" in (
        capfd.readouterr().err
    )
    dm.bad.limit = 0
    dm.bad.count = 0
    with pytest.raises(DataError, match=f"cannot read {gone}.*stopping: more than task.data.max_bad_records=0"):
        list(dm.train_set)


def test_invalid_utf8_dropped_with_line_and_offset(tmp_path, capfd):
    text = "ok ✓ line\nsecond é line\n".encode()
    data = text + b"\xff\xfe" + text + b"\xc3"  # two bad bytes after line 2, a cut-off character at the end
    for block in (1, 2, 3, 7):  # characters split between blocks are joined, not dropped
        blocks = (data[i : i + block] for i in range(0, len(data), block))
        assert "".join(utf8_text(blocks, (tmp_path / "t.txt", 100, -1), BadRecords(10))) == (text + text).decode()
    capfd.readouterr()
    bad = BadRecords(10)
    assert "".join(utf8_text(iter([data]), (tmp_path / "t.txt", 100, -1), bad)) == (text + text).decode()
    assert bad.count == 2
    err = capfd.readouterr().err
    assert f"{tmp_path / 't.txt'}, line 3 (byte offset {100 + len(text)}): 2 byte(s) of invalid UTF-8 dropped" in err
    assert f"line 5 (byte offset {100 + 2 * len(text) + 2}): 1 byte(s) of invalid UTF-8 dropped" in err


def test_byte_tokens_take_non_utf8_text_as_it_is(tmp_path):
    root = corpus(tmp_path / "c", n=2)
    (root / "doc0.txt").write_bytes("caf\xe9 cr\xe8me\n".encode("latin-1") * 20)  # Latin-1, not UTF-8
    cfg = LMDataConfig(path=str(root), max_len=16, batch_size=2, val_fraction=0.5, val_bytes=10**6)
    dm = LMDataModule(cfg, ByteCodec(), seed=0)
    stream = [int(t) for w in [*dm.train_set, *dm.val_set] for t in w["targets"][w["mask"]]]
    assert 0xE9 in stream and 0xE8 in stream and dm.bad.count == 0


def test_tokenizer_stream_skips_invalid_utf8(tmp_path, capfd):
    tokenizers = pytest.importorskip("tokenizers")
    tok = tokenizers.Tokenizer(tokenizers.models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    alphabet = tokenizers.pre_tokenizers.ByteLevel.alphabet()
    tok.train_from_iterator(["document héllo wörld"] * 20, tokenizers.trainers.BpeTrainer(initial_alphabet=alphabet))
    tok.save(str(tmp_path / "tok.json"))
    root = corpus(tmp_path / "c")
    for f in root.iterdir():
        f.write_bytes(f.read_bytes().replace(b"\xc3\xa9", b"\xe9"))  # é in Latin-1: not UTF-8
    cfg = LMDataConfig(path=str(root), max_len=16, batch_size=2, val_fraction=0.2, block_bytes=64, max_bad_records=999)
    dm = LMDataModule(cfg, TokenizerCodec(str(tmp_path / "tok.json")), seed=0)
    windows = list(dm.train_set)
    assert windows and dm.bad.count == 30 * len(dm.train_sources)  # one é per line
    assert "byte(s) of invalid UTF-8 dropped" in capfd.readouterr().err


def test_bad_wav_is_a_start_up_error_naming_the_file(tmp_path):
    """Every WAV of task=audio is read when the data module is built, so a truncated or unreadable one
    stops the run there, before any training, with one line naming it (nothing is read mid-run)."""
    from test_audio_data import make_sc09

    from seqssm.tasks.audio import AudioDataConfig, AudioDataModule

    make_sc09(tmp_path / "sc09")
    wav = tmp_path / "sc09" / "three" / "aa_nohash_0.wav"
    wav.write_bytes(wav.read_bytes()[:3000])
    with pytest.raises(DataError, match=rf"^{wav}: truncated WAV file \(header promises \d+ data bytes"):
        AudioDataModule(AudioDataConfig(root=str(tmp_path / "sc09")), seed=0)
    wav.write_bytes(b"RIFF....WAVEfmt garbage")
    with pytest.raises(DataError, match=rf"^{wav}: not a readable WAV file"):
        AudioDataModule(AudioDataConfig(root=str(tmp_path / "sc09")), seed=0)
    sf.write(wav, np.zeros(100, np.float32), 8000, subtype="PCM_16")  # another rate: resampled, with a warning
    with pytest.warns(UserWarning, match="resampled 1 WAV file"):
        AudioDataModule(AudioDataConfig(root=str(tmp_path / "sc09")), seed=0)


TINY = ["model.n_layer=1", "model.d_model=16", "task.data.max_len=32", "task.data.batch_size=2",
        "task.data.windows_per_epoch=8", "trainer.max_steps=6", "trainer.log_every_n_steps=1",
        "trainer.val_check_interval=1000", "trainer.enable_progress_bar=false"]  # fmt: skip


def test_cli_logs_the_count_and_stops_at_the_limit_with_one_line(tmp_path):
    path = fasta(tmp_path / "g.fa", {"good": GOOD, "bad": "ACGX" * 100})
    run = tmp_path / "run"
    train = [sys.executable, "-m", "seqssm.train", *TINY, f"task.data.fasta={path}"]
    p = subprocess.run([*train, f"hydra.run.dir={run}"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    summary = "bad record(s) skipped by the end of training"
    n = p.stderr.split(summary)[0].count("seqssm: warning: skipped bad record")
    assert n > 0 and f"seqssm: warning: {n} {summary}" in p.stderr
    with open(run / "csv/metrics.csv") as f:
        logged = [float(r["data/bad_records"]) for r in csv.DictReader(f) if r.get("data/bad_records")]
    assert logged and logged == sorted(logged) and max(logged) <= p.stderr.count("warning: skipped bad record")
    assert torch.load(run / "checkpoints/last.ckpt", weights_only=False)["DNADataModule"]["bad_records"] > 0

    stop = [*train, "task.data.max_bad_records=1", "task.data.num_workers=1", f"hydra.run.dir={tmp_path / 'stop'}"]
    p = subprocess.run(stop, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert p.returncode == 2
    (line,) = [x for x in p.stderr.splitlines() if x.startswith("error:")]
    assert line.startswith(f"error: task.data.fasta={path}: record 'bad'")
    assert line.endswith("stopping: more than task.data.max_bad_records=1 bad records skipped")
