"""The decode step ``model.step(token, states)`` captured once in a CUDA graph and replayed for every
new token (as mamba_ssm's ``update_graph_cache`` does): one graph launch per token instead of a few
hundred kernel launches, which is what bounds decoding at small batch sizes.

A graph replays fixed memory addresses, so the step works on static buffers: the input token, every
layer's recurrent state (conv window and SSM state: a Mamba state has a fixed size, so the step has
fixed shapes) and the output logits. ``load_states`` copies the prefill's states in; each call copies
the token in, replays, and returns the static logits (valid until the next call).

Only models whose every mixer has a fixed-size state can be captured (a KV cache grows each step):
Mamba-1 and Mamba-2 (rotary included), see ``can_capture``. Without ``capture`` (or off CUDA) the same static-buffer
path runs eagerly, which is how the buffer logic is tested on the CPU.
"""

from __future__ import annotations

from dataclasses import fields

import torch
import torch.nn as nn

from seqssm.modules.mamba import Mamba
from seqssm.modules.mamba2 import Mamba2


def can_capture(model: nn.Module) -> bool:
    """True if ``model`` is an LM over a backbone whose every mixer is a Mamba-1 or Mamba-2 block (fixed-size
    states). Mamba-2's captured step equals its eager step exactly on an H100 (bench/decode_graph_check.py,
    2026-11-23). An earlier mismatch was seen with chunk_size 4 (below the SSD kernels' minimum of 16, then
    an error on CUDA, now rounded up) and d_state 8; tests/test_generation.py checks that configuration
    on a GPU."""
    layers = getattr(getattr(model, "backbone", None), "layers", None)
    return (
        layers is not None and len(layers) > 0 and all(isinstance(layer.mixer, (Mamba, Mamba2)) for layer in layers)
    )


def copy_states(dst: list, src: list) -> None:
    """Copy every tensor of the per-layer state dataclasses ``src`` into ``dst`` (same shapes)."""
    if len(dst) != len(src):
        raise ValueError(f"copy_states: {len(src)} layer states for a model of {len(dst)} layers")
    for i, (d, s) in enumerate(zip(dst, src, strict=True)):
        for f in fields(d):
            a, b = getattr(d, f.name), getattr(s, f.name)
            if a.shape != b.shape:
                raise ValueError(f"copy_states: layer {i} {f.name} state {tuple(b.shape)}, expected {tuple(a.shape)}")
            a.copy_(b)


class GraphedStep:
    """``model.step`` for a fixed batch size on static buffers, captured in a CUDA graph if ``capture``."""

    def __init__(self, model: nn.Module, batch: int, device: torch.device, capture: bool = True, warmup: int = 3):
        self.model, self.batch, self.device = model, batch, torch.device(device)
        self.states = model.init_states(batch, self.device)
        self.token = torch.zeros(batch, dtype=torch.long, device=self.device)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.logits: torch.Tensor | None = None
        if capture:
            self._capture(warmup)

    def _capture(self, warmup: int) -> None:
        if self.device.type != "cuda":
            raise ValueError(f"GraphedStep: CUDA graphs need a CUDA device, the model is on {self.device}")
        # Warm up on a side stream first: Triton compiles and autotunes, cuBLAS picks its workspaces;
        # none of that may happen during capture. The states are scratch until load_states.
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(warmup):
                self.model.step(self.token, self.states)
        torch.cuda.current_stream(self.device).wait_stream(side)
        # A private memory pool per graph: with one pool shared by every graph, capturing after an
        # earlier graph was freed (parameters moved, cache dropped) failed in PyTorch's allocator
        # ("use_count > 0" internal assert, H100, torch 2.11).
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.logits = self.model.step(self.token, self.states)

    def load_states(self, states: list) -> None:
        copy_states(self.states, states)

    def __call__(self, token: torch.Tensor) -> torch.Tensor:
        """token (batch,) -> logits (batch, vocab) of the next position; the states advance one token."""
        self.token.copy_(token)
        if self.graph is None:
            return self.model.step(self.token, self.states)
        self.graph.replay()
        return self.logits


def _params_key(model: nn.Module) -> tuple:
    """Where the parameters live: a captured graph reads these addresses, so any move (``.to``,
    ``load_state_dict(assign=True)``) must invalidate it."""
    return tuple((p.data_ptr(), p.dtype) for p in model.parameters())


def graphed_step(model: nn.Module, batch: int, device: torch.device) -> GraphedStep:
    """The model's captured step for ``batch``, captured on first use and kept on the model (one graph
    per batch size; re-captured if the parameters moved)."""
    key = _params_key(model)
    cache = getattr(model, "_seqssm_decode_graphs", None)
    if cache is None or cache["params"] != key:
        cache = {"params": key, "steps": {}}
        model._seqssm_decode_graphs = cache  # plain attribute: not a parameter, not in the state dict
    if batch not in cache["steps"]:
        cache["steps"][batch] = GraphedStep(model, batch, device, capture=True)
    return cache["steps"][batch]
