"""Bad samples found while streaming are skipped and counted, up to a limit."""

import pytest
from torch.utils.data import DataLoader, Dataset

from seqssm.data_guard import SkipBadSamples
from seqssm.errors import DataError


class Flaky(Dataset):
    """Sample i is i, except the ``bad`` ones, which raise like a truncated file would."""

    def __init__(self, n, bad):
        self.n, self.bad, self.epoch = n, set(bad), 0

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if i in self.bad:
            raise DataError(f"sample_{i}.wav: truncated (expected 32000 bytes of audio)")
        return i


def test_bad_samples_are_replaced_by_the_next_readable_one_and_counted(caplog):
    ds = SkipBadSamples(Flaky(10, bad={3, 4, 9}), max_bad=5)
    assert [ds[i] for i in range(10)] == [0, 1, 2, 5, 5, 5, 6, 7, 8, 0]
    assert ds.bad == 4  # 3, 4 (twice: from index 3 and 4), 9
    assert "sample_3.wav: truncated" in caplog.text


def test_too_many_bad_samples_stop_with_a_clear_error():
    ds = SkipBadSamples(Flaky(10, bad={1, 2, 3}), max_bad=2)
    with pytest.raises(DataError, match="more than 2 bad samples"):
        list(DataLoader(ds, batch_size=4))
    with pytest.raises(DataError, match="no readable sample"):
        SkipBadSamples(Flaky(3, bad={0, 1, 2}), max_bad=100)[0]


def test_wrapper_passes_the_epoch_through():
    inner = Flaky(4, bad=())
    ds = SkipBadSamples(inner)
    ds.epoch = 3
    assert inner.epoch == 3 and ds.epoch == 3
