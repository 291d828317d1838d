"""The SC09 folder layout (Speech Commands v0.02, the ten digit words), shared by the real data
(``python -m data_prep.sc09``) and the offline synthesized digits (``seqssm/digits.py``):

    ROOT/zero/<speaker>_nohash_<n>.wav ... ROOT/nine/...
    ROOT/validation_list.txt   lines "zero/<file>.wav": the validation clips
    ROOT/testing_list.txt      the test clips; every other digit clip is for training

Speakers do not cross splits (Warden 2018, section 5: the lists come from a hash of the speaker).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

from seqssm.audio import SAMPLE_RATE, read_clip
from seqssm.errors import DataError

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SPLITS = ("train", "validation", "testing")
LIST_FILES = {"validation": "validation_list.txt", "testing": "testing_list.txt"}


def _read_list(root: Path, name: str) -> set[str]:
    p = root / name
    if not p.is_file():
        raise DataError(f"{p}: no such file (an SC09 folder has validation_list.txt and testing_list.txt)")
    return {line.strip() for line in p.read_text().splitlines() if line.strip()}


def split_files(root: str | os.PathLike) -> dict[str, list[tuple[Path, int]]]:
    """{split: [(wav path, digit label 0..9), ...]}, sorted by path; DataError if the folder has no
    digit clips or a split is empty."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: no such folder (expected an SC09 folder: zero/ ... nine/ with WAV files)")
    lists = {split: _read_list(root, name) for split, name in LIST_FILES.items()}
    out: dict[str, list[tuple[Path, int]]] = {s: [] for s in SPLITS}
    for label, word in enumerate(DIGITS):
        for wav in sorted((root / word).glob("*.wav")):
            rel = f"{word}/{wav.name}"
            split = next((s for s, names in lists.items() if rel in names), "train")
            out[split].append((wav, label))
    if not any(out.values()):
        raise DataError(f"{root}: no digit clips (expected WAV files in {root}/zero/ ... {root}/nine/)")
    for split, files in out.items():
        if not files:
            raise DataError(f"{root}: the {split} split has no digit clips (see validation_list.txt, testing_list.txt)")
    return out


def load_clips(files: list[tuple[Path, int]], length: int, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Read every clip up front (so a bad file stops the run before training, never mid-epoch):
    -> (int16 PCM (n, length), labels (n,)). Files at another sample rate are resampled to 16 kHz
    with one warning naming how many and the first one."""
    pcm = torch.empty(len(files), length, dtype=torch.int16)
    resampled: list[Path] = []
    for i, (path, _) in enumerate(files):
        clip, was_resampled = read_clip(path, length)
        pcm[i] = (clip.clamp(-1, 1) * 32767).round().to(torch.int16)
        if was_resampled:
            resampled.append(path)
    if resampled:
        warnings.warn(
            f"{where}: resampled {len(resampled)} WAV file(s) to {SAMPLE_RATE} Hz (first: {resampled[0]})",
            stacklevel=2,
        )
    return pcm, torch.tensor([label for _, label in files], dtype=torch.int64)
