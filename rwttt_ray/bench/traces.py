"""Named, seeded workload traces: which owners arrive when, with what prompt and length.

uniform: all owners start together with equal lengths; staggered: owners arrive spaced out
(Poisson gaps), so their WRITE boundaries fall at different steps; all_update: prompt lengths
offset so some owner reaches a WRITE boundary at almost every step; mixed: mixed prompt lengths.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from rwttt_ray.ttt.sampling import Request

TRACES = ("uniform", "staggered", "all_update", "mixed")


@dataclass(frozen=True, slots=True)
class Trace:
    """Requests plus the engine step at which each arrives."""

    name: str
    requests: tuple[Request, ...]
    arrival_steps: tuple[int, ...]


def _prompt(rng: random.Random, n: int, vocab_lo: int = 35, vocab_hi: int = 125) -> tuple[int, ...]:
    return tuple(rng.randint(vocab_lo, vocab_hi) for _ in range(n))   # printable ASCII as byte ids


def make_trace(name: str, num_owners: int, prompt_len: int, gen_len: int, chunk: int, seed: int = 0,
               temperature: float = 0.0) -> Trace:
    if name not in TRACES:
        raise ValueError(f"unknown trace {name!r}; choose one of {', '.join(TRACES)}")
    if num_owners < 1 or prompt_len < 1 or gen_len < 1:
        raise ValueError("owners, prompt length and generation length must all be >= 1")
    rng = random.Random(seed)
    lengths, arrivals = [prompt_len] * num_owners, [0] * num_owners
    if name == "staggered":
        t = 0
        for i in range(num_owners):
            arrivals[i] = t
            t += max(1, int(rng.expovariate(num_owners / max(chunk, 1))))
    elif name == "all_update":
        lengths = [prompt_len + (i * max(1, chunk // num_owners)) % chunk for i in range(num_owners)]
    elif name == "mixed":
        lengths = [max(1, int(prompt_len * rng.choice((0.25, 0.5, 1.0, 1.5)))) for _ in range(num_owners)]
    reqs = tuple(Request(f"owner-{i}", _prompt(rng, n), gen_len, temperature=temperature, seed=seed + i)
                 for i, n in enumerate(lengths))
    return Trace(name, reqs, tuple(arrivals))
