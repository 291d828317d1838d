"""Sequence classification: backbone -> pooling over positions -> linear head (logits per class).

    mean:  f = (1/n) Σ_{t < n} h_t          n: the number of non-PAD tokens (PAD only at the end)
    last:  f = h_{n-1}                        the last real token (for a causal backbone it has seen all)
    logits = W f + b

With ``rc_equivariant`` the backbone returns both strands h = [a ; b] (models/rc.py) and the pooled
features are RC-invariant: mean: f = mean_t(a_t + b_t); last: f = a_{n-1} + b_0 (b_0 is the last
position of the reverse-complement strand). So logits(rc(x)) = logits(x) exactly for unpadded input.
Padding: sequences shorter than the batch are padded with PAD at the end; the causal forward strand
is unaffected, while a reverse scan (bidirectional or the RC strand) reads the PADs first.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from seqssm.genome import PAD
from seqssm.models.backbone import Backbone
from seqssm.models.config import ModelConfig
from seqssm.models.lm import init_weights

POOLINGS = ("mean", "last")


class SequenceClassifier(nn.Module):
    def __init__(self, cfg: ModelConfig, vocab_size: int, n_classes: int, pooling: str = "mean", pad_id: int = PAD):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling={pooling!r}: expected one of {POOLINGS}")
        self.config, self.pooling, self.pad_id, self.n_classes = cfg, pooling, pad_id, n_classes
        multiple = cfg.pad_vocab_size_multiple  # the same embedding shape as MambaLMHeadModel's (init_from)
        self.backbone = Backbone(cfg, math.ceil(vocab_size / multiple) * multiple)
        self.head = nn.Linear(cfg.d_model, n_classes)
        init_weights(self, cfg.n_layer)

    def features(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(batch, L) token ids -> pooled features (batch, d_model)."""
        hidden = self.backbone(input_ids)
        mask = input_ids != self.pad_id
        n = mask.sum(1).clamp(min=1)
        rows = torch.arange(input_ids.shape[0], device=input_ids.device)
        if self.backbone.rc_equivariant:
            a, b = hidden.chunk(2, dim=-1)
            if self.pooling == "last":
                return a[rows, n - 1] + b[:, 0]
            hidden = a + b
        elif self.pooling == "last":
            return hidden[rows, n - 1]
        return (hidden * mask.unsqueeze(-1)).sum(1) / n.unsqueeze(-1)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(batch, L) token ids -> logits (batch, n_classes)."""
        return self.head(self.features(input_ids))
