"""Sampling from a recurrent model, for a batch of prompts.

Prefill: the prompts (batch, L) run once through the parallel scan, which returns every layer's
recurrent state after the last prompt token (conv window and SSM state h_L; Gu & Dao 2023, section
3.3: the recurrence h_t = Ā_t h_{t-1} + B̄_t x_t has a fixed-size state). Decode: each new token is one
``model.step`` that updates those states in place, O(1) time and memory per token whatever the
length so far. On CUDA the step is captured once in a CUDA graph and replayed (``seqssm.decode_graph``).

Sampling: logits / temperature, keep the ``top_k`` most likely tokens and the smallest set whose
probability reaches ``top_p`` (nucleus sampling, Holtzman et al. 2020), then draw; temperature 0
is greedy decoding. A sequence that emits one of ``stop_tokens`` is finished: its later positions
hold ``pad_token_id``, and decoding ends when every sequence is finished.

The function is ``seqssm.generation.generate`` (``seqssm.generate`` is the sampling CLI module,
``python -m seqssm.generate``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch

from seqssm.errors import ConfigError


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


def check_args(input_ids: torch.Tensor, max_new_tokens: int, temperature: float, top_k: int, top_p: float) -> None:
    if input_ids.dim() != 2 or input_ids.shape[1] < 1 or input_ids.dtype not in (torch.long, torch.int):
        raise ConfigError(
            f"input_ids: shape {tuple(input_ids.shape)} dtype {input_ids.dtype}: expected integer token ids "
            f"(batch, L >= 1)"
        )
    if max_new_tokens < 0:
        raise ConfigError(f"max_new_tokens={max_new_tokens}: expected >= 0")
    if temperature < 0:
        raise ConfigError(f"temperature={temperature}: expected >= 0 (0 is greedy)")
    if top_k < 0:
        raise ConfigError(f"top_k={top_k}: expected >= 0 (0 keeps every token)")
    if not 0 < top_p <= 1:
        raise ConfigError(f"top_p={top_p}: expected 0 < top_p <= 1")


def prefill(model: torch.nn.Module, input_ids: torch.Tensor) -> tuple[torch.Tensor, list]:
    """The prompts through the parallel scan: logits of the last position (batch, vocab) and the states.
    For a ``MambaLMHeadModel`` the head runs on the last position only (not (batch, L, vocab))."""
    from seqssm.models.lm import MambaLMHeadModel

    if isinstance(model, MambaLMHeadModel):
        hidden, states = model.backbone(input_ids, return_states=True)
        return model.lm_head(hidden[:, -1])[..., : model.vocab_size], states
    logits, states = model(input_ids, return_states=True)
    return logits[:, -1], states


def decode_step(
    model: torch.nn.Module, states: list, batch: int, device: torch.device, cuda_graph: bool | None
) -> Callable[[torch.Tensor], torch.Tensor]:
    """token (batch,) -> next logits, advancing ``states``: the CUDA-graph step when ``cuda_graph`` is True,
    or None on CUDA with a graph-capturable model; else ``model.step``."""
    from seqssm.decode_graph import can_capture, graphed_step

    if cuda_graph is None:
        cuda_graph = device.type == "cuda" and can_capture(model)
    if not cuda_graph:
        return lambda token: model.step(token, states)
    if device.type != "cuda" or not can_capture(model):
        raise ConfigError(
            f"cuda_graph=True: needs a CUDA model whose every mixer is Mamba-1 or Mamba-2 (model on {device.type}, "
            f"capturable: {can_capture(model)})"
        )
    step = graphed_step(model, batch, device)
    step.load_states(states)
    return step


@torch.inference_mode()
def stream(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int | None = None,
    *,
    stop_tokens: int | Sequence[int] | None = None,
    pad_token_id: int | None = None,
    cuda_graph: bool | None = None,
) -> Iterator[torch.Tensor]:
    """Yields the new tokens (batch,) one step at a time. ``model`` is a ``MambaLMHeadModel`` (or any
    module with ``forward(ids, return_states=True)`` and ``step(ids, states)``); input_ids (batch, L >= 1).
    Stops after ``max_new_tokens``, or once every sequence has emitted one of ``stop_tokens`` (later
    tokens of a finished sequence are ``pad_token_id``, default the first stop token). ``seed`` makes
    the draws reproducible; ``cuda_graph`` None captures the step on CUDA when the model allows it."""
    check_args(input_ids, max_new_tokens, temperature, top_k, top_p)
    if max_new_tokens == 0:
        return
    device = input_ids.device
    generator = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
    stop = None
    if stop_tokens is not None:
        stops = [stop_tokens] if isinstance(stop_tokens, int) else list(stop_tokens)
        if stops:
            stop = torch.tensor(stops, dtype=torch.long, device=device)
            pad = stops[0] if pad_token_id is None else pad_token_id
            finished = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=device)

    logits, states = prefill(model, input_ids)
    step = decode_step(model, states, input_ids.shape[0], device, cuda_graph) if max_new_tokens > 1 else None
    token = sample_logits(logits, temperature, top_k, top_p, generator)
    for i in range(max_new_tokens):
        if stop is None:
            yield token
        else:  # the model still gets the sampled token (pad may not be a valid id); the caller gets pad
            yield token.masked_fill(finished, pad)
            finished |= torch.isin(token, stop)
        if i + 1 == max_new_tokens or (stop is not None and bool(finished.all())):
            return
        token = sample_logits(step(token), temperature, top_k, top_p, generator)


def generate(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int | None = None,
    *,
    stop_tokens: int | Sequence[int] | None = None,
    pad_token_id: int | None = None,
    cuda_graph: bool | None = None,
) -> torch.Tensor:
    """Prompts + sampled tokens, (batch, L + n) with n = ``max_new_tokens``, or fewer when every
    sequence has stopped (see ``stream`` for the arguments)."""
    new = list(
        stream(
            model,
            input_ids,
            max_new_tokens,
            temperature,
            top_k,
            top_p,
            seed,
            stop_tokens=stop_tokens,
            pad_token_id=pad_token_id,
            cuda_graph=cuda_graph,
        )
    )
    return torch.cat([input_ids, torch.stack(new, 1).to(input_ids.dtype)], 1) if new else input_ids
