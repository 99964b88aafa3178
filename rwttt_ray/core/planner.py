"""BatchPlanner: pending tagged steps in, legal groups out (a `Plan`).

Each owner has at most one pending step. `plan(step)` drops steps whose expected version is
stale, buckets the rest by group key (effect, backend, shape class, placement), oldest first,
asks a grouping policy which batches to issue now, issues anything that has used up the wait
budget w, and checks every emitted group with `assert_legal`, which workers call again before
running a kernel.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from policies.grouping import GroupingPolicy, make_grouping
from rwttt_ray.core.errors import ContractError, DuplicateOwnerError, IllegalGroupError
from rwttt_ray.core.types import Group, GroupKey, OwnerId, PendingStep, TransitionTag

Committed = Callable[[OwnerId], int]   # owner -> committed version (e.g. VersionLedger.committed)


def assert_legal(group: Group, committed: Committed) -> None:
    """Raise IllegalGroupError unless the group is non-empty, every member has the group's key,
    owners are distinct, and every expected version equals the owner's committed version."""
    if not group.tags:
        raise IllegalGroupError(f"empty group at step {group.step}")
    seen: set[OwnerId] = set()
    for tag in group.tags:
        if tag.key != group.key:
            raise IllegalGroupError(f"owner {tag.owner_id}: key {tag.key} differs from group key {group.key}")
        if tag.owner_id in seen:
            raise IllegalGroupError(f"owner {tag.owner_id} appears twice in one group")
        seen.add(tag.owner_id)
        version = _committed_or_none(committed, tag.owner_id)
        if version is None:
            raise IllegalGroupError(f"owner {tag.owner_id} is unknown")
        if tag.expected_version != version:
            raise IllegalGroupError(f"owner {tag.owner_id} expects version {tag.expected_version}, "
                                    f"committed version is {version}")


def _committed_or_none(committed: Committed, owner_id: OwnerId) -> int | None:
    try:
        return committed(owner_id)
    except (KeyError, ContractError):   # UnknownOwnerError is both
        return None


@dataclass(frozen=True, slots=True)
class Plan:
    """What to run now, and what was refused."""

    groups: tuple[Group, ...]          # legal groups to execute now, in bucket order
    stale: tuple[TransitionTag, ...]   # dropped, never issued: expected version != committed, or owner unknown


class BatchPlanner:
    """Groups pending steps under a wait budget: no ready step waits more than w plan steps.

    The policy decides which batches go early; the planner issues whatever it left that has
    waited w steps (so the bound holds for any policy), provided `plan` is called every step.
    """

    def __init__(self, policy: GroupingPolicy | None = None, max_group_size: int = 64,
                 wait_budget_steps: int = 0) -> None:
        if max_group_size < 1:
            raise ValueError(f"{max_group_size=} must be >= 1")
        if wait_budget_steps < 0:
            raise ValueError(f"{wait_budget_steps=} must be >= 0")
        self.max_group_size = max_group_size
        self.wait_budget_steps = wait_budget_steps
        self.policy = policy or (make_grouping("greedy") if wait_budget_steps == 0 else
                                 make_grouping("wait_budget", wait_budget_steps, max_group_size))
        self._pending: dict[OwnerId, PendingStep] = {}
        self._num_submitted = 0

    # -- pending steps ---------------------------------------------------------------------
    def submit(self, tag: TransitionTag, ready_step: int, steps_to_write: int | None = None) -> None:
        """Queue an owner's next step, ready at `ready_step`; one pending step per owner.
        `steps_to_write`: optional hint for the grouping policy (steps until the owner's next WRITE)."""
        if tag.owner_id in self._pending:
            raise DuplicateOwnerError(f"owner {tag.owner_id} already has a pending step")
        self._pending[tag.owner_id] = PendingStep(tag, ready_step, self._num_submitted, steps_to_write)
        self._num_submitted += 1

    def withdraw(self, owner_id: OwnerId) -> None:
        """Drop the owner's pending step, if any."""
        self._pending.pop(owner_id, None)

    def pending(self) -> list[TransitionTag]:
        """Pending tags, in submit order."""
        return [p.tag for p in self._pending.values()]

    def __len__(self) -> int:
        return len(self._pending)

    # -- planning --------------------------------------------------------------------------
    def plan(self, step: int, committed: Committed) -> Plan:
        """Choose the groups to issue at `step`; issued and stale steps leave the pending set."""
        stale = self._drop_stale(committed)
        groups = [Group(key, tuple(p.tag for p in batch), step)
                  for key, ready in self._buckets().items()
                  for batch in self._select(key, ready, step)]
        for group in groups:   # invariant: nothing illegal leaves the planner
            assert_legal(group, committed)
        for group in groups:
            for owner_id in group.owner_ids:
                del self._pending[owner_id]
        return Plan(tuple(groups), stale)

    def _drop_stale(self, committed: Committed) -> tuple[TransitionTag, ...]:
        stale = tuple(p.tag for p in self._pending.values()
                      if _committed_or_none(committed, p.tag.owner_id) != p.tag.expected_version)
        for tag in stale:
            del self._pending[tag.owner_id]
        return stale

    def _buckets(self) -> dict[GroupKey, list[PendingStep]]:
        buckets: dict[GroupKey, list[PendingStep]] = {}
        for p in sorted(self._pending.values(), key=lambda p: (p.ready_step, p.seq)):
            buckets.setdefault(p.tag.key, []).append(p)
        return buckets

    def _select(self, key: GroupKey, ready: list[PendingStep], step: int) -> list[list[PendingStep]]:
        """The policy's batches, checked, plus every step it left that has used up the wait budget."""
        batches = self.policy.select(key, ready, step, self.max_group_size)
        chosen = self._check_batches(batches, ready)
        overdue = [p for p in ready
                   if p.seq not in chosen and step - p.ready_step >= self.wait_budget_steps]
        size = self.max_group_size
        return batches + [overdue[i:i + size] for i in range(0, len(overdue), size)]

    def _check_batches(self, batches: Sequence[Sequence[PendingStep]], ready: list[PendingStep]) -> set[int]:
        """Seqs the policy chose; IllegalGroupError if it broke its contract."""
        allowed = {p.seq for p in ready}
        chosen: set[int] = set()
        for batch in batches:
            if not 1 <= len(batch) <= self.max_group_size:
                raise IllegalGroupError(f"policy {self.policy.name} returned a batch of {len(batch)} "
                                        f"(allowed 1..{self.max_group_size})")
            for p in batch:
                if p.seq not in allowed or p.seq in chosen:
                    raise IllegalGroupError(f"policy {self.policy.name} issued owner {p.tag.owner_id} "
                                            "twice or from another key")
                chosen.add(p.seq)
        return chosen
