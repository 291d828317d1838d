"""The backbone: token embedding, N residual blocks (pre-norm, fp32 residual), final norm.
Parameter names follow mamba_ssm's ``MixerModel`` (``embedding``, ``layers.{i}.norm``,
``layers.{i}.mixer``, ``norm_f``)."""

from __future__ import annotations

import torch
import torch.nn as nn

from seqssm.errors import ConfigError
from seqssm.models import rc
from seqssm.models.bidirectional import maybe_bidirectional
from seqssm.models.config import ModelConfig
from seqssm.models.transformer import TransformerMixer
from seqssm.modules.block import Block
from seqssm.modules.mamba import Mamba
from seqssm.modules.mamba2 import Mamba2
from seqssm.modules.norm import RMSNorm


def make_mixer(cfg: ModelConfig) -> nn.Module:
    if cfg.mixer == "transformer":
        return TransformerMixer(cfg.d_model, cfg.headdim, cfg.expand)
    if cfg.mixer == "mamba":
        return Mamba(
            cfg.d_model,
            cfg.d_state,
            cfg.d_conv,
            cfg.expand,
            dt_rank=cfg.dt_rank or None,
            complex=cfg.complex,
            conv_bias=cfg.conv_bias,
            bias=cfg.bias,
            backend=cfg.backend,
        )
    return Mamba2(
        cfg.d_model,
        cfg.d_state,
        cfg.d_conv,
        cfg.expand,
        headdim=cfg.headdim,
        ngroups=cfg.ngroups,
        chunk_size=cfg.chunk_size,
        norm_eps=cfg.norm_eps,
        rope_fraction=cfg.rope_fraction,
        conv_bias=cfg.conv_bias,
        bias=cfg.bias,
        backend=cfg.backend,
    )


class Backbone(nn.Module):
    def __init__(self, cfg: ModelConfig, vocab_size: int) -> None:
        super().__init__()
        cfg.validate()
        self.embedding = nn.Embedding(vocab_size, cfg.d_model)
        self.layers = nn.ModuleList(
            Block(cfg.d_model, maybe_bidirectional(cfg, make_mixer), cfg.norm_eps, cfg.backend, cfg.residual_in_fp32)
            for _ in range(cfg.n_layer)
        )
        self.norm_f = RMSNorm(cfg.d_model, eps=cfg.norm_eps, backend=cfg.backend)
        self.rc_equivariant = cfg.rc_equivariant  # models/rc.py: both strands, shared parameters
        self.d_out = 2 * cfg.d_model if cfg.rc_equivariant else cfg.d_model  # channels of the output

    def forward(self, input_ids: torch.Tensor, states: list | None = None, return_states: bool = False):
        """input_ids: (batch, L) -> hidden (batch, L, d_model). ``states`` (one per layer) continue
        an earlier piece of the same sequences; ``return_states`` also returns the states after
        the last token, so a long sequence can be run piece by piece with the same result.
        With ``rc_equivariant``: hidden (batch, L, 2·d_model), the two strands stacked (models/rc.py)."""
        if self.rc_equivariant:
            input_ids = rc.both_strands(input_ids, states, return_states)
        hidden, residual, new_states = self.embedding(input_ids), None, []
        for i, layer in enumerate(self.layers):
            state = None if states is None else states[i]
            hidden, residual, state = layer(hidden, residual, state, return_states)
            new_states.append(state)
        hidden = self.norm_f(hidden, residual, prenorm=False)
        if self.rc_equivariant:
            hidden = rc.stack_strands(hidden)
        return (hidden, new_states) if return_states else hidden

    def init_states(self, batch: int, device: torch.device | None = None) -> list:
        if self.rc_equivariant:
            raise ConfigError(rc.NO_STATE)
        return [layer.mixer.init_state(batch, device) for layer in self.layers]

    def step(self, input_ids: torch.Tensor, states: list) -> torch.Tensor:
        """One token per sequence: input_ids (batch,) -> hidden (batch, d_model); states in place."""
        hidden, residual = self.embedding(input_ids), None
        for layer, state in zip(self.layers, states, strict=True):
            hidden, residual = layer.step(hidden, residual, state)
        return self.norm_f(hidden, residual, prenorm=False)
