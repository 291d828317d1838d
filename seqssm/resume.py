"""Resuming a run exactly where it stopped.

Lightning restores the model, optimizer, LR scheduler and loop counters from ``last.ckpt``, but a
plain DataLoader restarts its epoch at the first batch. ``ResumableLoader`` saves how many batches
of the epoch were consumed and skips them when the run is restored, so the batches after the
checkpoint are the ones an uninterrupted run would have seen. This needs a deterministic order of
samples within an epoch (seqssm's datasets draw their windows from generators seeded per (seed,
epoch, index)). A map-style dataset is restarted at the first unseen sample (nothing is read for the
skipped ones); a streaming (iterable) dataset, whose order is a function of (seed, epoch), is read
from the epoch's start and its first batches are dropped (``task=lm``: a resume costs the reading
and tokenizing of the skipped part of the epoch, not its training).

A ``DataError`` raised in a DataLoader worker reaches the main process wrapped in a traceback; the
loader re-raises it as the worker's one-line message, so the CLI still prints one line.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from torch.utils.data import DataLoader, IterableDataset, Sampler

from seqssm.errors import CheckpointError, DataError


class SkipFirst(Sampler[int]):
    """The indices of ``inner`` without the first ``skip`` of them (length unchanged, so Lightning's
    count of batches per epoch stays that of the full epoch)."""

    def __init__(self, inner: Sampler, skip: int) -> None:
        self.inner, self.skip = inner, skip

    def __iter__(self) -> Iterator[int]:
        it = iter(self.inner)
        for _ in range(self.skip):
            next(it, None)
        yield from it

    def __len__(self) -> int:
        return len(self.inner)


class EpochSampler(Sampler[int]):
    """Indices 0..n-1 in order; ``set_epoch`` (called by Lightning at every epoch, and by
    ``ResumableLoader`` when a run is restored) is passed on to the dataset, whose samples are drawn
    from generators seeded per (seed, epoch, index)."""

    def __init__(self, dataset) -> None:
        self.dataset, self.epoch = dataset, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.dataset, "epoch"):
            self.dataset.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        return iter(range(len(self.dataset)))

    def __len__(self) -> int:
        return len(self.dataset)


class OneLineLoader(DataLoader):
    """A DataLoader that re-raises a DataError of a worker process as the worker's one-line message."""

    def __iter__(self):
        return self._one_line(super().__iter__())

    @staticmethod
    def _one_line(iterator):
        try:
            yield from iterator
        except DataError as e:
            raise DataError(worker_message(str(e))) from None


class ResumableLoader(OneLineLoader):
    """A DataLoader whose position within the epoch is saved in Lightning checkpoints (Lightning
    calls ``state_dict`` when it saves and ``load_state_dict`` before the first ``iter`` of a
    restored run)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._yielded, self._skip, self._running = 0, 0, False

    def __iter__(self):
        skip, self._skip = self._skip, 0
        if isinstance(self.dataset, IterableDataset):  # no sampler: drop the batches already trained on
            return self._count(self._dropping(super().__iter__(), skip), skip)
        # The batch sampler reads ``.sampler`` lazily, when the first batch is drawn: set it for this epoch.
        base = self.batch_sampler.sampler
        base = base.inner if isinstance(base, SkipFirst) else base
        self.batch_sampler.sampler = SkipFirst(base, skip * self.batch_sampler.batch_size) if skip else base
        return self._count(super().__iter__(), skip)

    @staticmethod
    def _dropping(iterator, n: int):
        for _ in range(n):
            if next(iterator, None) is None:
                return
        yield from iterator

    def _count(self, iterator, skip: int):
        self._yielded, self._running = skip, True
        for batch in iterator:
            self._yielded += 1
            yield batch
        self._running = False

    def state_dict(self) -> dict:
        consumed = self._yielded
        if isinstance(self.dataset, IterableDataset) and self._running and consumed:
            # Lightning's training loop fetches one batch ahead of a loader without a length (to know
            # which batch is the last): until the stream ends, the newest batch is not trained on yet.
            consumed -= 1
        return {"batches_consumed": consumed, "epoch": getattr(self._epoch_holder(), "epoch", 0)}

    def load_state_dict(self, state: dict) -> None:
        self._skip = int(state.get("batches_consumed", 0))
        holder = self._epoch_holder()
        if isinstance(holder, EpochSampler):
            holder.set_epoch(int(state.get("epoch", 0)))
        elif hasattr(holder, "epoch"):
            holder.epoch = int(state.get("epoch", 0))

    def _epoch_holder(self):
        """What knows the epoch: the EpochSampler, or a streaming dataset itself."""
        if isinstance(self.dataset, IterableDataset):
            return self.dataset
        sampler = self.batch_sampler.sampler
        return sampler.inner if isinstance(sampler, SkipFirst) else sampler


def worker_message(message: str) -> str:
    """The one-line message of a DataError raised in a DataLoader worker, which torch re-raises in the
    main process as "Caught DataError in DataLoader worker process N. Original Traceback ..."."""
    if not message.startswith("Caught DataError"):
        return message
    last = message.rstrip().splitlines()[-1]
    return last.split("DataError: ", 1)[-1]


def train_loader(dataset, batch_size: int, num_workers: int = 0, **kwargs) -> ResumableLoader:
    """The training DataLoader of seqssm's tasks: samples in a fixed order per epoch (the datasets
    randomise by seed and epoch), resumable mid-epoch."""
    if isinstance(dataset, IterableDataset):
        return ResumableLoader(dataset, batch_size=batch_size, num_workers=num_workers, **kwargs)
    return ResumableLoader(
        dataset, batch_size=batch_size, sampler=EpochSampler(dataset), num_workers=num_workers, **kwargs
    )


def resolve_ckpt_path(value: str, root: Path = Path("outputs")) -> str:
    """``ckpt_path=last``: the newest ``outputs/*/*/checkpoints/last.ckpt`` under the current folder."""
    if value != "last":
        return value
    found = sorted(root.glob("*/*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise CheckpointError(f"ckpt_path=last: no {root}/*/*/checkpoints/last.ckpt under {Path.cwd()}")
    return str(found[-1])
