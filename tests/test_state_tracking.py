"""The state-tracking task (running sum modulo V; V = 2 is parity): answers determined by the prefix."""

import numpy as np
import pytest

from seqssm.errors import ConfigError
from seqssm.tasks.synthetic import SyntheticConfig, SyntheticTask
from seqssm.tasks.synthetic_data import make_example


@pytest.mark.parametrize("modulus", [2, 5])
def test_answers_are_the_running_sum_modulo(modulus):
    for seed in range(10):
        e = make_example("modular_sum", np.random.default_rng(seed), 37, modulus, 0, 0)
        x, y = e["inputs"].numpy(), e["targets"].numpy()
        assert e["mask"].all() and x.max() < modulus
        assert all(y[t] == x[: t + 1].sum() % modulus for t in range(37))  # the prefix alone decides
    a = make_example("modular_sum", np.random.default_rng(3), 20, 5, 0, 0)
    b = make_example("modular_sum", np.random.default_rng(3), 20, 5, 0, 0)
    assert (a["inputs"] == b["inputs"]).all()


def test_config_accepts_the_kind_and_rejects_a_vocab_of_one():
    from seqssm.config import to_dataclass

    cfg = to_dataclass(SyntheticConfig, {"data": {"kind": "modular_sum", "vocab": 2, "seq_len": 64}}, "task")
    assert SyntheticTask(cfg, seed=0).vocab_size >= 2
    with pytest.raises(ConfigError, match="vocab"):
        to_dataclass(SyntheticConfig, {"data": {"kind": "modular_sum", "vocab": 1}}, "task")
