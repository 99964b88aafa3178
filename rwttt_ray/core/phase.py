"""Phases: the unit of work a scheduler sends a worker in ONE call (never one call per token).

A phase publishes the WRITEs the ledger committed since the last call, runs READ rounds, each a
tuple of legal groups the scheduler's planner chose by simulating owners' progress, and ends
with the WRITE groups of owners that reached a chunk boundary. It ends at the first boundary
(or after k rounds), so the scheduler commits every WRITE before its owner READs again.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

from rwttt_ray.core.planner import BatchPlanner
from rwttt_ray.core.progress import OwnerProgress
from rwttt_ray.core.types import Effect, Group, OwnerId, TransitionTag

TagFn = Callable[[OwnerId, OwnerProgress, int], TransitionTag]


@dataclass(frozen=True, slots=True)
class WriteReceipt:
    """What a WRITE produced, for the committer: owner, base version, candidate checksum."""

    owner_id: OwnerId
    base_version: int
    checksum: float


@dataclass(frozen=True)
class PhasePlan:
    epoch: int                                         # scheduler's fencing epoch
    commits: tuple[OwnerId, ...] = ()                  # candidates the ledger committed: publish first
    rollbacks: tuple[OwnerId, ...] = ()                # candidates the ledger rejected: discard
    residents: tuple[OwnerId, ...] = ()                # owners that must be in device slots
    rounds: tuple[tuple[Group, ...], ...] = ()         # READ rounds, each a tuple of legal groups
    writes: tuple[Group, ...] = ()                     # WRITE groups, after the rounds


@dataclass
class PhaseResult:
    tokens: dict[OwnerId, list[int]] = field(default_factory=dict)       # emitted, in order
    progress: dict[OwnerId, OwnerProgress] = field(default_factory=dict)  # actual, after the phase
    receipts: list[WriteReceipt] = field(default_factory=list)
    failed_writes: list[OwnerId] = field(default_factory=list)           # rolled back on the worker
    spilled: list[OwnerId] = field(default_factory=list)                 # moved to the host tier
    compute_s: float = 0.0
    error: str = ""


def plan_phase(progress: Mapping[OwnerId, OwnerProgress], committed: Callable[[OwnerId], int],
               planner: BatchPlanner, tag_fn: TagFn, start_step: int, max_rounds: int
               ) -> tuple[tuple[tuple[Group, ...], ...], tuple[Group, ...], int]:
    """Simulate up to `max_rounds` READ rounds through `planner`; return (rounds, writes, steps).

    Stops after the first round in which an owner reaches a WRITE boundary. Owners already at a
    boundary do not READ; every owner at a boundary at the end is planned into a WRITE group.
    """
    sim = dict(progress)
    rounds: list[tuple[Group, ...]] = []
    step = start_step
    for _ in range(max_rounds):
        _submit(sim, planner, committed, tag_fn, step, Effect.READ)
        groups = planner.plan(step, committed).groups
        step += 1
        if not groups and not len(planner):
            break
        rounds.append(groups)
        issued = [o for g in groups for o in g.owner_ids]
        for o in issued:
            sim[o] = sim[o].after_read()
        if any(sim[o].write_pending for o in issued):
            break
    for o in [t.owner_id for t in planner.pending()]:
        planner.withdraw(o)           # the next phase re-plans from the true progress
    writer = BatchPlanner(max_group_size=planner.max_group_size)   # the phase ends: no waiting
    _submit(sim, writer, committed, tag_fn, step, Effect.WRITE)
    return tuple(rounds), writer.plan(step, committed).groups, step


def _submit(sim, planner, committed, tag_fn, step: int, effect: Effect) -> None:
    pending = {t.owner_id for t in planner.pending()}
    for o, p in sim.items():
        if o not in pending and p.next_effect() is effect:
            planner.submit(tag_fn(o, p, committed(o)), step)
