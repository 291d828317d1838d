"""Checkpoint formats: the ``config.json`` of mamba_ssm, of HuggingFace transformers (``MambaForCausalLM``,
``Mamba2ForCausalLM``) and of seqssm, translated to and from ``(ModelConfig, vocab_size)``, and the
parameter names of each.

Every config field that changes the function the network computes is mapped (sizes, Δ rank, conv
and projection biases, norm eps, fp32 residual, tied head, vocab padding); fields that only choose an
initialisation (dt_min, A_init_range, ...) or a kernel (use_fast_path, fused_add_norm) are ignored.
Options that would change the function and that seqssm does not implement (LayerNorm instead of
RMSNorm, attention or MLP layers, Mamba-2's ``D_has_hdim``, ``norm_before_gate``, a Δ clamp, ...) are
refused with a CheckpointError naming the field.

Parameter names: seqssm uses mamba_ssm's names (``backbone.embedding.weight``,
``backbone.layers.{i}.mixer.*``, ``backbone.norm_f.weight``, ``lm_head.weight``); transformers
differs only in ``backbone.embeddings.weight``, and it stores just ``vocab_size`` rows (no padding).
"""

from __future__ import annotations

import math
from dataclasses import asdict, fields
from typing import Any

from seqssm.errors import CheckpointError
from seqssm.models.config import ModelConfig

FORMATS = ("mamba_ssm", "hf", "seqssm")
HF_ARCHITECTURES = {"mamba": "MambaForCausalLM", "mamba2": "Mamba2ForCausalLM"}
MAMBA_SSM_NORM_EPS = 1e-5  # mamba_ssm's MambaLMHeadModel never passes norm_epsilon: always 1e-5

# Defaults of the libraries' config classes, for fields a config.json leaves out.
HF_DEFAULTS: dict[str, dict[str, Any]] = {
    "mamba": dict(
        hidden_size=768, num_hidden_layers=32, state_size=16, conv_kernel=4, expand=2, vocab_size=50280,
        time_step_rank="auto", use_bias=False, use_conv_bias=True, layer_norm_epsilon=1e-5,
        residual_in_fp32=True, tie_word_embeddings=True, hidden_act="silu",
    ),
    "mamba2": dict(
        hidden_size=4096, num_hidden_layers=64, state_size=128, conv_kernel=4, expand=2, vocab_size=32768,
        head_dim=64, n_groups=8, chunk_size=256, use_bias=False, use_conv_bias=True, layer_norm_epsilon=1e-5,
        residual_in_fp32=True, tie_word_embeddings=False, hidden_act="silu",
    ),
}  # fmt: skip
MAMBA_SSM_DEFAULTS: dict[str, Any] = dict(
    d_intermediate=0, vocab_size=50277, attn_layer_idx=[], rms_norm=True, residual_in_fp32=True,
    pad_vocab_size_multiple=8, tie_embeddings=True,
)  # fmt: skip
MAMBA_SSM_MIXER_DEFAULTS: dict[str, dict[str, Any]] = {
    "Mamba1": dict(d_state=16, d_conv=4, expand=2, dt_rank="auto", conv_bias=True, bias=False),
    "Mamba2": dict(
        d_state=128, d_conv=4, expand=2, headdim=64, ngroups=1, chunk_size=256, conv_bias=True, bias=False,
        d_ssm=None, D_has_hdim=False, rmsnorm=True, norm_before_gate=False, dt_limit=[0.0, math.inf],
    ),
}  # fmt: skip
# ssm_cfg keys that only pick an initialisation or a kernel: they do not change a trained model's function.
MAMBA_SSM_INIT_ONLY = {
    "dt_min", "dt_max", "dt_init", "dt_scale", "dt_init_floor", "use_fast_path", "conv_init", "A_init_range",
    "use_mem_eff_path", "sequence_parallel", "process_group", "layer_idx",
}  # fmt: skip


def _is_int(value: Any) -> bool:
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def _int(where: str, key: str, value: Any) -> int:
    if isinstance(value, bool) or not _is_int(value):
        raise CheckpointError(f"{where}: {key}={value!r}: expected an integer")
    return int(value)


def _float(value: Any) -> float:
    """A JSON number; transformers writes infinity as {"__float__": "Infinity"}, Python as Infinity."""
    return float(value["__float__"]) if isinstance(value, dict) and "__float__" in value else float(value)


def _no_dt_limit(where: str, key: str, limit: Any) -> None:
    try:
        lo, hi = (_float(v) for v in limit)
    except (TypeError, ValueError, KeyError):
        raise CheckpointError(f"{where}: {key}={limit!r}: expected two numbers [min, max]") from None
    if lo != 0.0 or not math.isinf(hi):
        raise CheckpointError(f"{where}: {key}=[{lo}, {hi}]: a clamp of Δ is not supported (expected [0.0, inf])")


def detect_format(raw: dict, where: str) -> str:
    """Which library wrote this config.json: "seqssm", "hf" (has ``model_type``) or "mamba_ssm"."""
    if raw.get("format") == "seqssm":
        return "seqssm"
    if "model_type" in raw or "architectures" in raw:
        return "hf"
    if "d_model" in raw and "n_layer" in raw:
        return "mamba_ssm"
    raise CheckpointError(
        f"{where}: not a Mamba config.json (expected transformers' model_type, mamba_ssm's d_model/n_layer, "
        f"or seqssm's format=seqssm; found keys {sorted(raw)[:8]})"
    )


def from_hf_config(raw: dict, where: str) -> tuple[ModelConfig, int]:
    """transformers ``MambaConfig`` / ``Mamba2Config`` -> (ModelConfig, vocab_size)."""
    model_type = raw.get("model_type")
    if model_type not in HF_DEFAULTS:
        raise CheckpointError(
            f"{where}: model_type={model_type!r} is not a Mamba checkpoint: expected 'mamba' (MambaForCausalLM) "
            f"or 'mamba2' (Mamba2ForCausalLM)"
        )
    archs = raw.get("architectures") or [HF_ARCHITECTURES[model_type]]
    if HF_ARCHITECTURES[model_type] not in archs:
        raise CheckpointError(f"{where}: architectures={archs}: expected {HF_ARCHITECTURES[model_type]!r}")
    c = {**HF_DEFAULTS[model_type], **{k: v for k, v in raw.items() if v is not None}}
    if c["hidden_act"] != "silu":
        raise CheckpointError(f"{where}: hidden_act={c['hidden_act']!r}: only 'silu' is supported")
    d_model = _int(where, "hidden_size", c["hidden_size"])
    expand = c["expand"]
    if not _is_int(expand):
        raise CheckpointError(f"{where}: expand={expand!r}: only integer expansion factors are supported")
    expand = int(expand)
    if "intermediate_size" in raw and _int(where, "intermediate_size", raw["intermediate_size"]) != expand * d_model:
        raise CheckpointError(
            f"{where}: intermediate_size={raw['intermediate_size']} is not expand*hidden_size={expand * d_model}"
        )
    common = dict(
        d_model=d_model,
        n_layer=_int(where, "num_hidden_layers", c["num_hidden_layers"]),
        d_state=_int(where, "state_size", c["state_size"]),
        d_conv=_int(where, "conv_kernel", c["conv_kernel"]),
        expand=expand,
        conv_bias=bool(c["use_conv_bias"]),
        bias=bool(c["use_bias"]),
        norm_eps=float(c["layer_norm_epsilon"]),
        residual_in_fp32=bool(c["residual_in_fp32"]),
        tie_embeddings=bool(c["tie_word_embeddings"]),
        pad_vocab_size_multiple=1,  # transformers stores exactly vocab_size rows
    )
    if model_type == "mamba":
        rank = c["time_step_rank"]
        dt_rank = math.ceil(d_model / 16) if rank == "auto" else _int(where, "time_step_rank", rank)
        cfg = ModelConfig(mixer="mamba", dt_rank=dt_rank, **common)
    else:
        headdim = _int(where, "head_dim", c["head_dim"])
        if "num_heads" in raw and _int(where, "num_heads", raw["num_heads"]) * headdim != expand * d_model:
            raise CheckpointError(
                f"{where}: num_heads*head_dim={raw['num_heads']}*{headdim} is not expand*hidden_size={expand * d_model}"
            )
        if "time_step_limit" in raw:
            _no_dt_limit(where, "time_step_limit", raw["time_step_limit"])
        cfg = ModelConfig(
            mixer="mamba2",
            headdim=headdim,
            ngroups=_int(where, "n_groups", c["n_groups"]),
            chunk_size=_int(where, "chunk_size", c["chunk_size"]),
            **common,
        )
    return cfg, _int(where, "vocab_size", c["vocab_size"])


def from_mamba_ssm_config(raw: dict, where: str) -> tuple[ModelConfig, int]:
    """mamba_ssm ``MambaConfig`` (d_model, n_layer, vocab_size, ssm_cfg, ...) -> (ModelConfig, vocab_size)."""
    c = {**MAMBA_SSM_DEFAULTS, **raw}
    if not c["rms_norm"]:
        raise CheckpointError(f"{where}: rms_norm=false (LayerNorm blocks) is not supported: seqssm uses RMSNorm")
    if c["d_intermediate"]:
        raise CheckpointError(f"{where}: d_intermediate={c['d_intermediate']}: MLP layers are not supported")
    if c["attn_layer_idx"]:
        raise CheckpointError(f"{where}: attn_layer_idx={c['attn_layer_idx']}: attention layers are not supported")
    ssm_cfg = dict(c.get("ssm_cfg") or {})
    layer = ssm_cfg.pop("layer", "Mamba1")
    if layer not in MAMBA_SSM_MIXER_DEFAULTS:
        raise CheckpointError(f"{where}: ssm_cfg.layer={layer!r}: expected 'Mamba1' or 'Mamba2'")
    unknown = set(ssm_cfg) - set(MAMBA_SSM_MIXER_DEFAULTS[layer]) - MAMBA_SSM_INIT_ONLY
    if unknown:
        raise CheckpointError(f"{where}: ssm_cfg.{sorted(unknown)[0]} is not a {layer} option seqssm knows")
    s = {**MAMBA_SSM_MIXER_DEFAULTS[layer], **ssm_cfg}
    d_model = _int(where, "d_model", c["d_model"])
    if not _is_int(s["expand"]):
        raise CheckpointError(f"{where}: ssm_cfg.expand={s['expand']!r}: only integer expansion factors are supported")
    common = dict(
        d_model=d_model,
        n_layer=_int(where, "n_layer", c["n_layer"]),
        d_state=_int(where, "ssm_cfg.d_state", s["d_state"]),
        d_conv=_int(where, "ssm_cfg.d_conv", s["d_conv"]),
        expand=int(s["expand"]),
        conv_bias=bool(s["conv_bias"]),
        bias=bool(s["bias"]),
        norm_eps=MAMBA_SSM_NORM_EPS,
        residual_in_fp32=bool(c["residual_in_fp32"]),
        tie_embeddings=bool(c["tie_embeddings"]),
        pad_vocab_size_multiple=_int(where, "pad_vocab_size_multiple", c["pad_vocab_size_multiple"]),
    )
    if layer == "Mamba1":
        rank = s["dt_rank"]
        dt_rank = math.ceil(d_model / 16) if rank == "auto" else _int(where, "ssm_cfg.dt_rank", rank)
        cfg = ModelConfig(mixer="mamba", dt_rank=dt_rank, **common)
    else:
        d_inner = int(s["expand"]) * d_model
        if s["d_ssm"] is not None and s["d_ssm"] != d_inner:
            raise CheckpointError(
                f"{where}: ssm_cfg.d_ssm={s['d_ssm']}: a partial SSM (with a gated MLP part) is not supported"
            )
        for key, want in (("D_has_hdim", False), ("rmsnorm", True), ("norm_before_gate", False)):
            if bool(s[key]) != want:
                raise CheckpointError(f"{where}: ssm_cfg.{key}={s[key]!r}: only {want} is supported")
        _no_dt_limit(where, "ssm_cfg.dt_limit", s["dt_limit"])
        cfg = ModelConfig(
            mixer="mamba2",
            headdim=_int(where, "ssm_cfg.headdim", s["headdim"]),
            ngroups=_int(where, "ssm_cfg.ngroups", s["ngroups"]),
            chunk_size=_int(where, "ssm_cfg.chunk_size", s["chunk_size"]),
            **common,
        )
    return cfg, _int(where, "vocab_size", c["vocab_size"])


def from_seqssm_config(raw: dict, where: str) -> tuple[ModelConfig, int]:
    model = raw.get("model")
    if not isinstance(model, dict) or "vocab_size" not in raw:
        raise CheckpointError(f"{where}: a seqssm config.json needs 'model' (a ModelConfig) and 'vocab_size'")
    known = {f.name for f in fields(ModelConfig)}
    unknown = set(model) - known
    if unknown:
        raise CheckpointError(f"{where}: model.{sorted(unknown)[0]} is not a ModelConfig field (newer seqssm?)")
    return ModelConfig(**model), _int(where, "vocab_size", raw["vocab_size"])


def read_config(raw: dict, where: str) -> tuple[str, ModelConfig, int]:
    """config.json contents -> (format, ModelConfig, vocab_size)."""
    fmt = detect_format(raw, where)
    reader = {"hf": from_hf_config, "mamba_ssm": from_mamba_ssm_config, "seqssm": from_seqssm_config}[fmt]
    cfg, vocab_size = reader(raw, where)
    return fmt, cfg, vocab_size


def _exportable(cfg: ModelConfig, fmt: str) -> None:
    if cfg.mixer not in ("mamba", "mamba2"):
        raise CheckpointError(f"format={fmt}: model.mixer={cfg.mixer!r} has no {fmt} layout (only mamba, mamba2)")
    if cfg.complex:
        raise CheckpointError(f"format={fmt}: model.complex=true (complex A, B, C) has no {fmt} layout")
    if cfg.rope_fraction:
        raise CheckpointError(
            f"format={fmt}: model.rope_fraction>0 (rotary SSD) has no {fmt} layout (use format=seqssm)"
        )
    for key in ("bidirectional", "rc_equivariant"):  # seqssm-only model options
        if getattr(cfg, key, False):
            raise CheckpointError(f"format={fmt}: model.{key}=true has no {fmt} layout (use format=seqssm)")


def dt_rank(cfg: ModelConfig) -> int:
    return cfg.dt_rank or math.ceil(cfg.d_model / 16)


def to_mamba_ssm_config(cfg: ModelConfig, vocab_size: int) -> dict:
    """(ModelConfig, vocab_size) -> mamba_ssm's config.json."""
    _exportable(cfg, "mamba_ssm")
    if cfg.norm_eps != MAMBA_SSM_NORM_EPS:
        raise CheckpointError(
            f"format=mamba_ssm: model.norm_eps={cfg.norm_eps}: mamba_ssm's MambaLMHeadModel always uses 1e-5"
        )
    ssm = dict(d_state=cfg.d_state, d_conv=cfg.d_conv, expand=cfg.expand, conv_bias=cfg.conv_bias, bias=cfg.bias)
    if cfg.mixer == "mamba":
        ssm.update(layer="Mamba1", dt_rank=dt_rank(cfg))
    else:
        ssm.update(layer="Mamba2", headdim=cfg.headdim, ngroups=cfg.ngroups, chunk_size=cfg.chunk_size)
    return dict(
        d_model=cfg.d_model,
        d_intermediate=0,
        n_layer=cfg.n_layer,
        vocab_size=vocab_size,
        ssm_cfg=ssm,
        attn_layer_idx=[],
        attn_cfg={},
        rms_norm=True,
        residual_in_fp32=cfg.residual_in_fp32,
        fused_add_norm=True,
        pad_vocab_size_multiple=cfg.pad_vocab_size_multiple,
        tie_embeddings=cfg.tie_embeddings,
    )


def to_hf_config(cfg: ModelConfig, vocab_size: int) -> dict:
    """(ModelConfig, vocab_size) -> transformers' config.json. No special tokens are known here, so
    bos/eos/pad are null (transformers' Mamba default eos_token_id=0 would stop generation at token 0)."""
    _exportable(cfg, "hf")
    d_inner = cfg.expand * cfg.d_model
    out = dict(
        architectures=[HF_ARCHITECTURES[cfg.mixer]],
        model_type=cfg.mixer,
        hidden_size=cfg.d_model,
        num_hidden_layers=cfg.n_layer,
        state_size=cfg.d_state,
        conv_kernel=cfg.d_conv,
        expand=cfg.expand,
        use_bias=cfg.bias,
        use_conv_bias=cfg.conv_bias,
        layer_norm_epsilon=cfg.norm_eps,
        residual_in_fp32=cfg.residual_in_fp32,
        tie_word_embeddings=cfg.tie_embeddings,
        vocab_size=vocab_size,
        hidden_act="silu",
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )
    if cfg.mixer == "mamba":
        out.update(intermediate_size=d_inner, time_step_rank=dt_rank(cfg))
    else:
        out.update(
            head_dim=cfg.headdim, num_heads=d_inner // cfg.headdim, n_groups=cfg.ngroups, chunk_size=cfg.chunk_size
        )
    return out


def to_seqssm_config(cfg: ModelConfig, vocab_size: int) -> dict:
    from seqssm import __version__

    return {"format": "seqssm", "seqssm_version": __version__, "model": asdict(cfg), "vocab_size": vocab_size}


HF_EMBEDDING, OUR_EMBEDDING = "backbone.embeddings.", "backbone.embedding."


def hf_to_ours(key: str) -> str:
    """transformers parameter name -> seqssm/mamba_ssm name."""
    return OUR_EMBEDDING + key.removeprefix(HF_EMBEDDING) if key.startswith(HF_EMBEDDING) else key


def ours_to_hf(key: str) -> str:
    return HF_EMBEDDING + key.removeprefix(OUR_EMBEDDING) if key.startswith(OUR_EMBEDDING) else key
