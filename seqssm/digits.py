"""An offline spoken-digit set in the SC09 layout (``seqssm/sc09.py``): "zero" .. "nine" spoken by
the espeak-ng formant synthesizer bundled in the PyPI wheel ``espeakng-loader`` (no system
package, no network), with 48 voices (6 English accents x voice variants) and 3 speaking rates and
pitches per voice: 1,440 clips. Each clip: 22,050 Hz int16 PCM from espeak-ng, silence trimmed,
resampled to 16 kHz (torchaudio.functional.resample), scaled to a peak in [0.3, 0.9], placed at a
random offset in a 1-second clip of silence, written as 16-bit WAV. Voices, not clips, are split:
6 voices for validation, 6 for testing, 36 for training, as SC09 splits by speaker.

The set is generated on first use under ``$SEQSSM_CACHE/digits/v1`` (default
``~/.cache/seqssm``), in a child process: espeak-ng keeps state between utterances and draws
noise from libc's generator, so one process replaying the same sequence of calls from a fresh
library instance is what makes the files identical from run to run. The folder appears at once
(written beside it, then renamed), so an interrupted or concurrent first use never leaves half
a data set.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.transforms as T

from seqssm.errors import DataError
from seqssm.sc09 import DIGITS

VERSION = "v1"
ESPEAK_RATE = 22_050
ACCENTS = ("en-us", "en", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-us-nyc")
VARIANTS = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5", "croak", "klatt", "klatt2",
    "klatt3", "klatt4", "Alex", "Andy", "Annie", "Denis", "Gene", "Jacky", "Lee", "Mario", "Michael", "Mike",
    "Tweaky", "adam", "anika", "aunty", "belinda", "benjamin", "boris", "caleb", "david", "edward", "grandma",
    "grandpa", "ian", "iven", "john", "linda", "max", "norbert", "paul", "quincy",
)  # fmt: skip
TAKES = 3  # (rate, pitch) draws per voice


def voices() -> list[str]:
    """espeak-ng voice names "accent+variant", accents cycling over the variants."""
    return [f"{ACCENTS[i % len(ACCENTS)]}+{v}" for i, v in enumerate(VARIANTS)]


def split_of(voice_index: int) -> str:
    return {6: "validation", 7: "testing"}.get(voice_index % 8, "train")


def cache_dir() -> Path:
    return Path(os.environ.get("SEQSSM_CACHE") or Path.home() / ".cache" / "seqssm").expanduser()


class Espeak:
    """espeak-ng through ctypes, synchronous output: ``say`` returns int16 PCM at 22,050 Hz."""

    RATE, PITCH = 1, 3  # espeak_PARAMETER
    SYNCHRONOUS, POS_CHARACTER, CHARS_UTF8 = 2, 1, 1

    def __init__(self) -> None:
        import espeakng_loader

        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.libc = ctypes.CDLL(ctypes.util.find_library("c"))
        self.lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self.lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                          ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]  # fmt: skip
        rate = self.lib.espeak_Initialize(self.SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), 0)
        if rate != ESPEAK_RATE:
            raise RuntimeError(f"espeak_Initialize returned {rate}, expected sample rate {ESPEAK_RATE}")
        self._chunks: list[np.ndarray] = []
        callback_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
        self._callback = callback_type(self._collect)  # kept alive as long as the library may call it
        self.lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav, n: int, events) -> int:
        if n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, (n,)).copy())
        return 0

    def say(self, text: str, voice: str, rate: int, pitch: int, seed: int = 1) -> np.ndarray:
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise RuntimeError(f"espeak-ng has no voice {voice!r}")
        self.lib.espeak_SetParameter(self.RATE, rate, 0)
        self.lib.espeak_SetParameter(self.PITCH, pitch, 0)
        self._chunks = []
        # Breathy variants (f2, f3, f5, ...) add noise from espeak-ng's generator and libc's rand():
        # seeding both per utterance makes the noise, and so the files, the same on every run.
        self.lib.espeak_ng_SetRandSeed(ctypes.c_long(seed))
        self.libc.srand(ctypes.c_uint(seed))
        b = text.encode() + b"\0"
        if self.lib.espeak_Synth(b, len(b), 0, self.POS_CHARACTER, 0, self.CHARS_UTF8, None, None) != 0:
            raise RuntimeError(f"espeak_Synth failed for {text!r} with voice {voice!r}")
        self.lib.espeak_Synchronize()
        return np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)


def to_clip(pcm: np.ndarray, rng: np.random.Generator, resample: torch.nn.Module, length: int = 16_000) -> np.ndarray:
    """espeak PCM (22,050 Hz int16) -> one 16 kHz float32 clip: trimmed, resampled, scaled, placed."""
    x = pcm.astype(np.float32) / 32768
    loud = np.nonzero(np.abs(x) > 0.01 * np.abs(x).max())[0]
    x = x[loud[0] : loud[-1] + 1]
    y = resample(torch.from_numpy(x)).numpy()[:length]
    y = y * (rng.uniform(0.3, 0.9) / max(1e-6, float(np.abs(y).max())))
    clip = np.zeros(length, np.float32)
    start = int(rng.integers(0, length - len(y) + 1))
    clip[start : start + len(y)] = y
    return clip


def synthesize(out: Path) -> int:
    """Write the whole set into ``out`` (an empty folder); returns the number of clips."""
    tts, lists, n = Espeak(), {"validation": [], "testing": []}, 0
    resample = T.Resample(ESPEAK_RATE, 16_000)  # the windowed-sinc kernel, built once
    for word in DIGITS:
        (out / word).mkdir(parents=True, exist_ok=True)
    for v, voice in enumerate(voices()):
        speaker = voice.replace("+", "-").lower()
        for d, word in enumerate(DIGITS):
            for take in range(TAKES):
                rng = np.random.default_rng([v, d, take])
                rate, pitch = int(rng.integers(130, 221)), int(rng.integers(25, 76))
                clip = to_clip(tts.say(word, voice, rate, pitch, seed=1 + n), rng, resample)
                name = f"{word}/{speaker}_nohash_{take}.wav"
                sf.write(str(out / name), (clip * 32767).round().astype(np.int16), 16_000, subtype="PCM_16")
                if split_of(v) in lists:
                    lists[split_of(v)].append(name)
                n += 1
    for split, names in lists.items():
        (out / f"{split}_list.txt").write_text("\n".join(sorted(names)) + "\n")
    return n


def offline_digits() -> Path:
    """The folder of the offline set, generated (in a child process) if it is not there yet."""
    root = cache_dir() / "digits" / VERSION
    if (root / "testing_list.txt").is_file():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{VERSION}.", dir=root.parent))
    try:
        print(f"seqssm: synthesizing the offline spoken-digit set into {root} (once)", file=sys.stderr)
        p = subprocess.run([sys.executable, "-m", "seqssm.digits", "--out", str(tmp)], capture_output=True, text=True)
        if p.returncode != 0:
            last = (p.stderr.strip().splitlines() or ["no output"])[-1]
            raise DataError(f"{root}: could not synthesize the offline digits with espeakng-loader ({last})")
        try:
            os.replace(tmp, root)
        except OSError:  # another process finished first: keep its folder
            if not (root / "testing_list.txt").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Synthesize the offline spoken-digit set (SC09 layout).")
    ap.add_argument("--out", required=True, help="an empty or new folder")
    out = Path(ap.parse_args(argv).out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"wrote {synthesize(out)} clips to {out}")


if __name__ == "__main__":
    main()
