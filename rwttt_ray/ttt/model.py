"""The model: TTTModel (a transformers causal LM plus its TTT parameters) and the built-in one.

`build_default_model()` makes a Qwen3-shaped model from a config with seeded random weights
(bit-identical in every process) and NON-zero TTT conv/projection, with the byte tokenizer.
Local checkpoints are read and written by `rwttt_ray.ttt.checkpoint`. Nothing is downloaded.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
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
    notes: tuple[str, ...] = ()               # what loading decided (dropped layers, static model ...)
    context_limit: int | None = None          # --max-model-len: served context, at most the model's

    @property
    def max_seq_len(self) -> int:
        return min(int(self.hf.config.max_position_embeddings), self.context_limit or 1 << 62)

    @property
    def hidden_size(self) -> int:
        return int(self.hf.config.hidden_size)

    @property
    def intermediate_size(self) -> int:
        return int(self.hf.config.intermediate_size)

    def with_settings(self, settings: TTTSettings) -> "TTTModel":
        """The same weights (shared, not copied) under other TTT settings."""
        return replace(self, settings=settings)

    def describe(self, device: str, slots: int) -> str:
        """The start-up line: what is served, with which TTT settings, where."""
        cfg, s = self.hf.config, self.settings
        ttt = (f"TTT layers {list(s.layers)} chunk {s.chunk} lr {s.lr:g} target {s.target} "
               f"proj {'on' if s.use_proj else 'off'}") if s.enabled else "TTT off (static weights)"
        dtype = str(next(self.hf.parameters()).dtype).removeprefix("torch.")
        line = (f"model {self.name} ({cfg.model_type}, {cfg.num_hidden_layers} layers, vocab {cfg.vocab_size}); "
                f"{ttt}; dtype {dtype} (fast weights float32); device {device}; {slots} slots per worker; "
                f"context {self.max_seq_len}")
        return line + "".join(f"; {n}" for n in self.notes)


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
                        dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
                        **arch: Any) -> TTTModel:
    """The built-in model: Qwen3-shaped, random, offline, deterministic. It is built on `device`
    in `dtype` directly (a 4B shape never has an fp32 copy on the host); each weight is drawn on
    the CPU in fp32, one tensor at a time, then cast, so the weights are the same on every device."""
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.for_model("qwen3", **{**DEFAULT_ARCH, **arch})
    with torch.device(device):
        hf = AutoModelForCausalLM.from_config(cfg, dtype=dtype, attn_implementation="sdpa")
    _seeded_init(hf, seed)
    hf = hf.to(dtype).eval().requires_grad_(False)       # buffers too (rotary inv_freq), as checkpoints load
    settings = settings.validate_for(cfg.num_hidden_layers)
    conv, proj = random_ttt_params(cfg.hidden_size, tuple(range(cfg.num_hidden_layers)), seed)
    return TTTModel(hf, settings, conv, proj)
