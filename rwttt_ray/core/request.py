"""Request: one owner's generation job, as plain data (crosses actors and processes)."""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True, slots=True)
class Request:
    owner_id: str
    prompt: tuple[int, ...]          # token ids fed before generation
    max_new_tokens: int              # tokens to generate
    temperature: float = 0.0         # 0 = greedy
    top_p: float = 1.0               # nucleus mass kept when sampling
    seed: int = 0                    # per-owner sampling seed
    stop_ids: tuple[int, ...] = ()   # generation ends after emitting one of these

    def __post_init__(self) -> None:
        if not self.prompt:
            raise ValueError("prompt must not be empty")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError("temperature must be >= 0 and top_p in (0, 1]")

    def to_dict(self) -> dict:
        """Plain lists and numbers (msgpack/JSON-able), for the directory."""
        d = asdict(self)
        d["prompt"], d["stop_ids"] = list(self.prompt), list(self.stop_ids)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Request":
        return cls(**{**d, "prompt": tuple(d["prompt"]), "stop_ids": tuple(d.get("stop_ids", ()))})
