"""Bad data found only while streaming: skipped, counted and logged, up to ``task.data.max_bad_records``.

What can be checked at start-up is, and stops the run before any work with one line naming the file
(a missing or malformed FASTA, a BED line with wrong columns or coordinates, an unreadable, truncated or
multi-channel WAV — every WAV of ``task=audio`` is read at start-up). Some faults only show when a record
is read mid-run: a character that is not a nucleotide code inside a FASTA sequence line (the bases are not
scanned at start-up), a FASTA cut short or rewritten after it was indexed, a text file that vanished or
became unreadable, invalid UTF-8 in text that a tokenizer decodes. The dataset that meets one calls
``BadRecords.skip(message)`` (the message names the file and the line or byte offset) and goes on
without that record; ``skip`` prints one warning line per bad record, and the ``max_bad_records + 1``-th
raises a one-line ``DataError``. ``0`` makes the first bad record stop the run.

The count is one integer in shared memory, created in the main process and inherited by the DataLoader
workers it forks (the default start method on Linux up to Python 3.13): the limit applies to the main
process and all its workers together, across epochs. Where the counter is pickled instead (workers
started by spawn or forkserver — the default on macOS and from Python 3.14 — DDP ranks, a deep copy),
each copy counts on from the count it was given: the limit then applies per worker or rank, and the
main process's count and summary leave out the skips of spawned workers (their warning lines remain).

``BadRecordsMixin`` gives a LightningDataModule the rest: the count is saved in checkpoints (so a resumed
run continues it), logged as the metric ``data/bad_records`` when it changes, and summed up in one line at
the end of training (the final validation and the baselines that follow may add warnings of their own).
"""

from __future__ import annotations

import multiprocessing
import sys

from seqssm.errors import ConfigError, DataError

KEY = "task.data.max_bad_records"


class BadRecords:
    def __init__(self, limit: int, key: str = KEY) -> None:
        if not isinstance(limit, int) or limit < 0:
            raise ConfigError(f"{key}={limit}: expected an integer >= 0")
        self.limit, self.key = limit, key
        self._count = multiprocessing.Value("q", 0)  # shared with forked or spawned DataLoader workers

    def __getstate__(self) -> dict:  # a shared counter only passes to forked children (see the docstring)
        return {"limit": self.limit, "key": self.key, "count": self.count}

    def __setstate__(self, state: dict) -> None:
        self.limit, self.key = state["limit"], state["key"]
        self._count = multiprocessing.Value("q", state["count"])

    @property
    def count(self) -> int:
        return int(self._count.value)

    @count.setter
    def count(self, n: int) -> None:
        self._count.value = int(n)

    def skip(self, message: str) -> None:
        """Count one bad record (``message`` names it); a DataError once more than ``limit`` were skipped."""
        with self._count.get_lock():
            self._count.value += 1
            n = self._count.value
        if n > self.limit:
            raise DataError(f"{message}; stopping: more than {self.key}={self.limit} bad records skipped")
        print(f"seqssm: warning: skipped bad record {n} (limit {self.key}={self.limit}): {message}",
              file=sys.stderr, flush=True)  # fmt: skip


class BadRecordsMixin:
    """For a LightningDataModule with a ``bad: BadRecords`` attribute (put the mixin first in the bases)."""

    bad: BadRecords

    def state_dict(self) -> dict:
        return {"bad_records": self.bad.count}

    def load_state_dict(self, state: dict) -> None:
        self.bad.count = int(state.get("bad_records", 0))

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        trainer = getattr(self, "trainer", None)
        n = self.bad.count
        if trainer is not None and n != getattr(self, "_logged_bad", 0):
            self._logged_bad = n
            for logger in trainer.loggers:
                logger.log_metrics({"data/bad_records": float(n)}, step=trainer.global_step)
        return batch

    def teardown(self, stage: str) -> None:
        if stage == "fit" and self.bad.count:
            print(
                f"seqssm: warning: {self.bad.count} bad record(s) skipped by the end of training "
                f"(limit {self.bad.key}={self.bad.limit}); each is named in a warning above",
                file=sys.stderr,
            )
