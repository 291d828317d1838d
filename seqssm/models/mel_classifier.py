"""A spoken-digit classifier on log-mel frames: the SC09 "judge" network behind the sample metrics
(IS, mIS, AM, FID), as SaShiMi (Goel et al. 2022, appendix C.3) uses a classifier trained on SC09.

    m_t   = log(MelSpectrogram(x)_t + 1e-6)               n_mels bands, 40 ms windows, 20 ms hop (51 frames)
    h_0   = W_in · LayerNorm(m_t)                          (frames, d_model)
    h     = Backbone blocks (pre-norm Mamba / Mamba-2 mixers, residual in fp32) over the frames
    f     = mean_t RMSNorm(h)_t                            features (batch, d_model): FID uses them
    logits = W_out f + b                                   10 digit classes

The blocks are the toolkit's own (``seqssm.modules.Block`` with ``make_mixer``), so the mixers
run through ``seqssm.ops`` like every other model.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torchaudio.transforms as T

from seqssm.models.backbone import make_mixer
from seqssm.models.config import ModelConfig
from seqssm.models.lm import init_weights
from seqssm.modules.block import Block
from seqssm.modules.norm import RMSNorm


class MelClassifier(nn.Module):
    def __init__(self, cfg: ModelConfig, n_classes: int, sample_rate: int = 16_000, n_mels: int = 40) -> None:
        super().__init__()
        cfg.validate()
        self.config, self.n_classes = cfg, n_classes
        self.mel = T.MelSpectrogram(sample_rate, n_fft=640, win_length=640, hop_length=320, n_mels=n_mels)
        self.in_norm = nn.LayerNorm(n_mels)
        self.stem = nn.Linear(n_mels, cfg.d_model)
        self.layers = nn.ModuleList(
            Block(cfg.d_model, make_mixer(cfg), cfg.norm_eps, cfg.backend) for _ in range(cfg.n_layer)
        )
        self.norm_f = RMSNorm(cfg.d_model, eps=cfg.norm_eps, backend=cfg.backend)
        self.head = nn.Linear(cfg.d_model, n_classes)
        init_weights(self, cfg.n_layer)

    def features(self, wav: torch.Tensor) -> torch.Tensor:
        """(batch, samples) float waveforms -> pooled features (batch, d_model)."""
        frames = torch.log(self.mel(wav.float()) + 1e-6).transpose(1, 2)  # (batch, frames, n_mels)
        hidden, residual = self.stem(self.in_norm(frames)), None
        for layer in self.layers:
            hidden, residual, _ = layer(hidden, residual)
        return self.norm_f(hidden, residual, prenorm=False).mean(1)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """(batch, samples) -> logits (batch, n_classes)."""
        return self.head(self.features(wav))
