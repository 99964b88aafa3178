"""Residency (eviction/spill) policies: which owners hold a worker's device slots next phase. Pure.

lru: LRU with pinning: residents with work keep their slots; free slots go to waiting owners, pinned
first, then by `priority` (lower first; e.g. a fairness order), then least recently run. When owners wait and a resident has held its slot for more than
`quantum_steps`, the longest-resident one is spilled (to the host tier) so nobody starves.
tenant_lru: the same order inside each tenant; when slots are short, the tenant holding the most
slots relative to its weight gives one up first (a waiting owner passed over, or a resident
spilled). Pinned residents never spill.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Protocol

__all__ = ["EVICTION_NAMES", "LRUResidency", "Residency", "ResidencyPolicy", "TenantLRUResidency",
           "make_residency"]


@dataclass(frozen=True, slots=True)
class Residency:
    owner_id: str
    resident: bool          # in a device slot now
    has_work: bool          # a step to run (not finished)
    last_run_step: int      # scheduler step it last ran
    resident_since: int     # scheduler step it got its slot
    pinned: bool = False
    tenant_id: str = ""     # who pays; tenant_lru shares slots by tenant weight
    priority: int = 0       # waiting owners: lower gets a slot first (e.g. a fairness rank)


class ResidencyPolicy(Protocol):
    """Chooses at most `capacity` owners with work to hold device slots at `step`."""

    name: str

    def residents(self, owners: list[Residency], capacity: int, step: int) -> tuple[str, ...]: ...


class LRUResidency:
    name = "lru"

    def __init__(self, quantum_steps: int | None = None) -> None:
        self.quantum_steps = quantum_steps

    def residents(self, owners: list[Residency], capacity: int, step: int) -> tuple[str, ...]:
        active = [o for o in owners if o.has_work]
        keep = [o for o in active if o.resident]
        waiting = sorted((o for o in active if not o.resident), key=_waiting_order)
        if waiting and self.quantum_steps is not None:
            stale = sorted((o for o in keep if not o.pinned and step - o.resident_since > self.quantum_steps),
                           key=lambda o: o.resident_since)
            for o in stale[:max(0, len(keep) + len(waiting) - capacity)]:
                keep.remove(o)
        chosen = keep[:capacity] + waiting[:max(0, capacity - len(keep))]
        return tuple(o.owner_id for o in chosen)


class TenantLRUResidency:
    """Slots shared by tenant weight; inside a tenant, the lru order decides who gives one up."""

    name = "tenant_lru"

    def __init__(self, quantum_steps: int | None = None, weights: Mapping[str, float] | None = None) -> None:
        for tenant_id, weight in (weights or {}).items():
            if weight <= 0:
                raise ValueError(f"weight of tenant {tenant_id!r} must be > 0, got {weight}")
        self.quantum_steps = quantum_steps
        self.weights = dict(weights or {})

    def residents(self, owners: list[Residency], capacity: int, step: int) -> tuple[str, ...]:
        active = [o for o in owners if o.has_work]
        ranked: dict[str, list[Residency]] = {}
        for o in active:
            ranked.setdefault(o.tenant_id, []).append(o)
        ranked = {t: self._rank(members, step) for t, members in ranked.items()}
        for _ in range(len(active) - capacity):
            tenant_id = self._most_over_share(ranked)
            if tenant_id is None:
                break                                  # only pinned residents left
            ranked[tenant_id].pop()
        chosen = {o.owner_id for members in ranked.values() for o in members}
        keep = [o for o in active if o.resident and o.owner_id in chosen]
        new = sorted((o for o in active if not o.resident and o.owner_id in chosen),
                     key=_waiting_order)
        # NOTE: pinned residents beyond capacity are cut last; the slot count is a hard limit
        return tuple(o.owner_id for o in keep + new)[:capacity]

    def _rank(self, members: list[Residency], step: int) -> list[Residency]:
        """One tenant's owners, most deserving first: pinned residents, residents, waiting (lru),
        then residents past their quantum (the longest-resident last)."""
        def is_stale(o: Residency) -> bool:
            return (self.quantum_steps is not None and not o.pinned
                    and step - o.resident_since > self.quantum_steps)

        residents = [o for o in members if o.resident]
        pinned = [o for o in residents if o.pinned]
        fresh = [o for o in residents if not o.pinned and not is_stale(o)]
        stale = sorted((o for o in residents if is_stale(o)), key=lambda o: o.resident_since)[::-1]
        waiting = sorted((o for o in members if not o.resident), key=_waiting_order)
        return pinned + fresh + waiting + stale

    def _most_over_share(self, ranked: Mapping[str, list[Residency]]) -> str | None:
        """The tenant holding the most slots per unit weight that can give one up; ties prefer
        passing over a waiting owner to spilling a resident."""
        def can_give(t: str) -> bool:
            return bool(ranked[t]) and not (ranked[t][-1].resident and ranked[t][-1].pinned)

        def share(t: str) -> tuple[float, bool, str]:
            return len(ranked[t]) / self.weights.get(t, 1.0), not ranked[t][-1].resident, t

        return max(filter(can_give, ranked), key=share, default=None)


def _waiting_order(o: Residency) -> tuple[bool, int, int]:
    """Who of the waiting owners gets a free slot first: pinned, then priority, then LRU."""
    return not o.pinned, o.priority, o.last_run_step


EVICTION_NAMES = (LRUResidency.name, TenantLRUResidency.name)


def make_residency(name: str, quantum_steps: int | None = None,
                   weights: Mapping[str, float] | None = None) -> ResidencyPolicy:
    """A residency policy by name: "lru" (ignores weights) or "tenant_lru"."""
    if name == LRUResidency.name:
        return LRUResidency(quantum_steps)
    if name == TenantLRUResidency.name:
        return TenantLRUResidency(quantum_steps, weights)
    raise ValueError(f"unknown eviction policy {name!r}; choose one of {', '.join(EVICTION_NAMES)}")
