"""Diagnostic for the Mamba-2 CUDA-graph decode step (issue 9): the captured step of a small random
Mamba-2 LM against the eager step, token by token, with each group of modules switched between the
Triton kernels and the PyTorch reference, to find which kernel's captured replay differs.

usage: python bench/decode_graph_check.py      (CUDA only)
"""

from __future__ import annotations

import json

import torch

from seqssm.decode_graph import GraphedStep
from seqssm.generation import prefill
from seqssm.models import MambaLMHeadModel, ModelConfig


def set_backend(model: torch.nn.Module, kinds: dict[str, str]) -> None:
    """kinds: module class name -> backend ("Mamba2", "GatedRMSNorm", "RMSNorm")."""
    for m in model.modules():
        name = type(m).__name__
        if name in kinds and hasattr(m, "backend"):
            m.backend = kinds[name]


def compare(model, ids, steps: int = 12) -> list[float]:
    """Max |logit difference| per step between the eager step and the captured step."""
    _, states_eager = prefill(model, ids)
    logits, states_graph = prefill(model, ids)
    graph = GraphedStep(model, ids.shape[0], ids.device, capture=True)
    graph.load_states(states_graph)
    token = logits.argmax(-1)
    diffs = []
    for _ in range(steps):
        want = model.step(token, states_eager)
        got = graph(token)
        diffs.append((got - want).abs().max().item())
        token = want.argmax(-1)
    return diffs


@torch.inference_mode()
def main() -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(mixer="mamba2", d_model=64, n_layer=2, d_state=32, headdim=32, ngroups=1, chunk_size=16)
    model = MambaLMHeadModel(cfg, 50).cuda().eval()
    ids = torch.randint(0, 50, (4, 9), device="cuda")
    results = {}
    for label, kinds in (
        ("all triton", {}),
        ("mixer reference", {"Mamba2": "reference"}),
        ("gated norm reference", {"GatedRMSNorm": "reference"}),
        ("block norms reference", {"RMSNorm": "reference"}),
        ("all reference", {"Mamba2": "reference", "GatedRMSNorm": "reference", "RMSNorm": "reference"}),
    ):
        set_backend(model, {"Mamba2": "auto", "GatedRMSNorm": "auto", "RMSNorm": "auto"})
        set_backend(model, kinds)
        model._seqssm_decode_graphs = None
        try:
            diffs = compare(model, ids)
            results[label] = {"max_diff_per_step": [f"{d:.2e}" for d in diffs]}
        except Exception as e:  # noqa: BLE001 - a capture failure is a result too
            results[label] = {"error": repr(e)[:400]}
        print(label, json.dumps(results[label]), flush=True)


if __name__ == "__main__":
    main()
