"""A language model over any token alphabet (bytes, bases, mu-law samples): backbone + LM head.
Named as mamba_ssm's ``MambaLMHeadModel`` (``backbone.*``, ``lm_head.weight``) so state dicts
move between the two."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from seqssm.errors import ConfigError
from seqssm.models.backbone import Backbone
from seqssm.models.config import ModelConfig


def init_weights(module: nn.Module, n_layer: int) -> None:
    """mamba_ssm's initialisation: zero linear biases, N(0, 0.02) embeddings, and out_proj scaled by
    1/sqrt(n_layer) (GPT-2's rescaling of residual-branch outputs)."""
    for name, m in module.named_modules():
        if isinstance(m, nn.Linear) and m.bias is not None and not getattr(m.bias, "_no_reinit", False):
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)
        if name.endswith("out_proj"):
            nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5))
            with torch.no_grad():
                m.weight /= math.sqrt(n_layer)


class MambaLMHeadModel(nn.Module):
    def __init__(self, cfg: ModelConfig, vocab_size: int) -> None:
        super().__init__()
        if cfg.bidirectional or cfg.rc_equivariant:
            key = "bidirectional" if cfg.bidirectional else "rc_equivariant"
            raise ConfigError(
                f"model.{key}=true: a next-token model must not see the tokens it predicts; use it for "
                "classification (task=dna_classify), not for language modeling or generation"
            )
        self.config, self.vocab_size = cfg, vocab_size
        multiple = cfg.pad_vocab_size_multiple
        padded = math.ceil(vocab_size / multiple) * multiple
        self.backbone = Backbone(cfg, padded)
        self.lm_head = nn.Linear(cfg.d_model, padded, bias=False)
        init_weights(self, cfg.n_layer)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.backbone.embedding.weight

    def forward(self, input_ids: torch.Tensor, states: list | None = None, return_states: bool = False):
        """input_ids: (batch, L) -> logits (batch, L, vocab_size) (padding columns dropped)."""
        out = self.backbone(input_ids, states, return_states)
        hidden, new_states = out if return_states else (out, None)
        logits = self.lm_head(hidden)[..., : self.vocab_size]
        return (logits, new_states) if return_states else logits

    def init_states(self, batch: int, device: torch.device | None = None) -> list:
        return self.backbone.init_states(batch, device)

    def step(self, input_ids: torch.Tensor, states: list) -> torch.Tensor:
        """input_ids (batch,) -> logits (batch, vocab_size); O(1) per token; states in place."""
        return self.lm_head(self.backbone.step(input_ids, states))[..., : self.vocab_size]
