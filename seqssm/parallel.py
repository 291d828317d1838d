"""Sequence parallelism for one very long sequence (Mamba-2 paper, section 8): the sequence is split
into contiguous pieces, one per rank (rank order = sequence order). Every layer of rank r starts
from the recurrent state (conv inputs and SSM state) that the same layer of rank r-1 ended with,
received point to point, and sends its own final state to rank r+1:

    h_in^(r, l) = h_out^(r-1, l),   h_in^(0, l) = 0

so the result equals one pass over the whole sequence. Layers pipeline across ranks (rank r runs
layer l while rank r+1 runs layer l-1). In the backward the gradient with respect to each received
state is sent back to the rank that produced it. Parameter gradients are per rank and are summed
across ranks by the data-parallel strategy (or ``torch.distributed.all_reduce``).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn as nn


def _wire(t: torch.Tensor) -> torch.Tensor:
    """Complex states travel as real pairs (not every backend sends complex tensors)."""
    return torch.view_as_real(t) if t.is_complex() else t


class _RecvState(torch.autograd.Function):
    """Forward: receive a state from ``src``. Backward: send its gradient back to ``src``."""

    @staticmethod
    def forward(ctx, anchor, src, tag, group, *templates):
        ctx.src, ctx.tag, ctx.group = src, tag, group
        ctx.templates = [torch.zeros_like(t) for t in templates]
        out = []
        for t in templates:
            buf = torch.empty_like(t)
            dist.recv(_wire(buf), src=src, tag=tag, group=group)
            out.append(buf)
        return tuple(out)

    @staticmethod
    def backward(ctx, *grads):
        for g, zero in zip(grads, ctx.templates, strict=True):
            g = zero if g is None else g  # a state that did not reach the loss
            dist.send(_wire(g.contiguous()), dst=ctx.src, tag=ctx.tag, group=ctx.group)
        return (None, None, None, None) + (None,) * len(grads)


class _SendState(torch.autograd.Function):
    """Forward: send a state to ``dst``, return a zero scalar that ties this node to the loss.
    Backward: receive the gradient of the state from ``dst``."""

    @staticmethod
    def forward(ctx, dst, tag, group, *states):
        ctx.dst, ctx.tag, ctx.group = dst, tag, group
        ctx.shapes = [(s.shape, s.dtype, s.device) for s in states]
        for s in states:
            dist.send(_wire(s.detach().contiguous()), dst=dst, tag=tag, group=group)
        return states[0].new_zeros((), dtype=torch.float32 if states[0].is_complex() else states[0].dtype)

    @staticmethod
    def backward(ctx, _):
        grads = []
        for shape, dtype, device in ctx.shapes:
            g = torch.empty(shape, dtype=dtype, device=device)
            dist.recv(_wire(g), src=ctx.dst, tag=ctx.tag, group=ctx.group)
            grads.append(g)
        return (None, None, None, *grads)


def sequence_parallel_forward(model: nn.Module, input_ids: torch.Tensor, group=None) -> torch.Tensor:
    """Logits of this rank's piece ``input_ids`` (batch, L_r) of a sequence split across the ranks of
    ``group``; ``model`` is a ``MambaLMHeadModel`` replicated on every rank."""
    rank, world = dist.get_rank(group), dist.get_world_size(group)
    prev = dist.get_global_rank(group, rank - 1) if group is not None and rank > 0 else rank - 1
    nxt = dist.get_global_rank(group, rank + 1) if group is not None and rank < world - 1 else rank + 1
    backbone = model.backbone
    templates = backbone.init_states(input_ids.shape[0], input_ids.device)
    anchor = torch.zeros((), requires_grad=True)  # puts each receive into the autograd graph
    hidden, residual, ties = backbone.embedding(input_ids), None, []
    for i, layer in enumerate(backbone.layers):
        state = None
        if rank > 0:
            t = templates[i]
            conv, ssm = _RecvState.apply(anchor, prev, i, group, t.conv, t.ssm)
            state = type(t)(conv, ssm)
        hidden, residual, out_state = layer(hidden, residual, state, return_state=True)
        if rank < world - 1:
            ties.append(_SendState.apply(nxt, i, group, out_state.conv, out_state.ssm))
    hidden = backbone.norm_f(hidden, residual, prenorm=False)
    logits = model.lm_head(hidden)[..., : model.vocab_size]
    for tie in ties:
        logits = logits + tie.to(logits.dtype)
    return logits
