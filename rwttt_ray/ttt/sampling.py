"""Requests and token sampling, shared by the engine, the sequential reference and baselines.

Greedy when temperature == 0; otherwise temperature + top-p drawn from a generator seeded by
(request seed, token index): a seeded request draws the same tokens whatever it is batched with,
and a replay or a migrated owner needs no sampler state beyond its token count.
"""
from __future__ import annotations

import torch

from rwttt_ray.core.request import Request

__all__ = ["Request", "sample"]


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
