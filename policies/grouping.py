"""Grouping policies: given the ready steps of one group key, which batches to issue now.

The planner buckets pending steps by key (oldest first) and asks a policy per bucket; the rest
keep waiting. greedy (w = 0): everything, now, in batches of at most max_group_size.
wait_budget (w, B): full batches of B now; a smaller remainder waits for partners until its
oldest member has waited w steps. skew_aware (w, B): READs go now; a short WRITE batch waits
(at most w) only while another owner is known, from its `steps_to_write` hint, to reach its
WRITE boundary in time, so owners' boundaries line up. Pure: imports only rwttt_ray.core types.
"""
from __future__ import annotations

from typing import Protocol, Sequence

from rwttt_ray.core.types import Backend, Effect, GroupKey, OwnerId, PendingStep

__all__ = ["GROUPING_NAMES", "GreedyGrouping", "GroupingPolicy", "PendingStep", "SkewAwareGrouping",
           "WaitBudgetGrouping", "make_grouping"]


class GroupingPolicy(Protocol):
    """Decides which ready steps of one key share a kernel call now."""

    name: str

    def select(self, key: GroupKey, ready: Sequence[PendingStep], step: int,
               max_group_size: int) -> list[list[PendingStep]]:
        """Batches to issue at `step`, each of 1..max_group_size steps with distinct owners.

        `ready` is oldest first (ready_step, then submit order); steps not returned keep waiting.
        """
        ...


def _batches(ready: Sequence[PendingStep], size: int) -> list[list[PendingStep]]:
    return [list(ready[i:i + size]) for i in range(0, len(ready), size)]


def _checked_budget(wait_budget_steps: int, target_group_size: int) -> tuple[int, int]:
    """(w, B), or ValueError naming the bad one."""
    if wait_budget_steps < 0:
        raise ValueError(f"{wait_budget_steps=} must be >= 0")
    if target_group_size < 1:
        raise ValueError(f"{target_group_size=} must be >= 1")
    return wait_budget_steps, target_group_size


class GreedyGrouping:
    """w = 0: issue every ready step now, in batches of at most max_group_size."""

    name = "greedy"

    def select(self, key: GroupKey, ready: Sequence[PendingStep], step: int,
               max_group_size: int) -> list[list[PendingStep]]:
        return _batches(ready, max_group_size)


class WaitBudgetGrouping:
    """Issue batches at target size B; a remainder waits until its oldest has waited w steps."""

    name = "wait_budget"

    def __init__(self, wait_budget_steps: int, target_group_size: int) -> None:
        self.wait_budget_steps, self.target_group_size = _checked_budget(wait_budget_steps, target_group_size)

    def select(self, key: GroupKey, ready: Sequence[PendingStep], step: int,
               max_group_size: int) -> list[list[PendingStep]]:
        size = min(self.target_group_size, max_group_size)
        num_full = len(ready) - len(ready) % size
        batches = _batches(ready[:num_full], size)
        rest = list(ready[num_full:])
        # NOTE: the oldest step decides; younger ones ride along rather than wait alone
        if rest and step - rest[0].ready_step >= self.wait_budget_steps:
            batches.append(rest)
        return batches


class SkewAwareGrouping:
    """Line up WRITE boundaries: a short WRITE batch waits (at most w) only for a known partner.

    READ batches and full WRITE batches of B go now. The remainder of a WRITE key waits while
    its oldest member has budget left and another owner of the same lane announced (through a
    READ's `steps_to_write`) a boundary at or before that member's deadline; otherwise it goes
    now. Waiting once shifts the owner's later boundaries too, so aligned owners stay aligned.
    Without hints it is greedy. It remembers announced boundaries: one instance per planner.
    """

    name = "skew_aware"

    def __init__(self, wait_budget_steps: int, target_group_size: int = 64) -> None:
        self.wait_budget_steps, self.target_group_size = _checked_budget(wait_budget_steps, target_group_size)
        self._boundaries: dict[tuple[Backend, str], dict[OwnerId, int]] = {}   # lane -> owner -> WRITE step

    def select(self, key: GroupKey, ready: Sequence[PendingStep], step: int,
               max_group_size: int) -> list[list[PendingStep]]:
        # NOTE: a lane is (backend, placement): a worker's WRITEs share one shape class, while its
        # READs span several (decode, prefill pieces). A wrong guess costs at most w, never legality.
        lane = self._boundaries.setdefault((key.backend, key.placement), {})
        if key.effect is Effect.READ:
            _remember(lane, ready)
            return _batches(ready, max_group_size)
        size = min(self.target_group_size, max_group_size)
        num_full = len(ready) - len(ready) % size
        batches = _batches(ready[:num_full], size)
        rest = list(ready[num_full:])
        if rest and not self._partner_due(lane, rest, step):
            batches.append(rest)
        return batches

    def _partner_due(self, lane: dict[OwnerId, int], rest: list[PendingStep], step: int) -> bool:
        """True when `rest` may wait: budget left, and another owner's boundary falls within it."""
        deadline = rest[0].ready_step + self.wait_budget_steps
        for owner_id in [o for o, at in lane.items() if at < step]:
            del lane[owner_id]                    # passed: finished, withdrawn or already written
        if step >= deadline:
            return False
        waiting = {p.tag.owner_id for p in rest}
        return any(at <= deadline and o not in waiting for o, at in lane.items())


def _remember(lane: dict[OwnerId, int], ready: Sequence[PendingStep]) -> None:
    """Record the absolute step of each hinted owner's next WRITE."""
    for p in ready:
        if p.steps_to_write is not None:
            lane[p.tag.owner_id] = p.ready_step + p.steps_to_write


GROUPING_NAMES = (GreedyGrouping.name, WaitBudgetGrouping.name, SkewAwareGrouping.name)


def make_grouping(name: str, wait_budget_steps: int = 0, target_group_size: int = 64) -> GroupingPolicy:
    """A grouping policy by name: "greedy", "wait_budget" or "skew_aware"."""
    if name == GreedyGrouping.name:
        return GreedyGrouping()
    if name == WaitBudgetGrouping.name:
        return WaitBudgetGrouping(wait_budget_steps, target_group_size)
    if name == SkewAwareGrouping.name:
        return SkewAwareGrouping(wait_budget_steps, target_group_size)
    raise ValueError(f"unknown grouping policy {name!r}; choose one of {', '.join(map(repr, GROUPING_NAMES))}")
