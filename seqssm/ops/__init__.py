"""The primitives. One function each, with mamba_ssm's signatures; ``backend`` picks the Triton
kernel or the PyTorch reference (see ``seqssm.ops.backend``)."""

from seqssm.ops.conv1d import causal_conv1d_fn, causal_conv1d_update
from seqssm.ops.norm import gated_rms_norm, rms_norm
from seqssm.ops.rotary_ssd import mamba_chunk_scan_rotary, rotary_state_update
from seqssm.ops.selective_scan import selective_scan_fn
from seqssm.ops.ssd import mamba_chunk_scan_combined
from seqssm.ops.step import selective_state_update

__all__ = [
    "causal_conv1d_fn",
    "causal_conv1d_update",
    "gated_rms_norm",
    "mamba_chunk_scan_combined",
    "mamba_chunk_scan_rotary",
    "rotary_state_update",
    "rms_norm",
    "selective_scan_fn",
    "selective_state_update",
]
