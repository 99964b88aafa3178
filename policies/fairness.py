"""Fairness policies: in what order the backlogged owners of many tenants are admitted or served. Pure.

vtc, the virtual token counter (S-LoRA's VTC, as in aibrix and llm-d): each tenant has a counter
that advances by tokens served / weight; `order` keeps picking the backlogged tenant with the lowest
(projected) counter, so served tokens converge to the weight shares. A tenant that becomes
backlogged after idling is lifted to the lowest counter of the active tenants: idle time is not
banked. fcfs: arrival order, the baseline. The caller calls `order` once a round with every
backlogged owner, serves a prefix of the answer, and `charge`s each tenant the tokens served.
"""
from __future__ import annotations

import heapq
from collections import deque
from typing import Iterable, Mapping, Protocol, Sequence

__all__ = ["FAIRNESS_NAMES", "Candidate", "FairnessPolicy", "FirstComeFirstServed", "VirtualTokenCounter",
           "make_fairness"]

Candidate = tuple[str, str]   # (owner_id, tenant_id) of a backlogged owner


class FairnessPolicy(Protocol):
    """Orders backlogged owners across tenants and learns from the tokens actually served."""

    name: str

    def order(self, candidates: Sequence[Candidate], cost: Mapping[str, int] | None = None) -> list[str]:
        """Owner ids, first to serve first. `candidates`: every backlogged owner, in arrival
        order; `cost`: tokens each owner would be served (default 1)."""
        ...

    def charge(self, tenant_id: str, tokens: int) -> None:
        """Record `tokens` served to the tenant."""
        ...


class FirstComeFirstServed:
    """Arrival order; tenants are ignored (a flooding tenant takes what it floods)."""

    name = "fcfs"

    def order(self, candidates: Sequence[Candidate], cost: Mapping[str, int] | None = None) -> list[str]:
        return [owner_id for owner_id, _ in candidates]

    def charge(self, tenant_id: str, tokens: int) -> None:
        _check_tokens(tokens)


class VirtualTokenCounter:
    """Token-level weighted fair share: serve the backlogged tenant with the lowest counter."""

    name = "vtc"

    def __init__(self, weights: Mapping[str, float] | None = None, default_weight: float = 1.0) -> None:
        for tenant_id, weight in {**(weights or {}), "(default)": default_weight}.items():
            if weight <= 0:
                raise ValueError(f"weight of tenant {tenant_id!r} must be > 0, got {weight}")
        self.weights = dict(weights or {})
        self.default_weight = default_weight
        self.counters: dict[str, float] = {}      # tenant -> virtual tokens (tokens / weight)
        self._backlogged: frozenset[str] = frozenset()
        self._floor = 0.0                         # lowest counter of the last non-empty backlog

    def weight(self, tenant_id: str) -> float:
        return self.weights.get(tenant_id, self.default_weight)

    def charge(self, tenant_id: str, tokens: int) -> None:
        _check_tokens(tokens)
        self.counters[tenant_id] = self.counters.get(tenant_id, self._floor) + tokens / self.weight(tenant_id)

    def order(self, candidates: Sequence[Candidate], cost: Mapping[str, int] | None = None) -> list[str]:
        queues: dict[str, deque[str]] = {}
        for owner_id, tenant_id in candidates:
            queues.setdefault(tenant_id, deque()).append(owner_id)
        self._lift(queues.keys())
        # (projected counter, first appearance, tenant): ties go to the tenant that arrived first
        heap = [(self.counters[t], i, t) for i, t in enumerate(queues)]
        heapq.heapify(heap)
        out: list[str] = []
        while heap:
            counter, i, tenant_id = heapq.heappop(heap)
            owner_id = queues[tenant_id].popleft()
            out.append(owner_id)
            if queues[tenant_id]:
                projected = counter + (cost or {}).get(owner_id, 1) / self.weight(tenant_id)
                heapq.heappush(heap, (projected, i, tenant_id))
        return out

    def _lift(self, backlogged: Iterable[str]) -> None:
        """Lift tenants backlogged since the last call to the lowest counter of the active ones."""
        now = frozenset(backlogged)
        self._floor = min((self.counters[t] for t in self._backlogged), default=self._floor)
        floor = min((self.counters[t] for t in now & self._backlogged), default=self._floor)
        for tenant_id in now - self._backlogged:
            self.counters[tenant_id] = max(self.counters.get(tenant_id, 0.0), floor)
        self._backlogged = now


def _check_tokens(tokens: int) -> None:
    if tokens < 0:
        raise ValueError(f"{tokens=} must be >= 0")


FAIRNESS_NAMES = (VirtualTokenCounter.name, FirstComeFirstServed.name)


def make_fairness(name: str, weights: Mapping[str, float] | None = None) -> FairnessPolicy:
    """A fairness policy by name: "vtc" (per-tenant `weights`, default 1) or "fcfs" (ignores them)."""
    if name == VirtualTokenCounter.name:
        return VirtualTokenCounter(weights)
    if name == FirstComeFirstServed.name:
        return FirstComeFirstServed()
    raise ValueError(f"unknown fairness policy {name!r}; choose one of {', '.join(FAIRNESS_NAMES)}")
