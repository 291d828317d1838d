"""A PNG of audio clips: one row per clip, its waveform (left) and log-mel spectrogram (right,
torchaudio.transforms.MelSpectrogram, 64 bands, 25 ms windows, 10 ms hop, in dB)."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torchaudio.transforms as T  # noqa: E402

from seqssm.audio import SAMPLE_RATE  # noqa: E402
from seqssm.io import atomic_write  # noqa: E402


def plot_clips(clips: list[tuple[str, torch.Tensor]], out_png: str | os.PathLike) -> None:
    """``clips``: (title, float waveform at 16 kHz) pairs."""
    mel = T.MelSpectrogram(SAMPLE_RATE, n_fft=400, hop_length=160, n_mels=64)
    to_db = T.AmplitudeToDB(top_db=80)
    fig, axes = plt.subplots(len(clips), 2, figsize=(10, 2.2 * len(clips)), squeeze=False)
    for (title, x), (ax_w, ax_m) in zip(clips, axes, strict=True):
        x = x.detach().float().cpu()
        t = torch.arange(x.numel()) / SAMPLE_RATE
        ax_w.plot(t.numpy(), x.numpy(), lw=0.4)
        ax_w.set_xlim(0, x.numel() / SAMPLE_RATE)
        ax_w.set_ylim(-1, 1)
        ax_w.set_title(f"{title}: waveform", fontsize=9)
        ax_w.set_xlabel("seconds", fontsize=8)
        spec = to_db(mel(x)).numpy()
        ax_m.imshow(spec, origin="lower", aspect="auto", extent=(0, x.numel() / SAMPLE_RATE, 0, spec.shape[0]))
        ax_m.set_title(f"{title}: mel spectrogram (dB)", fontsize=9)
        ax_m.set_xlabel("seconds", fontsize=8)
        ax_m.set_ylabel("mel band", fontsize=8)
    fig.tight_layout()
    atomic_write(Path(out_png), lambda p: fig.savefig(p, format="png", dpi=90))
    plt.close(fig)
