"""Grouping policies: given the ready steps of one group key, which batches to issue now.

greedy (w = 0): everything, now, in batches of at most B. wait_budget (w, B): full batches of B
now; a smaller remainder waits for partners until its oldest member has waited w steps.
Pure: imports only rwttt_ray.core types.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

from rwttt_ray.core.types import GroupKey, TransitionTag


@dataclass(frozen=True, slots=True)
class PendingStep:
    """A tagged step waiting to be grouped."""

    tag: TransitionTag
    ready_step: int     # planner step at which it became ready
    seq: int            # submit order (ties in ready_step)


class GroupingPolicy(Protocol):
    name: str

    def select(self, key: GroupKey, ready: Sequence[PendingStep], step: int,
               max_group_size: int) -> list[list[PendingStep]]:
        """Batches to issue now (each <= max_group_size, owners distinct); `ready` is oldest first."""
        ...


def _batches(ready: Sequence[PendingStep], size: int) -> list[list[PendingStep]]:
    return [list(ready[i:i + size]) for i in range(0, len(ready), size)]


class GreedyGrouping:
    """w = 0: issue every ready step now."""

    name = "greedy"

    def select(self, key, ready, step, max_group_size):
        return _batches(ready, max_group_size)


class WaitBudgetGrouping:
    """Issue at target size B, or when the oldest waiting step has waited w steps."""

    name = "wait_budget"

    def __init__(self, wait_budget_steps: int, target_group_size: int) -> None:
        if wait_budget_steps < 0 or target_group_size < 1:
            raise ValueError("wait budget must be >= 0 and target group size >= 1")
        self.wait_budget_steps, self.target_group_size = wait_budget_steps, target_group_size

    def select(self, key, ready, step, max_group_size):
        size = min(self.target_group_size, max_group_size)
        full = len(ready) - len(ready) % size
        out = _batches(ready[:full], size)
        rest = list(ready[full:])
        if rest and step - rest[0].ready_step >= self.wait_budget_steps:
            out.append(rest)
        return out


def make_grouping(name: str, wait_budget_steps: int = 0, target_group_size: int = 64) -> GroupingPolicy:
    if name == "greedy":
        return GreedyGrouping()
    if name == "wait_budget":
        return WaitBudgetGrouping(wait_budget_steps, target_group_size)
    raise ValueError(f"unknown grouping policy {name!r}; choose greedy or wait_budget")
