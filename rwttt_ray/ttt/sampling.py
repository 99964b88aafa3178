"""Requests and token sampling, shared by the engine, the sequential reference and baselines.

Per token: the logits are shaped (logit bias, then the penalties: OpenAI's presence/frequency
over the turn's generated tokens, vLLM's repetition penalty over the whole stream), then the
token is the argmax (temperature < 1e-5) or drawn after temperature, top-k and top-p from a
generator seeded by (request seed, token index): a seeded request draws the same tokens whatever
it is batched with, and a replay or a migrated owner needs no sampler state beyond its tokens.
Logprobs are a log-softmax of the model's raw logits (as vLLM reports them by default).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from rwttt_ray.core.request import Request

__all__ = ["Request", "sample", "shape_logits", "token_logprobs"]

TokenLogprobs = tuple[float, tuple[tuple[int, float], ...]]   # chosen token's, then the top (id, logprob)


def shape_logits(logits: torch.Tensor, req: Request, generated: Sequence[int] = (),
                 stream: Sequence[int] = ()) -> torch.Tensor:
    """The logits the sampler draws from; `generated`: this turn's tokens, `stream`: all tokens."""
    if not req.shapes_logits:
        return logits
    x = logits.float().clone()
    vocab = x.shape[-1]
    if req.logit_bias:
        ids = torch.tensor([t for t, _ in req.logit_bias if t < vocab], dtype=torch.long, device=x.device)
        x.index_add_(0, ids, torch.tensor([b for t, b in req.logit_bias if t < vocab], dtype=x.dtype,
                                          device=x.device))
    if req.repetition_penalty != 1.0 and stream:
        seen = torch.tensor(sorted({t for t in stream if t < vocab}), dtype=torch.long, device=x.device)
        vals = x[seen]
        x[seen] = torch.where(vals > 0, vals / req.repetition_penalty, vals * req.repetition_penalty)
    if (req.presence_penalty or req.frequency_penalty) and generated:
        counts = torch.bincount(torch.tensor(list(generated), dtype=torch.long, device=x.device),
                                minlength=vocab)[:vocab].to(x.dtype)
        x -= req.frequency_penalty * counts + req.presence_penalty * (counts > 0).to(x.dtype)
    return x


def sample(logits: torch.Tensor, req: Request, index: int, generated: Sequence[int] = (),
           stream: Sequence[int] = ()) -> int:
    """The `index`-th generated token of `req` from last-position logits [V]."""
    logits = shape_logits(logits, req, generated, stream)
    if req.greedy:
        return int(torch.argmax(logits).item())
    scaled = logits.float() / req.temperature
    if 0 < req.top_k < scaled.shape[-1]:
        kth = torch.topk(scaled, req.top_k).values[-1]
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    probs = torch.softmax(scaled, dim=-1)
    if req.top_p < 1:
        sorted_p, idx = torch.sort(probs, descending=True)
        keep = torch.cumsum(sorted_p, 0) - sorted_p < req.top_p
        keep[0] = True          # the most likely token always stays (a top_p under fp32's range keeps none)
        probs = torch.zeros_like(probs).scatter_(0, idx[keep], sorted_p[keep])
    gen = torch.Generator().manual_seed((int(req.seed) * 1_000_003 + index) % (2**63))
    return int(torch.multinomial(probs.cpu(), 1, generator=gen).item())


def token_logprobs(logits: torch.Tensor, token: int, top: int) -> TokenLogprobs:
    """log-softmax of the raw logits: the chosen token's value and the `top` most likely tokens."""
    lp = torch.log_softmax(logits.float(), dim=-1)
    chosen = float(lp[token])
    if top <= 0:
        return chosen, ()
    values, ids = torch.topk(lp, min(top, lp.shape[-1]))
    return chosen, tuple(zip(ids.tolist(), values.tolist()))
