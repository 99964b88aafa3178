"""Named, seeded workload traces: which owners arrive when, with what prompt and length.

An owner's WRITE boundaries fall where its stream crosses a multiple of the chunk C, so its phase is
`len(prompt) % C` (see `boundary_phases`) and owners with equal phases and arrivals WRITE together.
uniform: all owners start together with equal lengths; staggered: owners arrive spaced out
(Poisson gaps of at least one step), so their WRITE boundaries fall at different steps; all_update:
prompt lengths offset so some owner reaches a WRITE boundary at almost every step; mixed: mixed
prompt lengths; poisson: an open arrival process, seeded exponential gaps at `rate` owners per step
(default 2 / C), several owners may share a step; bursty: owners in `num_bursts` groups (round robin),
each group's prompts padded to its own phase offset, so WRITEs come in bursts: a whole group at once,
the groups at different steps (the paper's bursty-update trace, whose shape it does not give).
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

from rwttt_ray.ttt.sampling import Request

TRACES = ("uniform", "staggered", "all_update", "mixed", "poisson", "bursty")


@dataclass(frozen=True, slots=True)
class Trace:
    """Requests plus the engine step at which each arrives."""

    name: str
    requests: tuple[Request, ...]
    arrival_steps: tuple[int, ...]


def _prompt(rng: random.Random, n: int, vocab_lo: int = 35, vocab_hi: int = 125) -> tuple[int, ...]:
    return tuple(rng.randint(vocab_lo, vocab_hi) for _ in range(n))   # printable ASCII as byte ids


def _staggered(rng: random.Random, num_owners: int, chunk: int) -> list[int]:
    arrivals, t = [], 0
    for _ in range(num_owners):
        arrivals.append(t)
        t += max(1, int(rng.expovariate(num_owners / max(chunk, 1))))
    return arrivals


def _poisson(rng: random.Random, num_owners: int, rate: float) -> list[int]:
    """Arrival times of a Poisson process (first at 0), floored to whole steps."""
    arrivals, t = [], 0.0
    for _ in range(num_owners):
        arrivals.append(math.floor(t))
        t += rng.expovariate(rate)
    return arrivals


def burst_offsets(num_owners: int, chunk: int, num_bursts: int) -> list[int]:
    """Per owner, the prompt padding of its burst group: owner i is in group i % num_bursts,
    group g is padded by g * chunk // num_bursts tokens (distinct phases when num_bursts <= chunk)."""
    return [(i % num_bursts) * chunk // num_bursts for i in range(num_owners)]


def default_bursts(num_owners: int, chunk: int) -> int:
    """Four groups at most, each of two owners or more when there are enough owners."""
    return max(1, min(4, chunk, (num_owners + 1) // 2))


def _lengths(name: str, rng: random.Random, num_owners: int, prompt_len: int, chunk: int,
             num_bursts: int | None) -> list[int]:
    if name == "all_update":
        return [prompt_len + (i * max(1, chunk // num_owners)) % chunk for i in range(num_owners)]
    if name == "mixed":
        return [max(1, int(prompt_len * rng.choice((0.25, 0.5, 1.0, 1.5)))) for _ in range(num_owners)]
    if name == "bursty":
        bursts = num_bursts or default_bursts(num_owners, chunk)
        return [prompt_len + off for off in burst_offsets(num_owners, chunk, bursts)]
    return [prompt_len] * num_owners


def make_trace(name: str, num_owners: int, prompt_len: int, gen_len: int, chunk: int, seed: int = 0,
               temperature: float = 0.0, *, rate: float | None = None, num_bursts: int | None = None) -> Trace:
    """The trace `name` (one of TRACES). `rate`: poisson arrivals per step (default 2 / chunk);
    `num_bursts`: bursty's number of phase groups (default `default_bursts`)."""
    if name not in TRACES:
        raise ValueError(f"unknown trace {name!r}; choose one of {', '.join(TRACES)}")
    if num_owners < 1 or prompt_len < 1 or gen_len < 1:
        raise ValueError("owners, prompt length and generation length must all be >= 1")
    if (rate is not None and rate <= 0) or (num_bursts is not None and num_bursts < 1):
        raise ValueError(f"{rate=} must be > 0 and {num_bursts=} >= 1")
    rng = random.Random(seed)
    arrivals = [0] * num_owners
    if name == "staggered":
        arrivals = _staggered(rng, num_owners, chunk)
    elif name == "poisson":
        arrivals = _poisson(rng, num_owners, rate or 2 / max(chunk, 1))
    lengths = _lengths(name, rng, num_owners, prompt_len, chunk, num_bursts)
    reqs = tuple(Request(f"owner-{i}", _prompt(rng, n), gen_len, temperature=temperature, seed=seed + i)
                 for i, n in enumerate(lengths))
    return Trace(name, reqs, tuple(arrivals))


def boundary_phases(trace: Trace, chunk: int) -> tuple[int, ...]:
    """Per owner, `len(prompt) % chunk`: its WRITEs follow the generated tokens i with
    (len(prompt) + i) % chunk == 0, so owners with equal phases (and arrivals) WRITE together."""
    return tuple(len(r.prompt) % chunk for r in trace.requests)
