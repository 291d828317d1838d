"""Long sequences in pieces: the recurrent state of every layer (conv inputs and SSM state) is passed
from one chunk of the sequence to the next, so the result equals one pass over the whole sequence
(the primitives take and return their state), while memory grows with the chunk, not the length.

- ``chunked_forward``: training. Each chunk runs under activation checkpointing: only the states
  between chunks and the outputs are kept; the backward recomputes one chunk at a time.
- ``stream_log_likelihood`` / ``stream_embeddings``: inference on a sequence of any length with
  memory independent of L (apart from the per-token result itself).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn as nn
import torch.utils.checkpoint as ckpt


def _chunks(L: int, chunk_len: int) -> Iterator[tuple[int, int]]:
    if chunk_len < 1:
        raise ValueError(f"chunk_len={chunk_len}: expected a positive number of tokens")
    for start in range(0, L, chunk_len):
        yield start, min(start + chunk_len, L)


def _flatten(states: list) -> list[torch.Tensor]:
    return [t for s in states for t in (s.conv, s.ssm)]


def _unflatten(template: list, tensors: tuple) -> list:
    return [type(s)(tensors[2 * i], tensors[2 * i + 1]) for i, s in enumerate(template)]


def chunked_forward(
    model: nn.Module,
    input_ids: torch.Tensor,
    chunk_len: int,
    states: list | None = None,
    checkpoint: bool = True,
) -> tuple[torch.Tensor, list]:
    """Run ``model(ids, states, return_states=True) -> (out, states)`` (a ``MambaLMHeadModel`` or its
    ``Backbone``) over ``input_ids`` (batch, L) in chunks of ``chunk_len`` tokens.

    Returns the concatenated outputs and the states after the last token. With ``checkpoint``
    (and gradients enabled), each chunk's activations are freed after its forward and recomputed
    in the backward, so peak memory is that of one chunk plus the states and outputs.
    """
    if states is None:  # zero states: the same as starting the sequence
        states = model.init_states(input_ids.shape[0], input_ids.device)
    use_checkpoint = checkpoint and torch.is_grad_enabled()
    outs = []
    for start, end in _chunks(input_ids.shape[1], chunk_len):
        piece = input_ids[:, start:end]
        if use_checkpoint:

            def run(ids, *flat, _template=states):
                out, new = model(ids, _unflatten(_template, flat), return_states=True)
                return (out, *_flatten(new))

            result = ckpt.checkpoint(run, piece, *_flatten(states), use_reentrant=False)
            out, states = result[0], _unflatten(states, result[1:])
        else:
            out, states = model(piece, states, return_states=True)
        outs.append(out)
    return torch.cat(outs, dim=1), states


@torch.inference_mode()
def stream_log_likelihood(model: nn.Module, input_ids: torch.Tensor, chunk_len: int) -> torch.Tensor:
    """log p(x_t | x_<t) for t = 1..L-1 of ``input_ids`` (batch, L), computed chunk by chunk:
    memory is one chunk of logits, whatever L is. Returns (batch, L-1) float32."""
    states, prev_last, scores = None, None, []
    for start, end in _chunks(input_ids.shape[1], chunk_len):
        piece = input_ids[:, start:end]
        logits, states = model(piece, states, return_states=True)
        logp = logits.float().log_softmax(-1)
        if prev_last is not None:  # the first token of this chunk, predicted by the previous one
            scores.append(prev_last.gather(-1, piece[:, :1]))
        scores.append(logp[:, :-1].gather(-1, piece[:, 1:, None]).squeeze(-1))
        prev_last = logp[:, -1]
    return torch.cat(scores, dim=1)


@torch.inference_mode()
def stream_embeddings(backbone: nn.Module, input_ids: torch.Tensor, chunk_len: int) -> torch.Tensor:
    """Final-layer hidden states (batch, L, d_model) of a ``Backbone``, chunk by chunk."""
    out, _ = chunked_forward(backbone, input_ids, chunk_len, checkpoint=False)
    return out
