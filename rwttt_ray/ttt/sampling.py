"""Requests and token sampling, shared by the engine, the sequential reference and baselines.

Greedy when temperature == 0; otherwise temperature + top-p drawn from a generator seeded by
(request seed, token index): a seeded request draws the same tokens whatever it is batched with,
and a replay or a migrated owner needs no sampler state beyond its token count.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True, slots=True)
class Request:
    """One owner's generation job."""

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


def sample(logits: torch.Tensor, req: Request, index: int) -> int:
    """The `index`-th generated token of `req` from last-position logits [V]."""
    if req.temperature == 0:
        return int(torch.argmax(logits).item())
    probs = torch.softmax(logits.float() / req.temperature, dim=-1)
    if req.top_p < 1:
        sorted_p, idx = torch.sort(probs, descending=True)
        keep = torch.cumsum(sorted_p, 0) - sorted_p < req.top_p
        probs = torch.zeros_like(probs).scatter_(0, idx[keep], sorted_p[keep])
    gen = torch.Generator().manual_seed((int(req.seed) * 1_000_003 + index) % (2**63))
    return int(torch.multinomial(probs.cpu(), 1, generator=gen).item())
