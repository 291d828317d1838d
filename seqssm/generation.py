"""Sampling from a recurrent model: the prompt runs through the parallel scan once (prefill,
returning every layer's state), then each new token is one O(1) ``step``.

Sampling: logits / temperature, keep the ``top_k`` most likely tokens and the smallest set whose
probability reaches ``top_p`` (nucleus sampling, Holtzman et al. 2020), then draw; temperature 0
is greedy decoding.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch


def sample_logits(
    logits: torch.Tensor, temperature: float, top_k: int, top_p: float, generator: torch.Generator | None
) -> torch.Tensor:
    """logits (batch, vocab) -> token ids (batch,)."""
    if temperature <= 0:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    if 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop = cum - sorted_logits.softmax(-1) >= top_p  # keep the first token that crosses top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    probs = logits.softmax(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.inference_mode()
def stream(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int | None = None,
) -> Iterator[torch.Tensor]:
    """Yields the new tokens (batch,) one step at a time. ``model`` is a ``MambaLMHeadModel``
    (``forward(ids, return_states=True)`` and ``step(ids, states)``); input_ids (batch, L >= 1)."""
    generator = None
    if seed is not None:
        generator = torch.Generator(device=input_ids.device).manual_seed(seed)
    logits, states = model(input_ids, return_states=True)
    token = sample_logits(logits[:, -1], temperature, top_k, top_p, generator)
    for i in range(max_new_tokens):
        yield token
        if i + 1 < max_new_tokens:
            token = sample_logits(model.step(token, states), temperature, top_k, top_p, generator)


def generate(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int | None = None,
) -> torch.Tensor:
    """Prompt + ``max_new_tokens`` sampled tokens, (batch, L + max_new_tokens)."""
    new = list(stream(model, input_ids, max_new_tokens, temperature, top_k, top_p, seed))
    return torch.cat([input_ids, torch.stack(new, 1)], 1) if new else input_ids
