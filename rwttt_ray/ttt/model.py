"""The model: the built-in small random In-Place TTT model, and local checkpoints.

`build_default_model()` makes a Qwen3-shaped model from a config with seeded random weights
(bit-identical in every process) and NON-zero TTT conv/projection, with the byte tokenizer.
`load_model(dir)` reads a local checkpoint in the official In-Place-TTT layout (config keys
`ttt_*`, tensors `model.layers.{i}.mlp.ttt_conv.weight` [D,1,5] and `...ttt_proj.weight` [D,D]);
`save_checkpoint` writes that layout. Nothing is downloaded.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from rwttt_ray.ttt.settings import TTTSettings
from rwttt_ray.ttt.tokenizer import ByteTokenizer, VOCAB_SIZE

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

DEFAULT_NAME = "rwttt-tiny"
DEFAULT_SEED = 1234
DEFAULT_ARCH = dict(vocab_size=VOCAB_SIZE, hidden_size=256, intermediate_size=768, num_hidden_layers=6,
                    num_attention_heads=4, num_key_value_heads=2, head_dim=64,
                    max_position_embeddings=2048, tie_word_embeddings=True, rope_theta=10000.0,
                    rms_norm_eps=1e-6)
# The official In-Place-TTT layer pattern (every 6th layer from 0), kept to the layers that exist:
# on the 6-layer default that is layer 0, the same 1-in-6 share of fast-weight layers as Qwen3-4B.
DEFAULT_TTT = TTTSettings(layers=(0, 6, 12, 18, 24, 30), chunk=32, lr=0.3)
TTT_KEY = "model.layers.{i}.mlp.ttt_{kind}.weight"


class ModelError(ValueError):
    """A model directory or setting that cannot be used; the message says why."""


@dataclass
class TTTModel:
    """A transformers causal LM plus the slow TTT parameters of its fast-weight layers."""

    hf: Any                                   # Qwen3ForCausalLM / LlamaForCausalLM, eval mode
    settings: TTTSettings
    conv: dict[int, torch.Tensor]             # layer -> ttt_conv.weight [D, 1, 5]
    proj: dict[int, torch.Tensor]             # layer -> ttt_proj.weight [D, D], used as stored
    tokenizer: Any = field(default_factory=ByteTokenizer)
    name: str = DEFAULT_NAME

    @property
    def max_seq_len(self) -> int:
        return int(self.hf.config.max_position_embeddings)

    @property
    def hidden_size(self) -> int:
        return int(self.hf.config.hidden_size)

    @property
    def intermediate_size(self) -> int:
        return int(self.hf.config.intermediate_size)

    def with_settings(self, settings: TTTSettings) -> "TTTModel":
        """The same weights (shared, not copied) under other TTT settings."""
        return TTTModel(self.hf, settings, self.conv, self.proj, self.tokenizer, self.name)


def _seeded_init(module: torch.nn.Module, seed: int, std: float = 0.02) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(module.named_parameters(), key=lambda kv: kv[0]):
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * std)


def random_ttt_params(hidden: int, layers: tuple[int, ...], seed: int) -> tuple[dict, dict]:
    """NON-zero conv and projection (zero init would make every update zero and hide bugs).

    Scaled so 7 WRITEs of the default model move dW to about the norm of W0: visible, not explosive."""
    gen = torch.Generator().manual_seed(seed + 1)
    conv, proj = {}, {}
    for i in layers:
        conv[i] = torch.randn(hidden, 1, 5, generator=gen) * 0.05
        proj[i] = 0.1 * (torch.eye(hidden) + torch.randn(hidden, hidden, generator=gen) / hidden ** 0.5)
    return conv, proj


def build_default_model(settings: TTTSettings = DEFAULT_TTT, seed: int = DEFAULT_SEED,
                        dtype: torch.dtype = torch.float32, **arch: Any) -> TTTModel:
    """The built-in small model: Qwen3-shaped, random, offline, deterministic."""
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.for_model("qwen3", **{**DEFAULT_ARCH, **arch})
    hf = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32, attn_implementation="sdpa")
    _seeded_init(hf, seed)
    hf = hf.to(dtype).eval().requires_grad_(False)
    settings = settings.validate_for(cfg.num_hidden_layers)
    conv, proj = random_ttt_params(cfg.hidden_size, tuple(range(cfg.num_hidden_layers)), seed)
    return TTTModel(hf, settings, conv, proj)


def _read_ttt_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    out: dict[str, torch.Tensor] = {}
    for f in sorted(path.glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as sf:
            out.update({k: sf.get_tensor(k) for k in sf.keys() if ".mlp.ttt_" in k})
    return out


def load_model(path: str | os.PathLike, settings: TTTSettings | None = None, seed: int = DEFAULT_SEED,
               dtype: torch.dtype = torch.float32) -> TTTModel:
    """A local checkpoint: official In-Place-TTT layout, or plain Qwen3/Llama plus `settings`."""
    from transformers import AutoModelForCausalLM

    path = Path(path)
    if not (path / "config.json").is_file():
        raise ModelError(f"model dir {str(path)!r} has no config.json")
    cfg = json.loads((path / "config.json").read_text())
    settings = settings or TTTSettings.from_config(cfg)
    if settings is None:
        raise ModelError(f"{path} has no ttt_layers in config.json; give --ttt-layers for a plain checkpoint")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()   # the ttt_* tensors are read below, not 'unexpected'
    hf_logging.disable_progress_bar()
    try:
        hf = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype, local_files_only=True,
                                                  attn_implementation="sdpa")
    except Exception as exc:  # transformers raises many types; surface one clear line
        raise ModelError(f"cannot load model from {str(path)!r}: {str(exc).splitlines()[0]}") from exc
    hf = hf.eval().requires_grad_(False)
    settings = settings.validate_for(hf.config.num_hidden_layers)
    tensors = _read_ttt_tensors(path)
    conv, proj = random_ttt_params(hf.config.hidden_size, settings.layers, seed)
    for i in settings.layers:
        conv[i] = tensors.get(TTT_KEY.format(i=i, kind="conv"), conv[i]).float()
        proj[i] = tensors.get(TTT_KEY.format(i=i, kind="proj"), proj[i]).float()
    return TTTModel(hf, settings, conv, proj, _load_tokenizer(path, hf.config.vocab_size), path.name)


def _load_tokenizer(path: Path, vocab_size: int) -> Any:
    if any((path / n).exists() for n in ("tokenizer.json", "tokenizer_config.json")):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
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


def load_tokenizer_info(path: str | None) -> tuple[Any, int, str]:
    """(tokenizer, context limit, model name) without loading weights: what an HTTP front needs."""
    if path is None:
        return ByteTokenizer(), DEFAULT_ARCH["max_position_embeddings"], DEFAULT_NAME
    p = Path(path)
    cfg = json.loads((p / "config.json").read_text())
    return _load_tokenizer(p, cfg.get("vocab_size", 0)), int(cfg.get("max_position_embeddings", 2048)), p.name
