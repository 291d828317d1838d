"""The model configuration: one plain dataclass, validated before anything is built."""

from __future__ import annotations

from dataclasses import dataclass

from seqssm.errors import ConfigError

MIXERS = ("mamba", "mamba2", "transformer")  # transformer: the attention baseline (models/transformer.py)


@dataclass
class ModelConfig:
    """Backbone and mixer sizes. Defaults are a small model that trains on a CPU in minutes."""

    mixer: str = "mamba"  # "mamba" (Mamba-1, S6) or "mamba2" (SSD)
    d_model: int = 64
    n_layer: int = 4
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    headdim: int = 64  # mamba2 only
    ngroups: int = 1  # mamba2 only
    chunk_size: int = 256  # mamba2 only
    rope_fraction: float = 0.0  # mamba2 only: share of state dims in pairs turned by data-dependent angles (rotary SSD)
    complex: bool = False  # mamba only: complex diagonal A (S4D-Lin), complex B and C
    dt_rank: int = 0  # mamba only: rank of the Δ projection; 0 = ceil(d_model / 16)
    conv_bias: bool = True  # bias in the depthwise conv1d
    bias: bool = False  # biases in in_proj and out_proj
    norm_eps: float = 1e-5
    residual_in_fp32: bool = True  # keep the residual stream in fp32 when the model runs in bf16/fp16
    tie_embeddings: bool = True
    pad_vocab_size_multiple: int = 8
    backend: str = "auto"  # "auto" | "reference" | "triton" for every primitive
    bidirectional: bool = False  # forward + reversed scan in every block (models/bidirectional.py); cannot generate
    bidirectional_strategy: str = "add"  # how the two directions combine: "add" or "concat" (then a projection)
    rc_equivariant: bool = False  # DNA tokens: reverse-complement parameter sharing (Caduceus RCPS; models/rc.py)
    init_from: str | None = None  # a training checkpoint whose backbone initialises this model (fine-tuning)

    def validate(self) -> None:
        if self.mixer not in MIXERS:
            raise ConfigError(f"model.mixer={self.mixer!r}: expected one of {', '.join(MIXERS)}")
        for key in ("d_model", "n_layer", "d_state", "d_conv", "expand", "headdim", "ngroups", "chunk_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"model.{key}={getattr(self, key)}: expected a positive integer")
        if self.dt_rank < 0:
            raise ConfigError(f"model.dt_rank={self.dt_rank}: expected 0 (auto, ceil(d_model/16)) or a positive int")
        if not 2 <= self.d_conv <= 4:
            raise ConfigError(f"model.d_conv={self.d_conv}: expected 2, 3 or 4")
        if self.backend not in ("auto", "reference", "triton"):
            raise ConfigError(f"model.backend={self.backend!r}: expected auto, reference or triton")
        if self.bidirectional_strategy not in ("add", "concat"):
            raise ConfigError(f"model.bidirectional_strategy={self.bidirectional_strategy!r}: expected add or concat")
        if self.mixer == "mamba2":
            d_inner = self.expand * self.d_model
            if d_inner % self.headdim:
                raise ConfigError(
                    f"model: mamba2 needs expand*d_model ({d_inner}) divisible by model.headdim ({self.headdim})"
                )
            if (d_inner // self.headdim) % self.ngroups:
                raise ConfigError(
                    f"model: mamba2 has {d_inner // self.headdim} heads, not divisible by model.ngroups "
                    f"({self.ngroups})"
                )
            if self.complex:
                raise ConfigError("model.complex=true is a Mamba-1 option: use it with model.mixer=mamba")
            if not 0.0 <= self.rope_fraction <= 1.0:
                raise ConfigError(f"model.rope_fraction={self.rope_fraction}: expected a fraction in [0, 1]")
            if self.rope_fraction and int(self.rope_fraction * self.d_state) < 2:
                raise ConfigError(
                    f"model.rope_fraction={self.rope_fraction} of model.d_state={self.d_state} rotates no pair of "
                    "state dims: expected rope_fraction * d_state >= 2"
                )
        elif self.rope_fraction:
            raise ConfigError("model.rope_fraction is a Mamba-2 option (rotary SSD): use it with model.mixer=mamba2")
        if self.mixer == "transformer" and (self.d_model % self.headdim or self.headdim % 2):
            raise ConfigError(
                f"model: transformer needs d_model ({self.d_model}) divisible by an even model.headdim ({self.headdim})"
            )
