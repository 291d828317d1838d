"""Throughput of the ``task=dna`` training loader alone (no model): windows of ``--max-len`` bases per
second from a synthetic multi-chromosome FASTA + BED (written to ``--dir``, reused when present).

    python bench/dna_loader.py --max-len 1048576 --batch-size 4 --batches 16 --workers 0 2

Each window is a pyfaidx read of max_len + 1 bases, tokenization, optional reverse complement, and
padding into inputs/targets/mask (int64), as in training.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader

from seqssm.tasks.dna import DNADataConfig, DNADataModule, only_item


def synthetic_genome(folder: Path, chroms: int, size: int) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    fasta, bed = folder / "bench.fa", folder / "bench.bed"
    if not fasta.exists():
        rng = np.random.default_rng(0)
        with open(fasta, "wb") as f:
            for c in range(chroms):
                seq = np.frombuffer(b"ACGTacgtN", dtype=np.uint8)[rng.integers(0, 9, size)].tobytes()
                f.write(f">chr{c + 1}\n".encode())
                f.write(b"\n".join(seq[i : i + 60] for i in range(0, size, 60)) + b"\n")
        lines = [
            f"chr{c + 1}\t{s}\t{s + size // 8}\t{'valid' if s == 0 else 'train'}\n"
            for c in range(chroms)
            for s in range(0, size, size // 8)
        ]
        bed.write_text("".join(lines))
    return fasta, bed


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--dir", type=Path, default=Path("/tmp/seqssm_dna_bench"))
    p.add_argument("--chroms", type=int, default=4)
    p.add_argument("--chrom-size", type=int, default=16_000_000)
    p.add_argument("--max-len", type=int, default=1 << 20)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--batches", type=int, default=16)
    p.add_argument("--workers", type=int, nargs="+", default=[0])
    p.add_argument("--rc-aug", action="store_true")
    args = p.parse_args()
    fasta, bed = synthetic_genome(args.dir, args.chroms, args.chrom_size)
    cfg = DNADataConfig(
        fasta=str(fasta),
        bed=str(bed),
        max_len=args.max_len,
        batch_size=args.batch_size,
        windows_per_epoch=args.batch_size * args.batches,
        rc_aug=args.rc_aug,
    )
    dm = DNADataModule(cfg, seed=0)
    for workers in args.workers:
        loader = DataLoader(dm.train_set, batch_size=1, collate_fn=only_item, num_workers=workers)
        start, n = time.perf_counter(), 0
        for batch in loader:
            n += batch["inputs"].shape[0]
        dt = time.perf_counter() - start
        print(
            f"max_len {args.max_len:,}  workers {workers}  {n} windows in {dt:.2f} s: {n / dt:.1f} windows/s "
            f"({n * args.max_len / dt / 1e6:.1f} M bases/s)  cpus {os.cpu_count()}"
        )


if __name__ == "__main__":
    main()
