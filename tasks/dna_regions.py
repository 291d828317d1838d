"""Where ``task=dna`` draws its windows: BED intervals with a split column, window placement inside
them, and the sequence-length warmup schedule.

BED (HyenaDNA's layout, from Basenji's ``sequences_human.bed``): tab- or space-separated
``chrom  start  end  split`` per line, 0-based half-open [start, end), split a name such as
``train``, ``valid`` or ``test``. Lines starting with ``#``, ``track`` or ``browser`` and blank lines
are skipped. An interval on a chromosome the FASTA does not have, one that ends past its
chromosome's end, or one with start >= end is a DataError naming the file, line and interval —
found when the data module is built, never mid-epoch.

Window placement (``place_window``): a window of n bases inside an interval [s, e):
- e - s >= n: a uniformly random start in [s, e - n];
- e - s < n and ``stretch`` (with a BED, as HyenaDNA): the window is centred on the interval and
  stretched to n bases of the chromosome, shifted right or left to stay inside [0, chrom_len) —
  never past either end (the result is shorter than n only when the chromosome is);
- e - s < n without ``stretch``: the interval itself (the window is padded).

Length warmup (HyenaDNA, Nguyen et al. 2023, section 3.2 / appendix A.2): training runs through
stages ``(max_len, steps, batch_size)``, then continues at ``task.data.max_len``. The stage of a batch
is a pure function of its global index (epoch · batches_per_epoch + index in the epoch), so
DataLoader workers need no message from the trainer, and a run is reproducible from its seed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seqssm.errors import ConfigError, DataError

Region = tuple[str, int, int]  # record name, start, end (0-based, end exclusive)


def read_bed(path: str | os.PathLike, lengths: dict[str, int], key: str = "task.data.bed") -> dict[str, list[Region]]:
    """{split: [(chrom, start, end), ...]} of a BED file with a split column, checked against the
    FASTA's record lengths."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"{key}={path}: no such file")
    splits: dict[str, list[Region]] = {}
    with open(p, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, start=1):
            fields = line.split()
            if not fields or fields[0].startswith("#") or fields[0] in ("track", "browser"):
                continue
            where = f"{key}={path}: line {n}"
            if len(fields) < 4:
                raise DataError(f"{where}: {len(fields)} columns, expected chrom, start, end, split")
            chrom, start, end, split = fields[0], fields[1], fields[2], fields[3]
            try:
                s, e = int(start), int(end)
            except ValueError:
                raise DataError(f"{where}: start {start!r} and end {end!r} must be integers") from None
            if chrom not in lengths:
                known = ", ".join(list(lengths)[:5]) + (", ..." if len(lengths) > 5 else "")
                raise DataError(f"{where}: chromosome {chrom!r} is not in the FASTA (it has {known})")
            if not 0 <= s < e:
                raise DataError(f"{where}: interval {chrom}:{s}-{e} is empty or negative (expected 0 <= start < end)")
            if e > lengths[chrom]:
                raise DataError(
                    f"{where}: interval {chrom}:{s}-{e} ends past the end of {chrom} ({lengths[chrom]} bases)"
                )
            splits.setdefault(split, []).append((chrom, s, e))
    if not splits:
        raise DataError(f"{key}={path}: no intervals (expected lines 'chrom start end split')")
    return splits


def place_window(
    rng: np.random.Generator, start: int, end: int, length: int, chrom_len: int, stretch: bool
) -> tuple[int, int]:
    """[s, e) of a window of ``length`` bases for the interval [start, end) (rules in the module docstring)."""
    if end - start >= length:
        s = int(rng.integers(start, end - length + 1))
        return s, s + length
    if not stretch:
        rng.integers(start, start + 1)  # the draw a longer region would take: same stream either way
        return start, end
    if chrom_len <= length:
        return 0, chrom_len
    s = start - (length - (end - start)) // 2
    s = min(max(s, 0), chrom_len - length)
    return s, s + length


@dataclass
class LengthStage:
    max_len: int  # bases per window in this stage
    steps: int  # batches (optimizer steps without gradient accumulation) in this stage
    batch_size: int = 0  # 0: keep task.data.batch_size


class LengthSchedule:
    """(max_len, batch_size) of every training batch: the warmup stages, then the final setting."""

    def __init__(self, stages: list[LengthStage], max_len: int, batch_size: int) -> None:
        for i, st in enumerate(stages):
            if st.max_len < 2 or st.steps < 1 or st.batch_size < 0:
                raise ConfigError(
                    f"task.data.length_warmup[{i}]={st}: expected max_len >= 2, steps >= 1, batch_size >= 0"
                )
        self.final = (max_len, batch_size)
        self.stages = [(st.steps, st.max_len, st.batch_size or batch_size) for st in stages]

    def at(self, batch: int) -> tuple[int, int]:
        """(max_len, batch_size) of the batch with global index ``batch`` (0-based)."""
        for steps, length, size in self.stages:
            if batch < steps:
                return length, size
            batch -= steps
        return self.final

    def windows_before(self, first: int, batch: int) -> int:
        """Windows in the batches [first, batch) (global indices): numbers every window of an epoch once."""
        total, lo = 0, 0
        for steps, _, size in self.stages:
            total += max(0, min(batch, lo + steps) - max(first, lo)) * size
            lo += steps
        return total + max(0, batch - max(first, lo)) * self.final[1]
