"""Where a decode step's time goes: the CUDA kernels of one token through seqssm's step and through
mamba_ssm's, eager and replayed from a CUDA graph, from torch.profiler (CUPTI records the kernels a
graph replay launches). Random weights, bf16, batch 1 unless told.

    python bench/decode_profile.py --sdist .pkgs/mamba_ssm-2.3.2.post1 --size 130m --out OUT

Writes OUT/decode_profile.json and prints, per system and mode, the kernels of one step (name,
launches per step, GPU µs per step), the step's summed kernel time and its wall time between CUDA
events (the difference is launch gaps).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from decode import build_mamba_ssm, build_seqssm, map_kernels_package  # noqa: E402

STEPS = 20


def kernel_table(fn, steps: int = STEPS) -> dict:
    """Run fn() ``steps`` times under the profiler: per kernel name, launches and GPU µs per step."""
    from torch.profiler import ProfilerActivity, profile

    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            fn()
        torch.cuda.synchronize()
    count, us = defaultdict(int), defaultdict(float)
    for ev in prof.events():
        if ev.device_type == torch.autograd.DeviceType.CUDA and ev.device_time > 0:
            count[ev.name] += 1
            us[ev.name] += ev.device_time
    rows = sorted(((n[:90], count[n] / steps, us[n] / steps) for n in count), key=lambda r: -r[2])
    return {"kernels": [{"name": n, "per_step": c, "us_per_step": round(u, 2)} for n, c, u in rows],
            "launches_per_step": sum(r[1] for r in rows), "kernel_us_per_step": round(sum(r[2] for r in rows), 1)}


def wall_us(fn, steps: int = 200) -> float:
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(steps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) * 1e3 / steps


def seqssm_steps(model, batch: int, device) -> dict:
    from seqssm.decode_graph import GraphedStep
    from seqssm.generation import prefill

    prompt = torch.randint(0, 1000, (batch, 16), device=device)
    _, states = prefill(model, prompt)
    token = prompt[:, -1]
    eager = lambda: model.step(token, states)  # noqa: E731
    graphed = GraphedStep(model, batch, device, capture=True)
    graphed.load_states(states)
    replay = lambda: graphed(token)  # noqa: E731
    return {"eager": eager, "graph": replay}


def mamba_ssm_steps(model, batch: int, device) -> dict:
    from mamba_ssm.utils.generation import InferenceParams, capture_graph

    prompt = torch.randint(0, 1000, (batch, 16), device=device)
    ip = InferenceParams(max_seqlen=4096, max_batch_size=batch)
    model(prompt, inference_params=ip, num_last_tokens=1)
    ip.seqlen_offset += prompt.shape[1]
    token = prompt[:, -1:]
    pos = torch.full((batch, 1), ip.seqlen_offset, dtype=torch.long, device=device)
    eager = lambda: model(token, position_ids=pos, inference_params=ip, num_last_tokens=1).logits  # noqa: E731
    out = {"eager": eager}
    try:
        ip_g = InferenceParams(max_seqlen=4096, max_batch_size=batch)
        ip_g.seqlen_offset = prompt.shape[1]
        ip_g.key_value_memory_dict = model.allocate_inference_cache(batch, 4096, dtype=torch.bfloat16)
        ip_g.lengths_per_sample = torch.full((batch,), prompt.shape[1], dtype=torch.int32, device=device)
        run = capture_graph(model, ip_g, batch, 4096)
        out["graph"] = lambda: run(token, pos, ip_g.seqlen_offset)
    except Exception as e:  # noqa: BLE001 - a note in the results, not a crash
        out["graph_error"] = f"{type(e).__name__}: {e}"
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sdist", default=None)
    ap.add_argument("--size", default="130m")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--out", default=".")
    args = ap.parse_args()
    map_kernels_package()
    device = torch.device("cuda")
    res = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "size": args.size,
           "batch": args.batch, "systems": {}}
    with torch.inference_mode():
        ours = build_seqssm(args.size, "mamba", torch.bfloat16, device)
        systems = {"seqssm": seqssm_steps(ours, args.batch, device)}
        if args.sdist is not None:
            theirs, notes = build_mamba_ssm(ours, torch.bfloat16, device, args.sdist)
            res["mamba_ssm_notes"] = notes
            systems["mamba_ssm"] = mamba_ssm_steps(theirs, args.batch, device)
        for name, modes in systems.items():
            for mode, fn in modes.items():
                if not callable(fn):
                    res["systems"][f"{name}/{mode}"] = fn
                    continue
                r = kernel_table(fn)
                r["wall_us_per_step"] = round(wall_us(fn), 1)
                res["systems"][f"{name}/{mode}"] = r
                print(f"== {name} {mode}: {r['launches_per_step']:.0f} launches, kernels {r['kernel_us_per_step']} us,"
                      f" wall {r['wall_us_per_step']} us per step", flush=True)
                for k in r["kernels"][:25]:
                    print(f"   {k['per_step']:6.1f} x {k['us_per_step']:8.2f} us  {k['name']}")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "decode_profile.json"), "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
