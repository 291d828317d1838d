"""Bad records found while streaming: skipped, counted and logged, never fatal mid-epoch — up to a
limit. Problems that can be found at start-up (a missing file, a malformed FASTA, a BED interval past
a chromosome end) stop the run before any work instead; this is for what only shows when a sample is
read (a truncated WAV in a folder of thousands, an unreadable file that changed after the scan).

``SkipBadSamples(dataset, max_bad)`` wraps a map-style dataset: when ``dataset[i]`` raises a
``DataError``, it logs one line naming the sample and the error, counts it, and returns the next
readable sample instead (i+1, i+2, ...). More than ``max_bad`` bad samples in one process raise a
``DataError`` that says so. Each DataLoader worker counts its own.
"""

from __future__ import annotations

import logging

from torch.utils.data import Dataset

from seqssm.errors import DataError

log = logging.getLogger("seqssm.data")


class SkipBadSamples(Dataset):
    def __init__(self, dataset: Dataset, max_bad: int = 100) -> None:
        if max_bad < 0:
            raise ValueError(f"max_bad={max_bad}: expected >= 0")
        self.dataset, self.max_bad, self.bad = dataset, max_bad, 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str):  # epoch, set_epoch, ... of the wrapped dataset
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __setattr__(self, name: str, value) -> None:
        if name in ("dataset", "max_bad", "bad"):
            super().__setattr__(name, value)
        else:
            setattr(self.dataset, name, value)

    def __getitem__(self, i: int):
        n = len(self.dataset)
        for k in range(n):
            j = (i + k) % n
            try:
                return self.dataset[j]
            except DataError as e:
                self.bad += 1
                log.warning("skipped bad sample %d (%d so far): %s", j, self.bad, e)
                if self.bad > self.max_bad:
                    raise DataError(f"more than {self.max_bad} bad samples (the last: sample {j}: {e})") from None
        raise DataError(f"no readable sample among all {n}")
