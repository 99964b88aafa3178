"""Placement policies: which worker a new owner goes to. Pure."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Protocol


@dataclass(frozen=True, slots=True)
class WorkerLoad:
    num_owners: int     # owners placed there (resident or spilled)
    capacity: int       # device slots
    alive: bool = True


class PlacementPolicy(Protocol):
    name: str

    def choose(self, owner_id: str, workers: Mapping[str, WorkerLoad]) -> str: ...


def _alive(workers: Mapping[str, WorkerLoad]) -> dict[str, WorkerLoad]:
    live = {w: l for w, l in workers.items() if l.alive}
    if not live:
        raise RuntimeError("no live worker to place an owner on")
    return live


class LeastLoaded:
    """The worker with the lowest owners/capacity (ties: the first by name): spreads owners."""

    name = "least_loaded"

    def choose(self, owner_id, workers):
        live = _alive(workers)
        return min(sorted(live), key=lambda w: live[w].num_owners / max(1, live[w].capacity))


class Pack:
    """Fill one worker's device slots before using the next (fewer workers busy)."""

    name = "pack"

    def choose(self, owner_id, workers):
        live = _alive(workers)
        for w in sorted(live):
            if live[w].num_owners < live[w].capacity:
                return w
        return LeastLoaded().choose(owner_id, live)


def make_placement(name: str) -> PlacementPolicy:
    policies = {"least_loaded": LeastLoaded, "pack": Pack}
    if name not in policies:
        raise ValueError(f"unknown placement policy {name!r}; choose one of {', '.join(policies)}")
    return policies[name]()
