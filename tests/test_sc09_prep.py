"""``python -m data_prep.sc09`` on a local Speech-Commands-shaped tarball (no network)."""

import hashlib
import json
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import soundfile as sf

from data_prep.sc09 import SHA256, URL, prepare
from seqssm.errors import DataError
from seqssm.sc09 import split_files


def build_archive(tmp_path):
    src = tmp_path / "src"
    lengths = {"zero": 16000, "one": 9000, "two": 17000}  # SC09 clips are 1 s or shorter; trim a longer one too
    for word in ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "yes", "marvin"):
        (src / word).mkdir(parents=True)
        for spk in ("0a1b", "2c3d", "4e5f"):
            x = (0.3 * np.random.default_rng(len(word)).standard_normal(lengths.get(word, 12000))).astype(np.float32)
            sf.write(src / word / f"{spk}_nohash_0.wav", x, 16000, subtype="PCM_16")
    (src / "_background_noise_").mkdir()
    (src / "validation_list.txt").write_text("zero/2c3d_nohash_0.wav\nyes/2c3d_nohash_0.wav\nnine/2c3d_nohash_0.wav\n")
    (src / "testing_list.txt").write_text("one/4e5f_nohash_0.wav\nmarvin/4e5f_nohash_0.wav\nsix/4e5f_nohash_0.wav\n")
    archive = tmp_path / "speech_commands_v0.02.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname=".")
    return archive, hashlib.sha256(archive.read_bytes()).hexdigest()


def test_prepare_from_a_local_archive(tmp_path):
    archive, digest = build_archive(tmp_path)
    out = tmp_path / "sc09"
    source = prepare(out, archive, sha256=digest)
    assert source["clips_written"] == 30 and source["validation_list.txt"] == 2 and source["testing_list.txt"] == 2
    assert not (out / "yes").exists() and not (out / "marvin").exists()
    files = split_files(out)
    assert [len(files[s]) for s in ("train", "validation", "testing")] == [26, 2, 2]
    for word in ("zero", "one", "two"):
        info = sf.info(str(out / word / "0a1b_nohash_0.wav"))
        assert (info.samplerate, info.channels, info.frames) == (16000, 1, 16000)
    x, _ = sf.read(str(out / "one" / "0a1b_nohash_0.wav"))
    assert np.abs(x[9000:]).max() == 0 and np.abs(x[:9000]).max() > 0  # padded with silence
    assert json.loads((out / "SOURCE.json").read_text())["sha256"] == digest

    # resumable: a second run keeps what is there and rewrites only a missing clip
    (out / "two" / "2c3d_nohash_0.wav").unlink()
    again = prepare(out, archive, sha256=digest)
    assert again["clips_written"] == 1 and again["clips_already_there"] == 29


def test_download_then_verify(tmp_path):
    archive, digest = build_archive(tmp_path)
    out = tmp_path / "dl"
    source = prepare(out, url=archive.as_uri(), sha256=digest)  # file:// stands in for the server
    assert source["clips_written"] == 30 and (out / ".download" / archive.name).is_file()


def test_checksum_mismatch_and_cli_error(tmp_path):
    archive, _ = build_archive(tmp_path)
    with pytest.raises(DataError, match="SHA-256 .* expected " + SHA256):
        prepare(tmp_path / "x", archive)
    assert URL.endswith("speech_commands_v0.02.tar.gz")
    p = subprocess.run([sys.executable, "-m", "data_prep.sc09", "--out", str(tmp_path / "y"), "--archive",
                        str(tmp_path / "missing.tar.gz")], capture_output=True, text=True)
    assert p.returncode == 2 and "missing.tar.gz: no such file" in p.stderr and "Traceback" not in p.stderr
