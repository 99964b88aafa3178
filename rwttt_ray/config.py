"""RwtttConfig: the one validated configuration of rwttt-ray (model, TTT, batching, cluster).

The CLI, the Ray actors and the Serve app all build one of these; core classes receive only
the values they use, by name. `load_model()` turns the model part into a TTTModel.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch

from policies.eviction import EVICTION_NAMES
from policies.fairness import FAIRNESS_NAMES
from policies.grouping import GROUPING_NAMES
from policies.placement import PLACEMENT_NAMES
from rwttt_ray.ttt.checkpoint import TTT_INITS, checkpoint_dtype, load_model, read_config
from rwttt_ray.ttt.model import TTTModel, ModelError, build_default_model
from rwttt_ray.ttt.settings import TARGETS, resolve_settings

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DTYPE_CHOICES = ("auto", *DTYPES)
POLICY_NAMES = {"grouping_policy": GROUPING_NAMES, "placement_policy": PLACEMENT_NAMES,
                "eviction_policy": EVICTION_NAMES, "fairness_policy": FAIRNESS_NAMES}


@dataclass(frozen=True)
class RwtttConfig:
    model: str | None = None
    """Local checkpoint dir (official In-Place-TTT layout or plain Qwen3/Llama); None = built-in tiny model."""
    ttt_layers: tuple[int, ...] | None = None
    """Override: decoder layers whose down_proj is a fast weight."""
    ttt_chunk: int | None = None
    """Override: C, tokens per WRITE."""
    ttt_lr: float | None = None
    """Override: eta."""
    ttt_target: str | None = None
    """Override: 'hidden_states' or 'input_embed'."""
    dtype: str = "float32"
    """Compute dtype ('auto': the checkpoint's); fast weights are always fp32."""
    ttt_init: str = "checkpoint"
    """TTT conv/projection: the checkpoint's tensors ('checkpoint'; missing ones are an error) or
    seeded random ones where the checkpoint lacks them ('random')."""
    max_model_len: int | None = None
    """Context served (prompt + generated), at most the model's; None = the model's."""
    chat_template: str | None = None
    """A Jinja chat template file that overrides the tokenizer's own."""
    generation_config: str = "auto"
    """Default sampling and EOS ids: 'auto' (the model dir's generation_config.json), 'vllm'
    (none: the server's defaults) or a folder holding a generation_config.json."""
    device: str = "cpu"
    """'cpu' or 'cuda'."""
    max_states_per_worker: int = 64
    """Owners a worker holds in device slots at once."""
    max_group_size: int = 64
    """B: target group size."""
    wait_budget_steps: int = 0
    """w: steps a ready step may wait for partners; 0 = greedy."""
    align_rounds: int | None = None
    """READ rounds an owner at a WRITE boundary may sit out so owners that arrived apart WRITE
    together (phases stay long); None = C/2, 0 = never."""
    admit_window_ms: float = 10.0
    """An idle worker woken by a new turn starts its first phase once no other turn arrived for
    this long (ten windows at most), so a burst of requests starts in step; 0 = at once."""
    session_ttl_s: float = 3600.0
    """Seconds a session may stay idle (no turn running) before it expires and its slots are freed."""
    seed: int = 1234
    """Seed of the built-in model's weights."""
    grouping_policy: str = "greedy"
    """'greedy', 'wait_budget' or 'skew_aware'; greedy with wait_budget_steps > 0 waits as wait_budget does."""
    placement_policy: str = "least_loaded"
    """Worker for a new owner: 'least_loaded' (= 'spread'), 'pack' or 'affinity' (stay where the state is)."""
    eviction_policy: str = "lru"
    """Who holds device slots when short: 'lru' or 'tenant_lru' (by tenant weight)."""
    fairness_policy: str = "vtc"
    """Order across tenants: 'vtc' (virtual token counter, weighted) or 'fcfs'."""
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.dtype not in DTYPE_CHOICES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPE_CHOICES)}, got {self.dtype!r}")
        if self.ttt_init not in TTT_INITS:
            raise ValueError(f"ttt init must be one of {', '.join(TTT_INITS)}, got {self.ttt_init!r}")
        if self.max_model_len is not None and self.max_model_len < 2:
            raise ValueError(f"max model len must be >= 2, got {self.max_model_len}")
        if self.chat_template is not None and not os.path.isfile(self.chat_template):
            raise ValueError(f"chat template file {self.chat_template!r} does not exist")
        if self.generation_config not in ("auto", "vllm") and not os.path.isdir(self.generation_config):
            raise ValueError(f"generation config must be 'auto', 'vllm' or a folder, got {self.generation_config!r}")
        if self.ttt_chunk is not None and self.ttt_chunk < 1:
            raise ValueError(f"chunk size must be >= 1, got {self.ttt_chunk}")
        if self.ttt_target is not None and self.ttt_target not in TARGETS:
            raise ValueError(f"ttt target must be one of {TARGETS}, got {self.ttt_target!r}")
        for name in ("max_states_per_worker", "max_group_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.wait_budget_steps < 0:
            raise ValueError(f"wait budget must be >= 0, got {self.wait_budget_steps}")
        if not self.session_ttl_s > 0:
            raise ValueError(f"session ttl must be > 0 s, got {self.session_ttl_s}")
        if self.admit_window_ms < 0:
            raise ValueError(f"admit window must be >= 0 ms, got {self.admit_window_ms}")
        if self.align_rounds is not None and self.align_rounds < 0:
            raise ValueError(f"align rounds must be >= 0, got {self.align_rounds}")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError("device 'cuda' asked for but no CUDA device is available")
        if self.model is not None and not os.path.isdir(self.model):
            raise ValueError(f"model dir {self.model!r} does not exist")
        for name, choices in POLICY_NAMES.items():
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)}, got {getattr(self, name)!r}")

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
        dtype = self.torch_dtype
        if self.model is None:
            model = build_default_model(seed=self.seed)
            try:
                settings, _ = resolve_settings(model.settings, self.ttt_overrides(), model.hf.config.num_hidden_layers,
                                               "the built-in model")
            except ValueError as exc:
                raise ModelError(str(exc)) from None
            model = model.with_settings(settings)
        else:
            model = load_model(self.model, self.ttt_overrides(), seed=self.seed, ttt_init=self.ttt_init)
        if self.max_model_len is not None:
            if self.max_model_len > model.max_seq_len:
                raise ModelError(f"--max-model-len {self.max_model_len} is over the model's context "
                                 f"{model.max_seq_len} (max_position_embeddings)")
            model.context_limit = self.max_model_len
        model.hf.to(device=self.device, dtype=dtype)
        model.conv = {i: t.to(self.device) for i, t in model.conv.items()}
        model.proj = {i: t.to(self.device) for i, t in model.proj.items()}
        return model


__all__ = ["RwtttConfig", "ModelError"]
