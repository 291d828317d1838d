"""Checkpoint folders of transformers, mamba_ssm and seqssm: a model loaded from transformers'
MambaForCausalLM / Mamba2ForCausalLM (random weights, their PyTorch path on the CPU) gives the same
logits and the same 64 greedy tokens; saved models load back in transformers and in seqssm; foreign,
incomplete and mis-shaped checkpoints fail with one line naming the key."""

import json
import sys
import types
from pathlib import Path

import pytest
import torch

from seqssm.errors import CheckpointError
from seqssm.generation import generate
from seqssm.models import MambaLMHeadModel, ModelConfig, from_pretrained, save_pretrained
from seqssm.models.formats import from_mamba_ssm_config

transformers = pytest.importorskip("transformers")
pytest.importorskip("safetensors")

NO_SPECIAL = dict(bos_token_id=None, eos_token_id=None, pad_token_id=None)
VOCAB = 37


def hf_mamba(**kw):
    cfg = transformers.MambaConfig(
        vocab_size=VOCAB, hidden_size=32, state_size=8, num_hidden_layers=2, conv_kernel=4, **NO_SPECIAL, **kw
    )
    return transformers.MambaForCausalLM(cfg).eval()


def hf_mamba2(**kw):
    cfg = transformers.Mamba2Config(
        vocab_size=VOCAB, hidden_size=32, state_size=8, num_hidden_layers=2, head_dim=16, num_heads=4,
        n_groups=2, chunk_size=8, **NO_SPECIAL, **kw,
    )  # fmt: skip
    return transformers.Mamba2ForCausalLM(cfg).eval()


def perturb(model: torch.nn.Module) -> torch.nn.Module:
    """Move every parameter away from its initialisation (norm weights, D, biases matter then)."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


HF_MODELS = {
    # non-default Δ rank, eps, biases and untied head: every mapped field changes the function
    "mamba": lambda: hf_mamba(
        time_step_rank=3, layer_norm_epsilon=1e-4, use_bias=True, use_conv_bias=False, tie_word_embeddings=False
    ),
    "mamba_tied": lambda: hf_mamba(),
    "mamba2": lambda: hf_mamba2(layer_norm_epsilon=1e-4, use_bias=True, tie_word_embeddings=False),
    "mamba2_tied": lambda: hf_mamba2(tie_word_embeddings=True, use_conv_bias=False),
}


@pytest.mark.parametrize("name", list(HF_MODELS))
def test_transformers_logits_and_greedy_tokens(name, tmp_path):
    torch.manual_seed(0)
    hf = perturb(HF_MODELS[name]())
    hf.save_pretrained(tmp_path)
    ours = from_pretrained(tmp_path)
    assert ours.config.mixer == name.split("_")[0]
    ids = torch.randint(0, VOCAB, (2, 19))  # longer than mamba2's chunk of 8
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), hf(ids).logits, rtol=1e-4, atol=1e-5)
    if name.endswith("_tied"):
        return  # the tied models' greedy output is one repeated token: no test of the decode path
    prompt = ids[:, :5]
    theirs = hf.generate(prompt, max_new_tokens=64, do_sample=False, min_new_tokens=64)
    mine = generate(ours, prompt, 64, temperature=0)
    assert mine.shape == theirs.shape == (2, 69)
    assert all(len(set(row[5:].tolist())) >= 5 for row in theirs)  # not a degenerate repeated token
    assert torch.equal(mine, theirs)


@pytest.mark.parametrize("mixer", ["mamba", "mamba2"])
def test_save_hf_loads_in_transformers(mixer, tmp_path):
    torch.manual_seed(0)
    cfg = ModelConfig(mixer=mixer, d_model=32, n_layer=2, d_state=8, headdim=16, ngroups=2, chunk_size=8, bias=True)
    ours = perturb(MambaLMHeadModel(cfg, VOCAB).eval())  # 40 embedding rows: padded to a multiple of 8
    save_pretrained(ours, tmp_path, format="hf")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert type(hf).__name__ == ("MambaForCausalLM" if mixer == "mamba" else "Mamba2ForCausalLM")
    ids = torch.randint(0, VOCAB, (2, 13))
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, ours(ids), rtol=1e-4, atol=1e-5)
    again = from_pretrained(tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(again(ids), ours(ids), rtol=1e-5, atol=1e-6)


def test_mamba_ssm_folder(tmp_path):
    """A folder as mamba_ssm writes it (state-spaces/mamba-130m's config.json fields; pytorch_model.bin
    with the tied head stored too) loads with the right sizes; saving it again as mamba_ssm and as
    transformers gives the same function."""
    torch.manual_seed(0)
    raw = {"d_model": 32, "n_layer": 2, "vocab_size": 45, "ssm_cfg": {"d_state": 8, "dt_rank": 4}, "rms_norm": True,
           "residual_in_fp32": True, "fused_add_norm": True, "pad_vocab_size_multiple": 8}  # fmt: skip
    cfg, vocab = from_mamba_ssm_config(raw, "config.json")
    src = perturb(MambaLMHeadModel(cfg, vocab).eval())
    assert src.backbone.embedding.weight.shape == (48, 32) and src.backbone.layers[0].mixer.dt_rank == 4
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "config.json").write_text(json.dumps(raw))
    torch.save(src.state_dict(), tmp_path / "a" / "pytorch_model.bin")
    loaded = from_pretrained(tmp_path / "a")
    ids = torch.randint(0, 45, (2, 11))
    with torch.no_grad():
        want = src(ids)
        torch.testing.assert_close(loaded(ids), want, rtol=0, atol=0)
    save_pretrained(loaded, tmp_path / "b", format="mamba_ssm")
    written = json.loads((tmp_path / "b" / "config.json").read_text())
    assert written["ssm_cfg"] == {"layer": "Mamba1", "d_state": 8, "d_conv": 4, "expand": 2, "dt_rank": 4,
                                  "conv_bias": True, "bias": False}  # fmt: skip
    assert (written["vocab_size"], written["pad_vocab_size_multiple"], written["tie_embeddings"]) == (45, 8, True)
    state = torch.load(tmp_path / "b" / "pytorch_model.bin", weights_only=True)
    assert set(state) == set(src.state_dict())  # mamba_ssm's names, lm_head.weight included
    save_pretrained(loaded, tmp_path / "b", format="hf")  # same folder: the stale .bin must go
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["config.json", "model.safetensors"]
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "b").eval()
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, want, rtol=1e-4, atol=1e-5)


def test_mamba_ssm_mamba2_defaults():
    """mamba_ssm's Mamba2 defaults (d_state 128, headdim 64, ngroups 1) differ from seqssm's."""
    cfg, vocab = from_mamba_ssm_config({"d_model": 64, "n_layer": 2, "ssm_cfg": {"layer": "Mamba2"}}, "c")
    assert (cfg.mixer, cfg.d_state, cfg.headdim, cfg.ngroups, cfg.chunk_size, vocab) == (
        "mamba2",
        128,
        64,
        1,
        256,
        50277,
    )


@pytest.mark.parametrize("mixer", ["mamba", "mamba2"])
def test_seqssm_format_round_trip(mixer, tmp_path):
    torch.manual_seed(0)
    cfg = ModelConfig(mixer=mixer, d_model=16, n_layer=2, d_state=4, headdim=8, chunk_size=8, complex=mixer == "mamba",
                      norm_eps=1e-3, residual_in_fp32=False, tie_embeddings=False)  # fmt: skip
    m = perturb(MambaLMHeadModel(cfg, 11).eval())
    save_pretrained(m, tmp_path, format="seqssm")
    back = from_pretrained(tmp_path)
    assert back.config == cfg
    ids = torch.randint(0, 11, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(back(ids), m(ids), rtol=0, atol=0)
    if mixer == "mamba":
        with pytest.raises(CheckpointError, match="complex"):
            save_pretrained(m, tmp_path / "hf", format="hf")


def write_folder(path, config: dict, state: dict) -> None:
    path.mkdir()
    (path / "config.json").write_text(json.dumps(config))
    torch.save(state, path / "pytorch_model.bin")


def test_errors_name_the_key(tmp_path):
    torch.manual_seed(0)
    hf = hf_mamba()
    hf.save_pretrained(tmp_path / "ok")
    config = json.loads((tmp_path / "ok" / "config.json").read_text())
    state = {k: v.clone() for k, v in hf.state_dict().items()}

    write_folder(tmp_path / "llama", {**config, "model_type": "llama", "architectures": ["LlamaForCausalLM"]}, state)
    with pytest.raises(CheckpointError, match="model_type='llama' is not a Mamba checkpoint"):
        from_pretrained(tmp_path / "llama")

    partial = {k: v for k, v in state.items() if k != "backbone.layers.1.mixer.x_proj.weight"}
    write_folder(tmp_path / "missing", config, partial)
    with pytest.raises(CheckpointError, match=r"backbone\.layers\.1\.mixer\.x_proj\.weight is missing"):
        from_pretrained(tmp_path / "missing")

    write_folder(tmp_path / "shape", {**config, "state_size": 4}, state)
    with pytest.raises(CheckpointError, match=r"backbone\.layers\.0\.mixer\.A_log has shape \(64, 8\).*\(64, 4\)"):
        from_pretrained(tmp_path / "shape")

    write_folder(tmp_path / "extra", config, {**state, "backbone.layers.0.mixer.extra": torch.zeros(1)})
    with pytest.raises(CheckpointError, match=r"backbone\.layers\.0\.mixer\.extra is not in a mamba model"):
        from_pretrained(tmp_path / "extra")

    write_folder(tmp_path / "ln", {"d_model": 32, "n_layer": 2, "rms_norm": False}, state)
    with pytest.raises(CheckpointError, match="rms_norm=false"):
        from_pretrained(tmp_path / "ln")

    write_folder(tmp_path / "attn", {"d_model": 32, "n_layer": 2, "attn_layer_idx": [1]}, state)
    with pytest.raises(CheckpointError, match=r"attn_layer_idx=\[1\]"):
        from_pretrained(tmp_path / "attn")

    (tmp_path / "noweights").mkdir()
    (tmp_path / "noweights" / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="no weights"):
        from_pretrained(tmp_path / "noweights")
    with pytest.raises(CheckpointError, match="no such folder"):
        from_pretrained(tmp_path / "nowhere")


SDIST = Path(__file__).resolve().parents[1] / ".pkgs" / "mamba_ssm-2.3.2.post1"


@pytest.mark.skipif(not SDIST.is_dir(), reason="mamba_ssm's source is not unpacked in .pkgs/")
@pytest.mark.parametrize("mixer", ["mamba", "mamba2"])
def test_mamba_ssm_builds_and_strictly_loads_our_export(mixer, tmp_path, monkeypatch):
    """mamba_ssm's own MambaLMHeadModel, built from the config.json we write, loads our
    pytorch_model.bin with strict=True (its forward needs CUDA: the logits are compared on the GPU
    by bench/decode.py)."""
    pytest.importorskip("einops")
    monkeypatch.syspath_prepend(str(SDIST))
    if "selective_scan_cuda" not in sys.modules:  # its CUDA extension, unused by construction
        monkeypatch.setitem(sys.modules, "selective_scan_cuda", types.ModuleType("selective_scan_cuda"))
    from mamba_ssm.models.config_mamba import MambaConfig
    from mamba_ssm.models.mixer_seq_simple import MambaLMHeadModel as TheirModel

    torch.manual_seed(0)
    cfg = ModelConfig(mixer=mixer, d_model=32, n_layer=2, d_state=8, headdim=16, ngroups=2, conv_bias=False, bias=True)
    ours = perturb(MambaLMHeadModel(cfg, VOCAB))
    save_pretrained(ours, tmp_path, format="mamba_ssm")
    theirs = TheirModel(MambaConfig(**json.loads((tmp_path / "config.json").read_text())))
    theirs.load_state_dict(torch.load(tmp_path / "pytorch_model.bin", weights_only=True), strict=True)
    for name, p in ours.state_dict().items():
        assert torch.equal(theirs.state_dict()[name], p), name
    assert theirs.backbone.layers[0].mixer.__class__.__name__ == ("Mamba" if mixer == "mamba" else "Mamba2")
