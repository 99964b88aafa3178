"""ServedModel: what the HTTP front knows of the model it serves (no weights, no ray).

Its names (`--served-model-name`, the first one answers), its text codec (tokenizer plus chat
template), the context it serves (`--max-model-len`, at most the model's) and its generation
defaults (EOS ids and sampling defaults from generation_config.json).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rwttt_ray.config import ModelConfig
from rwttt_ray.text.codec import TextCodec, read_chat_template
from rwttt_ray.text.generation import GenerationDefaults, load_generation_config
from rwttt_ray.ttt.checkpoint import load_tokenizer, read_config
from rwttt_ray.ttt.model import DEFAULT_ARCH, DEFAULT_NAME, ModelError
from rwttt_ray.ttt.tokenizer import ByteTokenizer


@dataclass(frozen=True)
class ServedModel:
    names: tuple[str, ...]
    codec: TextCodec
    max_len: int
    defaults: GenerationDefaults

    @property
    def name(self) -> str:
        return self.names[0]

    @property
    def eos_ids(self) -> tuple[int, ...]:
        """Ids that end generation unless a request sets ignore_eos: the tokenizer's EOS and the
        generation config's `eos_token_id` (an int or a list)."""
        return tuple(dict.fromkeys((*self.codec.eos_ids, *self.defaults.eos_ids)))


def served_model(config: ModelConfig, names: str | list[str] | tuple[str, ...] | None = None) -> ServedModel:
    """The served model of `config`, without loading its weights."""
    if config.model is None:
        tokenizer, context, default_name = ByteTokenizer(), DEFAULT_ARCH["max_position_embeddings"], DEFAULT_NAME
    else:
        cfg = read_config(config.model)
        tokenizer, context = load_tokenizer(config.model, cfg.get("vocab_size", 0)), int(cfg.get("max_position_embeddings", 2048))
        default_name = Path(config.model).name
    if config.max_model_len is not None:
        if config.max_model_len > context:
            raise ModelError(f"--max-model-len {config.max_model_len} is over the model's context {context}")
        context = config.max_model_len
    names = (names,) if isinstance(names, str) else tuple(names or ())
    codec = TextCodec(tokenizer, read_chat_template(config.chat_template))
    return ServedModel(names or (default_name,), codec, context,
                       load_generation_config(config.generation_config, config.model))
