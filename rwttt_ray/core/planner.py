"""BatchPlanner: pending tagged steps in, legal groups out.

Steps are bucketed by group key (effect, backend, shape class, placement); a grouping policy
decides which batches to issue now (wait budget w, target size B); steps whose expected version
is stale are dropped and returned, never issued. Every emitted group is checked by
`assert_legal`, which workers also call before running a kernel.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from policies.grouping import GreedyGrouping, GroupingPolicy, PendingStep, WaitBudgetGrouping
from rwttt_ray.core.errors import ContractError, DuplicateOwnerError, IllegalGroupError
from rwttt_ray.core.types import Group, GroupKey, OwnerId, TransitionTag

Committed = Callable[[OwnerId], int]


def assert_legal(group: Group, committed: Committed) -> None:
    """Raise IllegalGroupError unless: non-empty, one key, owners distinct, versions current."""
    if not group.tags:
        raise IllegalGroupError("empty group")
    seen: set[OwnerId] = set()
    for tag in group.tags:
        if tag.key != group.key:
            raise IllegalGroupError(f"owner {tag.owner_id}: key {tag.key} differs from group key {group.key}")
        if tag.owner_id in seen:
            raise IllegalGroupError(f"owner {tag.owner_id} appears twice in one group")
        seen.add(tag.owner_id)
        try:
            version = committed(tag.owner_id)
        except (KeyError, ContractError):
            raise IllegalGroupError(f"owner {tag.owner_id} is unknown") from None
        if tag.expected_version != version:
            raise IllegalGroupError(f"owner {tag.owner_id} expects v{tag.expected_version}, committed v{version}")


@dataclass(frozen=True, slots=True)
class Plan:
    groups: tuple[Group, ...]          # legal groups to execute now
    stale: tuple[TransitionTag, ...]   # dropped: expected version != committed (or owner unknown)


class BatchPlanner:
    def __init__(self, policy: GroupingPolicy | None = None, max_group_size: int = 64,
                 wait_budget_steps: int = 0) -> None:
        if max_group_size < 1 or wait_budget_steps < 0:
            raise ValueError("max_group_size must be >= 1 and wait_budget_steps >= 0")
        self.max_group_size, self.wait_budget_steps = max_group_size, wait_budget_steps
        self.policy = policy or (GreedyGrouping() if wait_budget_steps == 0
                                 else WaitBudgetGrouping(wait_budget_steps, max_group_size))
        self._pending: dict[OwnerId, PendingStep] = {}
        self._seq = 0

    def submit(self, tag: TransitionTag, ready_step: int) -> None:
        if tag.owner_id in self._pending:
            raise DuplicateOwnerError(f"owner {tag.owner_id} already has a pending step")
        self._pending[tag.owner_id] = PendingStep(tag, ready_step, self._seq)
        self._seq += 1

    def withdraw(self, owner_id: OwnerId) -> None:
        self._pending.pop(owner_id, None)

    def pending(self) -> list[TransitionTag]:
        return [p.tag for p in self._pending.values()]

    def __len__(self) -> int:
        return len(self._pending)

    def plan(self, step: int, committed: Committed) -> Plan:
        stale = self._drop_stale(committed)
        buckets: dict[GroupKey, list[PendingStep]] = {}
        for p in sorted(self._pending.values(), key=lambda p: (p.ready_step, p.seq)):
            buckets.setdefault(p.tag.key, []).append(p)
        groups = []
        for key, ready in buckets.items():
            for batch in self.policy.select(key, ready, step, self.max_group_size):
                group = Group(key, tuple(p.tag for p in batch), step)
                assert_legal(group, committed)
                for p in batch:
                    del self._pending[p.tag.owner_id]
                groups.append(group)
        self._check_wait_budget(step)
        return Plan(tuple(groups), stale)

    def _drop_stale(self, committed: Committed) -> tuple[TransitionTag, ...]:
        stale = []
        for owner_id, p in list(self._pending.items()):
            try:
                ok = committed(owner_id) == p.tag.expected_version
            except (KeyError, ContractError):
                ok = False
            if not ok:
                stale.append(p.tag)
                del self._pending[owner_id]
        return tuple(stale)

    def _check_wait_budget(self, step: int) -> None:
        for p in self._pending.values():
            if step - p.ready_step >= self.wait_budget_steps and self.wait_budget_steps >= 0:
                if isinstance(self.policy, (GreedyGrouping, WaitBudgetGrouping)):
                    raise AssertionError(f"owner {p.tag.owner_id} waited past the budget w={self.wait_budget_steps}")
