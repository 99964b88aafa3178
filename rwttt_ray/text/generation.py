"""A checkpoint's generation_config.json: its EOS ids and the sampling defaults it asks for.

As `vllm serve --generation-config`: 'auto' reads the model dir's file, 'vllm' reads none (the
server's own defaults), a folder reads that folder's. `eos_token_id` may be an int or a list;
those ids end generation beside the tokenizer's EOS. The defaults apply to a request that does
not set the field itself; keys rwttt does not apply are named (they go on the start-up line).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# generation_config key -> request field it is the default of
APPLIED = {"temperature": "temperature", "top_p": "top_p", "top_k": "top_k",
           "repetition_penalty": "repetition_penalty", "max_new_tokens": "max_tokens"}
INERT = {"eos_token_id", "bos_token_id", "pad_token_id", "decoder_start_token_id", "transformers_version",
         "_from_model_config", "use_cache"}


@dataclass(frozen=True)
class GenerationDefaults:
    eos_ids: tuple[int, ...] = ()
    sampling: dict[str, Any] = field(default_factory=dict)   # request field -> default value
    ignored: tuple[str, ...] = ()                            # keys present that rwttt does not apply
    source: str | None = None                                # the file read, if any

    def describe(self) -> str:
        if self.source is None:
            return "generation config: none"
        parts = [f"eos {list(self.eos_ids)}"] + [f"{k}={v}" for k, v in sorted(self.sampling.items())]
        if self.ignored:
            parts.append(f"not applied: {', '.join(self.ignored)}")
        return f"generation config {self.source}: " + ", ".join(parts)


def _ids(value: Any) -> tuple[int, ...]:
    if value is None:
        return ()
    return tuple(int(v) for v in value) if isinstance(value, (list, tuple)) else (int(value),)


def load_generation_config(setting: str, model_dir: str | None) -> GenerationDefaults:
    """The defaults `setting` ('auto', 'vllm' or a folder) names for the model in `model_dir`."""
    if setting == "vllm" or (setting == "auto" and model_dir is None):
        return GenerationDefaults()
    folder = Path(model_dir if setting == "auto" else setting)
    path = folder / "generation_config.json"
    if not path.is_file():
        if setting == "auto":
            return GenerationDefaults()
        raise ValueError(f"--generation-config {setting}: no generation_config.json there")
    try:
        cfg = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not JSON: {exc}") from None
    sampling = {field_: cfg[key] for key, field_ in APPLIED.items() if cfg.get(key) is not None}
    ignored = tuple(sorted(k for k in cfg if k not in APPLIED and k not in INERT))
    return GenerationDefaults(_ids(cfg.get("eos_token_id")), sampling, ignored, str(path))
