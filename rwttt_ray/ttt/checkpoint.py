"""Local checkpoints: read (official In-Place-TTT layout, or plain Qwen3/Llama), check, save.

A checkpoint's TTT settings come from its config.json (`ttt_mode`, `ttt_layers`, `ttt_chunk`,
`ttt_lr`, `ttt_target`, `ttt_proj`), overridden by the command line; its slow TTT tensors are
`model.layers.{i}.mlp.ttt_conv.weight` [D,1,5] and `...ttt_proj.weight` [D,D] (used as stored).
Nothing is taken on trust: an architecture the forward does not know, a TTT layer that does not
exist, or TTT layers without their tensors are errors (seeded tensors only with
`ttt_init="random"`), and every decision made is a note on the model's start-up line.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from rwttt_ray.ttt.model import DEFAULT_SEED, ModelError, TTTModel, random_ttt_params
from rwttt_ray.ttt.settings import TTTSettings, resolve_settings
from rwttt_ray.ttt.tokenizer import VOCAB_SIZE, ByteTokenizer

SUPPORTED_ARCHS = ("qwen3", "llama")     # what FastWeightForward and the reference run
TTT_INITS = ("checkpoint", "random")
TTT_KEY = "model.layers.{i}.mlp.ttt_{kind}.weight"
DTYPE_NAMES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16", "fp32": "float32",
               "bf16": "bfloat16", "fp16": "float16"}


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """config.json of a model dir, refusing architectures this project cannot serve."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise ModelError(f"model dir {str(path)!r} has no config.json")
    try:
        cfg = json.loads((path / "config.json").read_text())
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path}/config.json is not JSON: {exc}") from None
    arch = cfg.get("model_type")
    if arch not in SUPPORTED_ARCHS:
        raise ModelError(f"unsupported architecture {arch!r} in {path}: rwttt-ray serves {', '.join(SUPPORTED_ARCHS)}")
    return cfg


def checkpoint_dtype(cfg: dict[str, Any]) -> str:
    """The dtype the checkpoint was saved in (`--dtype auto`); float32 when it does not say."""
    name = str(cfg.get("dtype") or cfg.get("torch_dtype") or "float32").removeprefix("torch.")
    return DTYPE_NAMES.get(name, "float32")


def load_model(path: str | os.PathLike, overrides: dict[str, Any] | None = None, seed: int = DEFAULT_SEED,
               dtype: torch.dtype = torch.float32, ttt_init: str = "checkpoint") -> TTTModel:
    """A local checkpoint under its own TTT settings, with `overrides` (the command line's) on top."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    if ttt_init not in TTT_INITS:
        raise ModelError(f"ttt init must be one of {', '.join(TTT_INITS)}, got {ttt_init!r}")
    path = Path(path)
    cfg = read_config(path)
    try:
        settings, notes = resolve_settings(TTTSettings.from_config(cfg), dict(overrides or {}),
                                           int(cfg.get("num_hidden_layers", 0)), str(path))
    except ValueError as exc:
        raise ModelError(str(exc)) from None
    hf_logging.set_verbosity_error()   # the ttt_* tensors are read below, not 'unexpected'
    hf_logging.disable_progress_bar()
    try:
        hf = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype, local_files_only=True,
                                                  attn_implementation="sdpa")
    except Exception as exc:  # transformers raises many types; surface one clear line
        raise ModelError(f"cannot load model from {str(path)!r}: {str(exc).splitlines()[0]}") from exc
    hf = hf.eval().requires_grad_(False)
    conv, proj = _ttt_tensors(path, settings, hf.config.hidden_size, seed, ttt_init, notes)
    return TTTModel(hf, settings, conv, proj, load_tokenizer(path, hf.config.vocab_size), path.name, tuple(notes))


def _ttt_tensors(path: Path, settings: TTTSettings, hidden: int, seed: int, ttt_init: str,
                 notes: list[str]) -> tuple[dict, dict]:
    """The TTT layers' conv and projection: the checkpoint's, or (asked for) seeded random ones."""
    if not settings.enabled:
        return {}, {}
    tensors = _read_ttt_tensors(path)
    kinds = ("conv", "proj") if settings.use_proj else ("conv",)
    missing = [TTT_KEY.format(i=i, kind=k) for i in settings.layers for k in kinds
               if TTT_KEY.format(i=i, kind=k) not in tensors]
    conv, proj = random_ttt_params(hidden, settings.layers, seed)
    if missing and ttt_init != "random":
        raise ModelError(f"{path} declares TTT layers {list(settings.layers)} but lacks {len(missing)} of their "
                         f"tensors (first: {missing[0]}); --ttt-init random serves seeded ones")
    if missing:
        notes.append(f"--ttt-init random: seeded TTT conv/projection for {len(missing)} missing tensors (seed {seed})")
    for i in settings.layers:
        conv[i] = tensors.get(TTT_KEY.format(i=i, kind="conv"), conv[i]).float()
        proj[i] = tensors.get(TTT_KEY.format(i=i, kind="proj"), proj[i]).float()
    return conv, proj


def _read_ttt_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    out: dict[str, torch.Tensor] = {}
    for f in sorted(path.glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as sf:
            out.update({k: sf.get_tensor(k) for k in sf.keys() if ".mlp.ttt_" in k})
    return out


def load_tokenizer(path: str | os.PathLike, vocab_size: int | None = None) -> Any:
    """The checkpoint's tokenizer (tokenizer.json), else the byte tokenizer if the vocab has room."""
    path = Path(path)
    if any((path / n).exists() for n in ("tokenizer.json", "tokenizer_config.json")):
        from transformers import AutoTokenizer

        try:
            return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        except Exception as exc:
            raise ModelError(f"cannot load the tokenizer of {str(path)!r}: {str(exc).splitlines()[0]}") from exc
    vocab_size = read_config(path).get("vocab_size", 0) if vocab_size is None else vocab_size
    if vocab_size < VOCAB_SIZE:
        raise ModelError(f"{path} has no tokenizer and vocab {vocab_size} < {VOCAB_SIZE} bytes")
    return ByteTokenizer()



def save_checkpoint(model: TTTModel, path: str | os.PathLike) -> Path:
    """Write `model` in the official In-Place-TTT layout (config keys + ttt tensors)."""
    from safetensors.torch import load_file, save_file

    path = Path(path)
    model.hf.save_pretrained(str(path))
    cfg = json.loads((path / "config.json").read_text())
    cfg.update(model.settings.to_config())
    (path / "config.json").write_text(json.dumps(cfg, indent=2))
    weights = path / "model.safetensors"
    tensors = load_file(str(weights))
    for i in model.settings.layers:
        tensors[TTT_KEY.format(i=i, kind="conv")] = model.conv[i].contiguous()
        tensors[TTT_KEY.format(i=i, kind="proj")] = model.proj[i].contiguous()
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(weights), metadata={"format": "pt"})
    return path
