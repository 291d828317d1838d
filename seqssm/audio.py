"""Raw audio in and out: WAV files through soundfile (torchaudio.load needs FFmpeg), 1-second
16 kHz clips, and 8-bit mu-law quantization.

Mu-law companding (ITU-T G.711; WaveNet, van den Oord et al. 2016, section 2.2; SaShiMi, Goel
et al. 2022, section 5.1), with mu = 255 and x in [-1, 1]:

    f(x) = sign(x) · ln(1 + mu·|x|) / ln(1 + mu),     code = floor((f(x) + 1) / 2 · mu + 1/2) in 0..255

Silence (x = 0) is code 128. Decoding inverts f on the code's centre; the round trip error is at
most half a quantization step in the companded domain.

Input policy (documented in the README): a WAV must be mono with at least one frame. Another
sample rate is resampled to 16 kHz (torchaudio.functional.resample) and counted, so the caller
can warn once; clips are padded with silence or trimmed to ``length`` samples, as SC09 is.
A truncated file (its header promises more data than it holds) is rejected.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from seqssm.errors import DataError
from seqssm.io import atomic_write

SAMPLE_RATE = 16_000
CLIP_LEN = SAMPLE_RATE  # SC09: one second
MU_CLASSES = 256
SILENCE = MU_CLASSES // 2  # mu_law_encoding(0.0)

_DATA_CHUNK = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)


def mu_law_encode(x: torch.Tensor) -> torch.Tensor:
    """Waveform in [-1, 1] (float) -> codes 0..255 (int64)."""
    return AF.mu_law_encoding(x.clamp(-1.0, 1.0), MU_CLASSES)


def mu_law_decode(codes: torch.Tensor) -> torch.Tensor:
    """Codes 0..255 -> waveform in [-1, 1] (float32)."""
    return AF.mu_law_decoding(codes, MU_CLASSES).float()


def pad_or_trim(x: torch.Tensor, length: int) -> torch.Tensor:
    """Last dimension to exactly ``length``: zeros (silence) appended, or the end cut."""
    if x.shape[-1] >= length:
        return x[..., :length]
    return torch.nn.functional.pad(x, (0, length - x.shape[-1]))


def read_wav(path: str | os.PathLike) -> tuple[torch.Tensor, int]:
    """A mono WAV -> (float32 waveform in [-1, 1], sample rate). DataError for unreadable, empty,
    truncated or multi-channel files."""
    p = Path(path)
    try:
        info = sf.info(str(p))
        data, rate = sf.read(str(p), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        reason = "empty file" if p.is_file() and p.stat().st_size == 0 else str(e).split(": ", 1)[-1]
        raise DataError(f"{p}: not a readable WAV file ({reason})") from None
    m = _DATA_CHUNK.search(info.extra_info or "")
    if m and int(m.group(2)) < int(m.group(1)):
        raise DataError(f"{p}: truncated WAV file (header promises {m.group(1)} data bytes, file has {m.group(2)})")
    if data.shape[1] != 1:
        raise DataError(f"{p}: {data.shape[1]} channels, expected a mono WAV (mix it down first)")
    if data.shape[0] == 0:
        raise DataError(f"{p}: empty WAV file (0 samples)")
    return torch.from_numpy(np.ascontiguousarray(data[:, 0])), int(rate)


def read_clip(path: str | os.PathLike, length: int = CLIP_LEN) -> tuple[torch.Tensor, bool]:
    """A WAV as a 16 kHz clip of ``length`` samples (float32). Returns (clip, resampled): another
    sample rate is resampled to 16 kHz and flagged, so that the caller warns."""
    x, rate = read_wav(path)
    resampled = rate != SAMPLE_RATE
    if resampled:
        x = AF.resample(x, rate, SAMPLE_RATE)
    return pad_or_trim(x, length), resampled


def write_wav(path: str | os.PathLike, x: torch.Tensor, sample_rate: int = SAMPLE_RATE) -> None:
    """A mono float waveform in [-1, 1] -> 16-bit PCM WAV, written atomically."""
    pcm = (x.detach().float().clamp(-1, 1).cpu().numpy() * 32767).round().astype(np.int16)
    atomic_write(path, lambda p: sf.write(str(p), pcm, sample_rate, subtype="PCM_16", format="WAV"))
