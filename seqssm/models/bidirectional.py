"""Bidirectional mixing (``model.bidirectional=true``), as Caduceus's BiMamba (Schiff et al. 2024,
"Caduceus: Bi-Directional Equivariant Long-Range DNA Sequence Modeling", section 3.1):

    y = fwd(x) + flip(rev(flip(x)))                       strategy "add"
    y = proj([fwd(x) ; flip(rev(flip(x)))])               strategy "concat", proj: 2·d_model -> d_model

where flip reverses the length axis and ``fwd``, ``rev`` are two mixers of the same kind (own
parameters). Position t of the output sees the whole sequence: such a model suits classification,
not next-token prediction, and it has no recurrent state to carry — ``step`` and state passing
raise a ConfigError (a bidirectional model cannot generate or stream).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn

from seqssm.errors import ConfigError
from seqssm.models.config import ModelConfig

NO_STATE = (
    "model.bidirectional=true: a bidirectional model sees the whole sequence at once; it cannot run "
    "step by step or piece by piece (generation, streaming, chunk_len); use a unidirectional model"
)


class BiMixer(nn.Module):
    def __init__(self, fwd: nn.Module, rev: nn.Module, d_model: int, strategy: str = "add") -> None:
        super().__init__()
        if strategy not in ("add", "concat"):
            raise ConfigError(f"model.bidirectional_strategy={strategy!r}: expected add or concat")
        self.fwd, self.rev, self.strategy = fwd, rev, strategy
        self.proj = nn.Linear(2 * d_model, d_model, bias=False) if strategy == "concat" else None

    def forward(self, x: torch.Tensor, state=None, return_state: bool = False) -> torch.Tensor:
        """x: (batch, L, d_model) -> (batch, L, d_model)."""
        if state is not None or return_state:
            raise ConfigError(NO_STATE)
        y_fwd = self.fwd(x)
        y_rev = self.rev(x.flip(1)).flip(1)
        if self.proj is None:
            return y_fwd + y_rev
        return self.proj(torch.cat([y_fwd, y_rev], dim=-1))

    def init_state(self, batch: int, device: torch.device | None = None):
        raise ConfigError(NO_STATE)

    def step(self, x: torch.Tensor, state) -> torch.Tensor:
        raise ConfigError(NO_STATE)


def maybe_bidirectional(cfg: ModelConfig, make_mixer: Callable[[ModelConfig], nn.Module]) -> nn.Module:
    """``make_mixer(cfg)``, or two of them in a BiMixer when ``cfg.bidirectional``."""
    if not cfg.bidirectional:
        return make_mixer(cfg)
    return BiMixer(make_mixer(cfg), make_mixer(cfg), cfg.d_model, cfg.bidirectional_strategy)
