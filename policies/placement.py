"""Placement policies: which worker an owner goes to. Pure.

The scheduler passes each worker's load (`WorkerLoad`) and, where it knows one, the owner's
`home`: the worker that already holds its state (a session's fast weights, KV cache and token
log). least_loaded (alias spread) spreads owners; pack fills one worker first; affinity keeps an
owner at home, falling back to least_loaded when home is dead or full.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Protocol

__all__ = ["PLACEMENT_NAMES", "LeastLoaded", "Pack", "PlacementPolicy", "SessionAffinity", "Spread",
           "WorkerLoad", "make_placement"]


@dataclass(frozen=True, slots=True)
class WorkerLoad:
    num_owners: int     # owners placed there (resident or spilled)
    capacity: int       # device slots
    alive: bool = True

    @property
    def has_free_slot(self) -> bool:
        return self.num_owners < self.capacity


class PlacementPolicy(Protocol):
    """Chooses a live worker for an owner; raises RuntimeError when none is alive."""

    name: str

    def choose(self, owner_id: str, workers: Mapping[str, WorkerLoad], home: str | None = None) -> str:
        """The worker for `owner_id`; `home`: the worker holding its state, if any (a hint)."""
        ...


def _alive(workers: Mapping[str, WorkerLoad]) -> dict[str, WorkerLoad]:
    live = {w: load for w, load in workers.items() if load.alive}
    if not live:
        raise RuntimeError("no live worker to place an owner on")
    return live


class LeastLoaded:
    """The worker with the lowest owners/capacity (ties: the first by name): spreads owners."""

    name = "least_loaded"

    def choose(self, owner_id: str, workers: Mapping[str, WorkerLoad], home: str | None = None) -> str:
        live = _alive(workers)
        return min(sorted(live), key=lambda w: live[w].num_owners / max(1, live[w].capacity))


class Spread(LeastLoaded):
    """least_loaded under the name other schedulers use for it (Ray's SPREAD)."""

    name = "spread"


class Pack:
    """Fill one worker's device slots before using the next (fewer workers busy)."""

    name = "pack"

    def choose(self, owner_id: str, workers: Mapping[str, WorkerLoad], home: str | None = None) -> str:
        live = _alive(workers)
        for w in sorted(live):
            if live[w].has_free_slot:
                return w
        return LeastLoaded().choose(owner_id, live)


class SessionAffinity:
    """Keep an owner on the worker that already holds its state; else least_loaded.

    The home comes from `choose(home=...)` or, failing that, the `homes` map given at
    construction (owner -> worker). A dead, unknown or full home falls back to least_loaded.
    NOTE: "full" reads `num_owners`, so the caller should not count the owner being placed.
    """

    name = "affinity"

    def __init__(self, homes: Mapping[str, str] | None = None) -> None:
        self.homes: Mapping[str, str] = homes if homes is not None else {}

    def choose(self, owner_id: str, workers: Mapping[str, WorkerLoad], home: str | None = None) -> str:
        home = home or self.homes.get(owner_id)
        load = workers.get(home) if home is not None else None
        if home is not None and load is not None and load.alive and load.has_free_slot:
            return home
        return LeastLoaded().choose(owner_id, workers)


_POLICIES: dict[str, type[PlacementPolicy]] = {p.name: p for p in (LeastLoaded, Spread, Pack, SessionAffinity)}
PLACEMENT_NAMES = tuple(_POLICIES)


def make_placement(name: str) -> PlacementPolicy:
    """A placement policy by name: "least_loaded", "spread", "pack" or "affinity"."""
    if name not in _POLICIES:
        raise ValueError(f"unknown placement policy {name!r}; choose one of {', '.join(PLACEMENT_NAMES)}")
    return _POLICIES[name]()
