"""Sequence parallelism on the CPU (gloo): a sequence split across 2 or 3 processes gives the logits
and, after summing across ranks, the parameter gradients of one pass in a single process."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from seqssm.models import MambaLMHeadModel, ModelConfig
from seqssm.parallel import sequence_parallel_forward

CONFIGS = {
    "mamba": ModelConfig(mixer="mamba", d_model=16, n_layer=2, d_state=4),
    "mamba_complex": ModelConfig(mixer="mamba", d_model=16, n_layer=2, d_state=4, complex=True),
    "mamba2": ModelConfig(mixer="mamba2", d_model=16, n_layer=2, d_state=8, headdim=8, chunk_size=8),
}
L, BOUNDS = 31, {2: [0, 13, 31], 3: [0, 9, 20, 31]}


def build(name):
    torch.manual_seed(0)
    m = MambaLMHeadModel(CONFIGS[name], 9).double()
    ids = torch.randint(0, 9, (2, L))
    w = torch.randn(2, L, 9, dtype=torch.float64)
    return m, ids, w


def worker(rank, world, port, name, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        m, ids, w = build(name)
        lo, hi = BOUNDS[world][rank], BOUNDS[world][rank + 1]
        logits = sequence_parallel_forward(m, ids[:, lo:hi])
        (logits * w[:, lo:hi]).sum().backward()
        grads = torch.cat([p.grad.flatten() for p in m.parameters()])
        dist.all_reduce(grads)
        torch.save({"logits": logits.detach(), "grads": grads}, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    "name,world",
    [
        ("mamba", 2),
        pytest.param("mamba_complex", 2, marks=pytest.mark.slow),
        pytest.param("mamba2", 3, marks=pytest.mark.slow),
    ],
)
def test_sequence_parallel_equals_one_pass(tmp_path, name, world):
    mp.spawn(worker, args=(world, free_port(), name, str(tmp_path)), nprocs=world, join=True)
    m, ids, w = build(name)
    full = m(ids)
    (full * w).sum().backward()
    grads = torch.cat([p.grad.flatten() for p in m.parameters()])
    parts = [torch.load(tmp_path / f"rank{r}.pt") for r in range(world)]
    torch.testing.assert_close(torch.cat([p["logits"] for p in parts], 1), full, rtol=1e-9, atol=1e-9)
    for p in parts:
        torch.testing.assert_close(p["grads"], grads, rtol=1e-7, atol=1e-9)
