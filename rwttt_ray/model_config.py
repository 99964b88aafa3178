"""ModelConfig: the model part of the configuration (checkpoint or built-in architecture, TTT
overrides, dtype, device, CUDA graphs, context, chat template, seed) and its loading into a
TTTModel; the shared checks `_at_least` and `_one_of` of every config section (rwttt_ray.config).
"""
from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass

import torch

from rwttt_ray.ttt.checkpoint import TTT_INITS, checkpoint_dtype, load_model, read_config
from rwttt_ray.ttt.model import DEFAULT_ARCH, TTTModel, ModelError, build_default_model
from rwttt_ray.ttt.settings import TARGETS, resolve_settings

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DTYPE_CHOICES = ("auto", *DTYPES)
DEFAULT_SEED = 1234          # the built-in model's weights when no seed is given
# The built-in model's architectures (transformers Qwen3 config keys), random weights built in memory.
# qwen3-4b: Qwen3-4B's shapes (the RW-TTT paper's model); its vocab is Qwen3's, so ids past the byte
# tokenizer's 259 decode to nothing: fine for the bench (prompts are token ids), not for serving text.
QWEN3_4B_ARCH = dict(vocab_size=151936, hidden_size=2560, intermediate_size=9728, num_hidden_layers=36,
                     num_attention_heads=32, num_key_value_heads=8, head_dim=128, max_position_embeddings=40960,
                     tie_word_embeddings=True, rope_theta=1000000.0, rms_norm_eps=1e-6)
BUILTIN_ARCHS = {"tiny": dict(DEFAULT_ARCH), "qwen3-4b": QWEN3_4B_ARCH}


def _at_least(obj, least: float, *names: str, strict: bool = False) -> None:
    """Each knob of `names` >= `least` (`strict`: > least), else a ValueError naming it."""
    for name in names:
        value = getattr(obj, name)
        if value is not None and (value <= least if strict else value < least):
            label = re.sub(r"_(steps|ms|s|gib)$", "", name).replace("_", " ")
            raise ValueError(f"{label} must be {'>' if strict else '>='} {least:g}, got {value}")


def _one_of(obj, name: str, choices) -> None:
    if getattr(obj, name) not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {getattr(obj, name)!r}")


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    model: str | None = None
    """Local checkpoint dir (official In-Place-TTT layout or plain Qwen3/Llama); None = the built-in model."""
    builtin_arch: str = "tiny"
    """The built-in model's architecture (without `model`): 'tiny' or 'qwen3-4b' (Qwen3-4B's shapes,
    random weights: ~4 B parameters, initialised in fp32 on the CPU: 16 GB of RAM and a minute or two)."""
    ttt_layers: tuple[int, ...] | None = None
    """Override: decoder layers whose down_proj is a fast weight."""
    ttt_chunk: int | None = None
    """Override: C, tokens per WRITE."""
    ttt_lr: float | None = None
    """Override: eta."""
    ttt_target: str | None = None
    """Override: 'hidden_states' or 'input_embed'."""
    ttt_init: str = "checkpoint"
    """TTT conv/projection: the checkpoint's tensors ('checkpoint'; missing ones are an error) or
    seeded random ones where the checkpoint lacks them ('random')."""
    dtype: str = "float32"
    """Compute dtype ('auto': the checkpoint's); fast weights are always fp32."""
    device: str = "cpu"
    """'cpu' or 'cuda'."""
    enforce_eager: bool = False
    """Decode rounds run eagerly: no CUDA graphs (vLLM's --enforce-eager); on CPU rounds are always eager."""
    max_model_len: int | None = None
    """Context served (prompt + generated), at most the model's; None = the model's."""
    chat_template: str | None = None
    """A Jinja chat template file that overrides the tokenizer's own."""
    generation_config: str = "auto"
    """Default sampling and EOS ids: 'auto' (the model dir's generation_config.json), 'vllm'
    (none: the server's defaults) or a folder holding a generation_config.json."""
    seed: int | None = None
    """Seed of the built-in weights and of --ttt-init random (None: 1234), and of HTTP requests
    sent without one (None: unseeded)."""

    def __post_init__(self) -> None:
        if self.ttt_layers is not None:
            object.__setattr__(self, "ttt_layers", tuple(self.ttt_layers))    # a YAML list
        _one_of(self, "dtype", DTYPE_CHOICES)
        _one_of(self, "ttt_init", TTT_INITS)
        _one_of(self, "builtin_arch", BUILTIN_ARCHS)
        if self.model is not None and self.builtin_arch != "tiny":
            raise ValueError(f"builtin_arch {self.builtin_arch!r} is the built-in model's; model {self.model!r} "
                             "is a checkpoint with its own architecture: give one of them")
        _at_least(self, 2, "max_model_len")
        _at_least(self, 1, "ttt_chunk")
        if self.ttt_target is not None:
            _one_of(self, "ttt_target", TARGETS)

    def check_environment(self) -> None:
        """What this machine must have to load the model (ValueError naming what is missing)."""
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError("device 'cuda' asked for but no CUDA device is available")
        if self.model is not None and not os.path.isdir(self.model):
            raise ValueError(f"model dir {self.model!r} does not exist")
        if self.chat_template is not None and not os.path.isfile(self.chat_template):
            raise ValueError(f"chat template file {self.chat_template!r} does not exist")
        if self.generation_config not in ("auto", "vllm") and not os.path.isdir(self.generation_config):
            raise ValueError(f"generation config must be 'auto', 'vllm' or a folder, got {self.generation_config!r}")

    @property
    def weights_seed(self) -> int:
        return DEFAULT_SEED if self.seed is None else self.seed

    def ttt_overrides(self) -> dict:
        return {"layers": self.ttt_layers, "chunk": self.ttt_chunk, "lr": self.ttt_lr, "target": self.ttt_target}

    @property
    def torch_dtype(self) -> torch.dtype:
        """The compute dtype; 'auto' resolves to the checkpoint's (the built-in model: float32)."""
        if self.dtype != "auto":
            return DTYPES[self.dtype]
        return DTYPES[checkpoint_dtype(read_config(self.model))] if self.model else torch.float32

    def load_model(self) -> TTTModel:
        """The model this config names, on its device and dtype (raises ModelError/ValueError)."""
        self.check_environment()
        dtype = self.torch_dtype
        if self.model is None:
            model = self._builtin_model(dtype)
        else:
            model = load_model(self.model, self.ttt_overrides(), seed=self.weights_seed, ttt_init=self.ttt_init)
        if self.max_model_len is not None:
            if self.max_model_len > model.max_seq_len:
                raise ModelError(f"--max-model-len {self.max_model_len} is over the model's context "
                                 f"{model.max_seq_len} (max_position_embeddings)")
            model.context_limit = self.max_model_len
        model.hf.to(device=self.device, dtype=dtype)
        model.conv = {i: t.to(self.device) for i, t in model.conv.items()}
        model.proj = {i: t.to(self.device) for i, t in model.proj.items()}
        return model

    def _builtin_model(self, dtype: torch.dtype) -> TTTModel:
        """The built-in model of `builtin_arch`, built on the device in `dtype` (weights drawn on the CPU)."""
        model = build_default_model(seed=self.weights_seed, dtype=dtype, device=self.device,
                                    **BUILTIN_ARCHS[self.builtin_arch])
        try:
            settings, _ = resolve_settings(model.settings, self.ttt_overrides(), model.hf.config.num_hidden_layers,
                                           "the built-in model")
        except ValueError as exc:
            raise ModelError(str(exc)) from None
        if self.builtin_arch != "tiny":
            model = dataclasses.replace(model, name=f"rwttt-{self.builtin_arch}-random")
        return model.with_settings(settings)
