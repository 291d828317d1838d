"""seqssm: long-sequence modeling with selective state space models (Mamba, Mamba-2)."""

__version__ = "0.1.0"
