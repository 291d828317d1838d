"""The attention baseline (``model=transformer``): a causal Transformer layer that fits the backbone's
``Block`` (pre-norm, residual kept in fp32) as its mixer, built on ``torch.nn.functional.scaled_dot_product_attention``.

One layer is the parallel attention + MLP form (GPT-J; PaLM, Chowdhery et al. 2022, section 2):

    h = RMSNorm(residual)                      (done by the Block)
    out = Attn(h) + MLP(h)
    Attn(h) = out_proj(softmax(q kᵀ / sqrt(head_dim) + causal mask) v),  q, k = RoPE(W_q h), RoPE(W_k h)
    MLP(h)  = fc2(gelu(fc1(h)))                hidden width expand · d_model

Positions are rotary embeddings (RoPE, Su et al. 2021): q and k of position t are rotated by angles
t · θ_i, θ_i = 10000^(-2i/head_dim), so attention scores depend on relative offsets only and the
model runs at any length — though, as the Mamba paper's Table 2 shows for RoPE and other schemes,
accuracy does not carry far beyond the training length.

The recurrent "state" of an attention layer is its key/value cache (it grows with the sequence):
``forward(h, state, return_state=True)`` continues a sequence piece by piece, ``step`` adds one token.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class KVCache:
    """Keys (after RoPE) and values of every earlier token: (batch, heads, T, head_dim) each."""

    k: torch.Tensor
    v: torch.Tensor

    @property
    def length(self) -> int:
        return self.k.shape[2]


def rope(x: torch.Tensor, offset: int, base: float = 10000.0) -> torch.Tensor:
    """Rotate channel pairs (i, i + head_dim/2) of x (batch, heads, L, head_dim) at positions offset .. offset+L-1."""
    d, dtype = x.shape[-1], torch.promote_types(x.dtype, torch.float32)  # angles in fp32 (float64 for float64)
    inv_freq = base ** (-torch.arange(0, d, 2, device=x.device, dtype=dtype) / d)
    pos = torch.arange(offset, offset + x.shape[2], device=x.device, dtype=dtype)
    angles = pos[:, None] * inv_freq[None]  # (L, d/2)
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    x1, x2 = x[..., : d // 2], x[..., d // 2 :]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class TransformerMixer(nn.Module):
    """Causal multi-head self-attention (RoPE) and an MLP in parallel, as a ``Block`` mixer."""

    def __init__(self, d_model: int, headdim: int = 64, expand: int = 2) -> None:
        super().__init__()
        if d_model % headdim:
            raise ValueError(f"d_model={d_model} is not divisible by headdim={headdim}")
        if headdim % 2:
            raise ValueError(f"headdim={headdim}: RoPE needs an even head dimension")
        self.d_model, self.headdim, self.nheads = d_model, headdim, d_model // headdim
        self.in_proj = nn.Linear(d_model, 3 * d_model, bias=False)  # q, k, v (mamba_ssm's MHA naming)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)
        self.fc1 = nn.Linear(d_model, expand * d_model, bias=False)
        self.fc2 = nn.Linear(expand * d_model, d_model, bias=False)

    def _heads(self, t: torch.Tensor) -> torch.Tensor:  # (batch, L, d_model) -> (batch, heads, L, head_dim)
        return t.unflatten(-1, (self.nheads, self.headdim)).transpose(1, 2)

    def forward(self, hidden_states: torch.Tensor, state: KVCache | None = None, return_state: bool = False):
        """hidden_states (batch, L, d_model). ``state`` holds the keys/values of an earlier piece of the
        same sequences; ``return_state`` also returns the cache extended by this piece."""
        batch, L, _ = hidden_states.shape
        offset = 0 if state is None else state.length
        q, k, v = (self._heads(t) for t in self.in_proj(hidden_states).chunk(3, dim=-1))
        q, k = rope(q, offset), rope(k, offset)
        if state is not None and offset:
            k, v = torch.cat([state.k, k], dim=2), torch.cat([state.v, v], dim=2)
            # query i (absolute position offset + i) sees keys 0 .. offset + i
            mask = torch.ones(L, offset + L, dtype=torch.bool, device=q.device).tril(offset)
            att = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        else:
            att = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        out = self.out_proj(att.transpose(1, 2).reshape(batch, L, self.d_model))
        out = out + self.fc2(F.gelu(self.fc1(hidden_states)))
        return (out, KVCache(k, v)) if return_state else out

    def init_state(self, batch: int, device: torch.device | None = None, dtype=None) -> KVCache:
        dtype = dtype or self.in_proj.weight.dtype
        empty = torch.zeros(batch, self.nheads, 0, self.headdim, device=device, dtype=dtype)
        return KVCache(empty, empty.clone())

    def step(self, hidden_states: torch.Tensor, state: KVCache) -> torch.Tensor:
        """One token: (batch, d_model) -> (batch, d_model); the cache grows by one in place."""
        out, new = self.forward(hidden_states[:, None], state, return_state=True)
        state.k, state.v = new.k, new.v
        return out[:, 0]
