"""Residency (eviction/spill) policy: which owners hold a worker's device slots next phase. Pure.

LRU with pinning: residents with work keep their slots; free slots go to waiting owners, pinned
first, then least recently run. When owners wait and a resident has held its slot for more than
`quantum_steps`, the longest-resident one is spilled (to the host tier) so nobody starves.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Residency:
    owner_id: str
    resident: bool          # in a device slot now
    has_work: bool          # a step to run (not finished)
    last_run_step: int      # scheduler step it last ran
    resident_since: int     # scheduler step it got its slot
    pinned: bool = False


class LRUResidency:
    name = "lru"

    def __init__(self, quantum_steps: int | None = None) -> None:
        self.quantum_steps = quantum_steps

    def residents(self, owners: list[Residency], capacity: int, step: int) -> tuple[str, ...]:
        active = [o for o in owners if o.has_work]
        keep = [o for o in active if o.resident]
        waiting = sorted((o for o in active if not o.resident), key=lambda o: (not o.pinned, o.last_run_step))
        if waiting and self.quantum_steps is not None:
            stale = sorted((o for o in keep if not o.pinned and step - o.resident_since > self.quantum_steps),
                           key=lambda o: o.resident_since)
            for o in stale[:max(0, len(keep) + len(waiting) - capacity)]:
                keep.remove(o)
        chosen = keep[:capacity] + waiting[:max(0, capacity - len(keep))]
        return tuple(o.owner_id for o in chosen)
