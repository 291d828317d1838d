"""Load and save checkpoint folders of mamba_ssm, HuggingFace transformers and seqssm (local folders
only; nothing is downloaded).

A folder holds ``config.json`` and the weights: ``model.safetensors`` or ``pytorch_model.bin`` (or
sharded, with ``model.safetensors.index.json`` / ``pytorch_model.bin.index.json``). The format is
recognised from config.json (see ``seqssm.models.formats``).

    model = from_pretrained("ckpts/mamba-130m-hf")              # transformers MambaForCausalLM folder
    save_pretrained(model, "out/mamba-130m", format="mamba_ssm")  # mamba_ssm's layout
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from seqssm.errors import CheckpointError, ConfigError
from seqssm.io import atomic_write, write_json
from seqssm.models import formats
from seqssm.models.config import ModelConfig
from seqssm.models.lm import MambaLMHeadModel

SAFETENSORS, BIN = "model.safetensors", "pytorch_model.bin"
WEIGHT_FILES = (SAFETENSORS, BIN, SAFETENSORS + ".index.json", BIN + ".index.json")


def _read_config(folder: Path) -> dict:
    path = folder / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{folder}: no config.json (expected a mamba_ssm, transformers or seqssm folder)")
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: expected a JSON object, found {type(raw).__name__}")
    return raw


def _load_file(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.name.endswith(".safetensors"):
            try:
                from safetensors.torch import load_file
            except ImportError:
                raise CheckpointError(f"{path}: reading .safetensors needs `pip install safetensors`") from None
            return load_file(str(path), device="cpu")
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except CheckpointError:
        raise
    except Exception as e:  # truncated or foreign file
        raise CheckpointError(f"{path}: not a readable weights file ({type(e).__name__}: {e})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a dict of parameter name -> tensor")
    return state


def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The folder's tensors, from (sharded) safetensors, else (sharded) pytorch_model.bin."""
    for name in (SAFETENSORS, BIN):
        if (folder / name).is_file():
            return _load_file(folder / name)
        index = folder / (name + ".index.json")
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise CheckpointError(f"{index}: expected a JSON object with a weight_map ({e})") from None
            state: dict[str, torch.Tensor] = {}
            for shard in sorted(set(weight_map.values())):
                if not (folder / shard).is_file():
                    raise CheckpointError(f"{index}: shard {shard} is missing from {folder}")
                state.update(_load_file(folder / shard))
            return state
    raise CheckpointError(f"{folder}: no weights (expected {SAFETENSORS} or {BIN}, or a sharded index)")


def _to_model_names(state: dict[str, torch.Tensor], fmt: str, model: MambaLMHeadModel) -> dict[str, torch.Tensor]:
    """Rename to seqssm names and drop a tied head's copy."""
    if fmt == "hf":
        state = {formats.hf_to_ours(k): v for k, v in state.items()}
    if model.config.tie_embeddings:
        state.pop("lm_head.weight", None)  # mamba_ssm stores the tied copy; transformers does not
    return state


def load_weights(model: MambaLMHeadModel, state: dict[str, torch.Tensor], where: str) -> None:
    """Copy ``state`` into ``model``; CheckpointError naming the first missing, unexpected or
    mis-shaped parameter (with both shapes)."""
    expected = model.state_dict()
    if model.config.tie_embeddings:
        expected.pop("lm_head.weight")
    missing = [k for k in expected if k not in state]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise CheckpointError(f"{where}: parameter {missing[0]} is missing{more}")
    unexpected = [k for k in state if k not in expected]
    if unexpected:
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        raise CheckpointError(f"{where}: parameter {unexpected[0]} is not in a {model.config.mixer} model{more}")
    for key, want in expected.items():
        got = state[key]
        if tuple(got.shape) != tuple(want.shape):
            raise CheckpointError(
                f"{where}: parameter {key} has shape {tuple(got.shape)} in the checkpoint, the model from "
                f"config.json expects {tuple(want.shape)}"
            )
    with torch.no_grad():
        for key, want in expected.items():
            want.copy_(state[key])


def from_pretrained(
    path: str | os.PathLike,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    backend: str = "auto",
) -> MambaLMHeadModel:
    """A ``MambaLMHeadModel`` from a local folder written by mamba_ssm, transformers or seqssm, in eval
    mode. ``dtype`` None keeps seqssm's parameter dtype (fp32); ``backend`` picks the primitives."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise CheckpointError(f"{path}: no such folder (from_pretrained reads a local checkpoint folder)")
    where = str(folder / "config.json")
    fmt, cfg, vocab_size = formats.read_config(_read_config(folder), where)
    cfg.backend = backend
    try:
        model = MambaLMHeadModel(cfg, vocab_size)
    except ConfigError as e:
        raise CheckpointError(f"{where}: {e}") from None
    state = _to_model_names(read_weights(folder), fmt, model)
    load_weights(model, state, str(folder))
    if dtype is not None:
        model.to(dtype)
    return model.to(device).eval()


def _hf_state(model: MambaLMHeadModel) -> dict[str, torch.Tensor]:
    """transformers names; embedding and head cut to vocab_size rows so transformers' logits are ours
    (seqssm drops the padding columns); the tied head is left out, as transformers saves it."""
    state, v = {}, model.vocab_size
    for key, t in model.state_dict().items():
        if key == "lm_head.weight" and model.config.tie_embeddings:
            continue
        if key in ("backbone.embedding.weight", "lm_head.weight"):
            t = t[:v]
        state[formats.ours_to_hf(key)] = t.detach().contiguous().clone()
    return state


def save_pretrained(model: MambaLMHeadModel, path: str | os.PathLike, format: str = "seqssm") -> Path:
    """Write ``model`` as a folder another library loads: ``format`` "mamba_ssm" (config.json +
    pytorch_model.bin, mamba_ssm's ``MambaLMHeadModel.from_pretrained``), "hf" (config.json +
    model.safetensors, transformers' ``MambaForCausalLM``/``Mamba2ForCausalLM.from_pretrained``) or
    "seqssm" (config.json with the full ModelConfig + pytorch_model.bin). Each file is written atomically,
    config.json last; weight files of another name left in the folder are removed (they would be stale)."""
    if format not in formats.FORMATS:
        raise ConfigError(f"format={format!r}: expected one of {', '.join(formats.FORMATS)}")
    if not isinstance(model, MambaLMHeadModel):
        raise ConfigError(f"save_pretrained: expected a seqssm MambaLMHeadModel, got {type(model).__name__}")
    folder = Path(path).expanduser()
    cfg, v = model.config, model.vocab_size
    if format == "hf":
        config = formats.to_hf_config(cfg, v)
        state, weights = _hf_state(model), SAFETENSORS
    else:
        config = formats.to_mamba_ssm_config(cfg, v) if format == "mamba_ssm" else formats.to_seqssm_config(cfg, v)
        state, weights = {k: t.detach() for k, t in model.state_dict().items()}, BIN
    state = {k: t.cpu() for k, t in state.items()}
    folder.mkdir(parents=True, exist_ok=True)
    if weights == SAFETENSORS:
        try:
            from safetensors.torch import save_file
        except ImportError:
            raise CheckpointError("format=hf: writing model.safetensors needs `pip install safetensors`") from None
        atomic_write(folder / weights, lambda p: save_file(state, str(p), metadata={"format": "pt"}))
    else:
        atomic_write(folder / weights, lambda p: torch.save(state, p))
    for stale in WEIGHT_FILES:
        if stale != weights and (folder / stale).is_file():
            (folder / stale).unlink()
    write_json(folder / "config.json", config)
    return folder


def model_config_of(path: str | os.PathLike) -> tuple[str, ModelConfig, int]:
    """(format, ModelConfig, vocab_size) of a checkpoint folder, without loading the weights."""
    folder = Path(path).expanduser()
    return formats.read_config(_read_config(folder), str(folder / "config.json"))
