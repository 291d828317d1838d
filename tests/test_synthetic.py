"""The synthetic suite: generator properties (answers determined by the context, no leakage, seeded
reproducibility), piecewise evaluation, and the train -> evaluate CLI round trip."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from seqssm.config import EvaluateConfig
from seqssm.errors import ConfigError
from seqssm.models import MambaLMHeadModel, ModelConfig
from seqssm.tasks.synthetic import SyntheticConfig, SyntheticDataset, SyntheticTask, predict_in_pieces
from seqssm.tasks.synthetic import SyntheticDataConfig as DataCfg
from seqssm.tasks.synthetic_data import check_sizes, induction_heads, mqar, selective_copying


@pytest.mark.parametrize("seed", range(20))
def test_selective_copying(seed):
    rng = np.random.default_rng(seed)
    ex = selective_copying(rng, seq_len=50, vocab=8, num_tokens=6)
    x, y, m = ex["inputs"], ex["targets"], ex["mask"]
    noise, copy = 8, 9
    assert x.shape == y.shape == m.shape == (56,)
    region = x[:50]
    assert (region != copy).all() and (x[50:] == copy).all()  # the answers are not in the inputs after the region
    data = region[region != noise]
    assert data.numel() == 6 and m.sum() == 6 and m[50:].all()
    assert torch.equal(y[m], data)  # the j-th answer is the j-th data token, in order


@pytest.mark.parametrize("seed", range(20))
def test_induction_heads(seed):
    ex = induction_heads(np.random.default_rng(seed), seq_len=40, vocab=5)
    x, y, m = ex["inputs"], ex["targets"], ex["mask"]
    trigger = 5
    where = (x == trigger).nonzero().flatten().tolist()
    assert len(where) == 2 and where[1] == 39  # the trigger occurs once in the context, then last
    assert m.nonzero().flatten().tolist() == [39]
    assert y[39] == x[where[0] + 1] and x[where[0] + 1] < trigger


@pytest.mark.parametrize("seed", range(20))
def test_mqar(seed):
    n = 7
    ex = mqar(np.random.default_rng(seed), seq_len=40, vocab=20, num_kv_pairs=n)
    x, y, m = ex["inputs"].tolist(), ex["targets"], ex["mask"]
    keys, values = x[0 : 2 * n : 2], x[1 : 2 * n : 2]
    assert len(set(keys)) == n and all(k < 10 for k in keys) and all(10 <= v < 20 for v in values)
    pairs = dict(zip(keys, values, strict=True))
    asked = m.nonzero().flatten().tolist()
    assert len(asked) == n and min(asked) >= 2 * n
    assert sorted(x[i] for i in asked) == sorted(keys)  # every key queried once
    for i in asked:
        assert y[i] == pairs[x[i]]  # the answer is the value paired with the key in the context
    assert all(t == 20 for i, t in enumerate(x[2 * n :], 2 * n) if i not in asked)  # no values after the pairs


def test_datasets_reproducible_and_disjoint():
    cfg = DataCfg(kind="mqar", seq_len=64, vocab=32, num_kv_pairs=8)
    a, b = SyntheticDataset(cfg, 50, seed=1, stream=0), SyntheticDataset(cfg, 50, seed=1, stream=0)
    assert all(torch.equal(a[i]["inputs"], b[i]["inputs"]) for i in range(50))
    val = SyntheticDataset(cfg, 50, seed=1, stream=1)
    train = {tuple(a[i]["inputs"].tolist()) for i in range(50)}
    assert not train & {tuple(val[i]["inputs"].tolist()) for i in range(50)}
    a.epoch = 1
    assert not torch.equal(a[0]["inputs"], b[0]["inputs"])  # a new epoch draws new examples


def test_impossible_sizes_named():
    assert "num_kv_pairs" in check_sizes("mqar", 64, 16, 1, 9, "task.data")
    assert "seq_len" in check_sizes("mqar", 20, 64, 1, 8, "task.data")
    assert "kind" in check_sizes("copying", 64, 16, 1, 1, "task.data")


@pytest.mark.parametrize("mixer", ["mamba", "mamba2", "transformer"])
def test_predict_in_pieces_is_exact(mixer):
    torch.manual_seed(0)
    cfg = ModelConfig(mixer=mixer, d_model=32, n_layer=2, headdim=16, chunk_size=16, d_state=8)
    net = MambaLMHeadModel(cfg, 18).double().eval()
    x = torch.randint(0, 18, (2, 100))
    with torch.no_grad():
        full = net(x).argmax(-1)
    assert torch.equal(predict_in_pieces(net, x, 33), full)


def test_train_and_evaluate_cli(tmp_path):
    common = ["task=synthetic", "task.data.kind=mqar", "task.data.seq_len=32", "task.data.vocab=16",
              "task.data.num_kv_pairs=4"]
    train = [sys.executable, "-m", "seqssm.train", *common, "model.d_model=16", "model.n_layer=1",
             "task.data.batch_size=4", "task.data.val_examples=8", "trainer.max_steps=2",
             "trainer.val_check_interval=2",
             "trainer.enable_progress_bar=false", f"hydra.run.dir={tmp_path / 'run'}"]
    p = subprocess.run(train, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    ev = [sys.executable, "-m", "seqssm.evaluate", *common, f"ckpt={tmp_path / 'run/checkpoints/best.ckpt'}",
          "task.eval.lengths=[16,64]", "task.eval.num_kv_pairs=[2,4]", "task.eval.examples=8", "task.eval.piece_len=24"]
    p = subprocess.run(ev, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    m = json.loads((tmp_path / "run/eval/metrics.json").read_text())
    assert set(m["by_length"]) == {"16", "64"} and set(m["by_num_kv_pairs"]) == {"2", "4"}
    assert all(0 <= r["acc"] <= 1 and r["examples"] == 8 for r in m["by_length"].values())
    assert (tmp_path / "run/eval/accuracy_vs_length.png").stat().st_size > 1000


def test_impossible_eval_length_named(tmp_path):
    cfg = SyntheticConfig(data=DataCfg(kind="mqar", seq_len=32, vocab=16, num_kv_pairs=4))
    cfg.eval.lengths = [8]
    net = MambaLMHeadModel(ModelConfig(d_model=16, n_layer=1), 17)
    with pytest.raises(ConfigError, match="task.eval.lengths: 8"):
        SyntheticTask(cfg, 0).evaluate(net, EvaluateConfig(ckpt="x"), tmp_path)
