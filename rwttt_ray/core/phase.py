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
    failed: dict[OwnerId, str] = field(default_factory=dict)             # owners whose step raised (alone)
    spilled: list[OwnerId] = field(default_factory=list)                 # moved to the host tier
    logprobs: dict[OwnerId, list] = field(default_factory=dict)          # per emitted token, if asked
    stops: dict[OwnerId, int | str] = field(default_factory=dict)        # stop id/string that ended a turn
    kept: list[tuple[OwnerId, int | None]] = field(default_factory=list)  # session turns kept (None: failed)
    compute_s: float = 0.0
    error: str = ""


def plan_phase(progress: Mapping[OwnerId, OwnerProgress], committed: Callable[[OwnerId], int],
               planner: BatchPlanner, tag_fn: TagFn, start_step: int, rounds_per_call: int,
               align_rounds: int = 0) -> tuple[tuple[tuple[Group, ...], ...], tuple[Group, ...], int]:
    """Simulate up to `rounds_per_call` READ rounds through `planner`; return (rounds, writes, steps).

    The phase ends after the round in which an owner reaches a WRITE boundary, unless every
    other reading owner reaches its own boundary within `align_rounds` rounds of waiting: then
    the owners at a boundary sit out (they do not READ) and all WRITE together, so owners that
    arrived apart fall into step (see `keep_waiting`). Every owner at a boundary at the end is
    planned into a WRITE group.
    """
    sim = dict(progress)
    rounds: list[tuple[Group, ...]] = []
    step = start_step
    waited: dict[OwnerId, int] = {}
    for _ in range(rounds_per_call):
        _submit(sim, planner, committed, tag_fn, step, Effect.READ)
        groups = planner.plan(step, committed).groups
        step += 1
        if not groups and not len(planner):
            break
        rounds.append(groups)
        for o in (o for g in groups for o in g.owner_ids):
            sim[o] = sim[o].after_read()
        waited = {o: waited.get(o, -1) + 1 for o, p in sim.items() if p.write_pending}
        if waited and not keep_waiting(sim, waited, align_rounds):
            break
    for o in [t.owner_id for t in planner.pending()]:
        planner.withdraw(o)           # the next phase re-plans from the true progress
    writer = BatchPlanner(max_group_size=planner.max_group_size)   # the phase ends: no waiting
    _submit(sim, writer, committed, tag_fn, step, Effect.WRITE)
    return tuple(rounds), writer.plan(step, committed).groups, step


def keep_waiting(sim: Mapping[OwnerId, OwnerProgress], waited: Mapping[OwnerId, int], align_rounds: int) -> bool:
    """Whether the owners at a WRITE boundary (`waited`: rounds each has sat out) should wait for
    the reading owners: yes when every reader that will reach a boundary does so in time (no one
    waits more than `align_rounds` in all), and no waiter is still in its prompt (its next
    token or prefill chunk is not held back: TTFT)."""
    if not waited or any(sim[o].pos <= sim[o].num_prompt for o in waited):
        return False
    due = [d for o, p in sim.items() if o not in waited
           if (d := rounds_to_boundary(p, align_rounds)) is not None]
    return bool(due) and max(waited.values()) + max(due) <= align_rounds


def rounds_to_boundary(p: OwnerProgress, limit: int) -> int | None:
    """READ rounds until the owner's next WRITE boundary; None if it finishes (or needs more
    than `limit` rounds) first."""
    for n in range(limit + 1):
        if p.write_pending:
            return n
        if p.next_effect() is not Effect.READ:
            return None
        p = p.after_read()
    return None


def _submit(sim: Mapping[OwnerId, OwnerProgress], planner: BatchPlanner, committed: Callable[[OwnerId], int],
            tag_fn: TagFn, step: int, effect: Effect) -> None:
    pending = {t.owner_id for t in planner.pending()}
    for o, p in sim.items():
        if o not in pending and p.next_effect() is effect:
            planner.submit(tag_fn(o, p, committed(o)), step)
