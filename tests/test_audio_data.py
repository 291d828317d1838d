"""Audio input: WAV checks (stereo, empty, truncated, 44.1 kHz), the SC09 layout and the offline
spoken-digit set."""

import hashlib
import subprocess
import sys
import warnings

import numpy as np
import pytest
import soundfile as sf

from seqssm.audio import CLIP_LEN, read_clip, read_wav
from seqssm.digits import offline_digits, voices
from seqssm.errors import DataError
from seqssm.sc09 import DIGITS, load_clips, split_files


def tone(n=8000, rate=16000, channels=1):
    t = np.arange(n) / rate
    x = 0.5 * np.sin(2 * np.pi * 440 * t).astype(np.float32)
    return np.stack([x] * channels, 1) if channels > 1 else x


def test_read_clip_pads_and_resamples(tmp_path):
    sf.write(tmp_path / "a.wav", tone(8000), 16000, subtype="PCM_16")
    clip, resampled = read_clip(tmp_path / "a.wav")
    assert clip.shape == (CLIP_LEN,) and not resampled and float(clip[8000:].abs().max()) == 0
    sf.write(tmp_path / "b.wav", tone(44100, 44100), 44100, subtype="PCM_16")
    clip, resampled = read_clip(tmp_path / "b.wav")
    assert resampled and clip.shape == (CLIP_LEN,)
    # a 440 Hz tone stays a 440 Hz tone
    spectrum = np.abs(np.fft.rfft(clip.numpy()))
    assert abs(int(spectrum.argmax()) - 440) <= 1


def test_bad_wavs(tmp_path):
    sf.write(tmp_path / "stereo.wav", tone(channels=2), 16000, subtype="PCM_16")
    with pytest.raises(DataError, match="2 channels, expected a mono WAV"):
        read_wav(tmp_path / "stereo.wav")
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(DataError, match="empty file"):
        read_wav(tmp_path / "empty.wav")
    sf.write(tmp_path / "zero.wav", np.zeros(0, np.float32), 16000, subtype="PCM_16")
    with pytest.raises(DataError, match="0 samples"):
        read_wav(tmp_path / "zero.wav")
    sf.write(tmp_path / "ok.wav", tone(16000), 16000, subtype="PCM_16")
    data = (tmp_path / "ok.wav").read_bytes()
    (tmp_path / "trunc.wav").write_bytes(data[:20000])
    with pytest.raises(DataError, match="truncated WAV"):
        read_wav(tmp_path / "trunc.wav")
    (tmp_path / "text.wav").write_text("not audio")
    with pytest.raises(DataError, match="text.wav: not a readable WAV"):
        read_wav(tmp_path / "text.wav")


def make_sc09(root, rate=16000):
    for word in DIGITS:
        (root / word).mkdir(parents=True)
        for spk in ("aa", "bb", "cc"):
            sf.write(root / word / f"{spk}_nohash_0.wav", tone(12000, rate), rate, subtype="PCM_16")
    (root / "validation_list.txt").write_text("\n".join(f"{w}/bb_nohash_0.wav" for w in DIGITS) + "\n")
    (root / "testing_list.txt").write_text("\n".join(f"{w}/cc_nohash_0.wav" for w in DIGITS) + "\n")


def test_sc09_layout(tmp_path):
    make_sc09(tmp_path / "ok")
    files = split_files(tmp_path / "ok")
    assert [len(files[s]) for s in ("train", "validation", "testing")] == [10, 10, 10]
    assert {label for _, label in files["testing"]} == set(range(10))
    assert all(p.name.startswith("cc_") for p, _ in files["testing"])
    pcm, labels = load_clips(files["train"], CLIP_LEN, "x")
    assert pcm.shape == (10, CLIP_LEN) and labels.tolist() == list(range(10))

    (tmp_path / "none").mkdir()
    (tmp_path / "none" / "validation_list.txt").write_text("")
    (tmp_path / "none" / "testing_list.txt").write_text("")
    with pytest.raises(DataError, match="no digit clips"):
        split_files(tmp_path / "none")
    with pytest.raises(DataError, match="no such folder"):
        split_files(tmp_path / "missing")
    (tmp_path / "nolists" / "zero").mkdir(parents=True)
    with pytest.raises(DataError, match="validation_list.txt: no such file"):
        split_files(tmp_path / "nolists")


def test_44k_folder_is_resampled_with_one_warning(tmp_path):
    make_sc09(tmp_path, rate=44100)
    files = split_files(tmp_path)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        pcm, _ = load_clips(files["train"], CLIP_LEN, "task.data.root=X")
    assert len(w) == 1 and "resampled 10 WAV file(s) to 16000 Hz" in str(w[0].message)
    assert pcm.shape == (10, CLIP_LEN)


def test_offline_digits():
    root = offline_digits()
    files = split_files(root)
    sizes = {s: len(f) for s, f in files.items()}
    assert sizes == {"train": 1080, "validation": 180, "testing": 180}
    speakers = {s: {p.name.split("_nohash_")[0] for p, _ in f} for s, f in files.items()}
    assert not speakers["train"] & speakers["testing"] and not speakers["validation"] & speakers["testing"]
    info = sf.info(str(files["testing"][0][0]))
    assert (info.samplerate, info.channels, info.frames, info.subtype) == (16000, 1, 16000, "PCM_16")
    x, _ = read_wav(files["train"][5][0])
    assert 0.25 < float(x.abs().max()) < 0.95  # speech, scaled to a peak in [0.3, 0.9]


SUBSET = """
import sys
from pathlib import Path
import seqssm.digits as d
d.VARIANTS = ("m3", "f2")  # f2 is a breathy voice (noise)
d.synthesize(Path(sys.argv[1]))
"""


def test_offline_digits_are_deterministic(tmp_path):
    hashes = []
    for run in ("a", "b"):
        subprocess.run([sys.executable, "-c", SUBSET, str(tmp_path / run)], check=True, timeout=120)
        files = sorted((tmp_path / run).rglob("*.wav"))
        assert len(files) == 60
        hashes.append(hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest())
    assert hashes[0] == hashes[1]
    assert len(voices()) == 48
