"""The RW-TTT vocabulary as plain data: effects, transition tags, group keys and groups.

Every pending step of every owner carries a `TransitionTag`; the planner buckets tags by
`GroupKey` and emits `Group`s; the ledger checks versions. Standard library only.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

OwnerId = str


class Effect(enum.Enum):
    """What a step does to its owner's state."""

    READ = "read"    # apply the committed state; version unchanged
    WRITE = "write"  # compute a dirty candidate for version + 1; visible only after commit


class StepKind(enum.Enum):
    """What an owner's next step is (a phase is the worker call that runs many of them)."""

    PREFILL = "prefill"  # a READ feeding several tokens (a prompt piece)
    DECODE = "decode"    # a READ feeding one token
    WRITE = "write"      # the WRITE of a full chunk


def shape_class(prefix: str, kind: StepKind, piece: int = 1) -> str:
    """The operator shape class of a step on a worker whose shapes are `prefix` (dtype, dims,
    chunk): equal strings share a kernel call; a prefill's piece length is part of its shape."""
    step = f"{kind.value}{piece}" if kind is StepKind.PREFILL else kind.value
    return f"{prefix}:{step}"


class Backend(enum.Enum):
    """The kind of request-owned state a step touches."""

    FAST_WEIGHT = "fast_weight"  # In-Place TTT: per-owner delta of down_proj in the TTT layers


@dataclass(frozen=True, slots=True)
class GroupKey:
    """Steps with equal keys may share one kernel call (if versions and owners also allow it)."""

    effect: Effect        # READ and WRITE never share a group
    backend: Backend      # state type
    shape_class: str      # dtype / dims / chunk / step kind (shape_class()); equal => one kernel call
    placement: str        # where the state lives (worker id, or "local")


@dataclass(frozen=True, slots=True)
class TransitionTag:
    """One pending step of one owner."""

    owner_id: OwnerId       # request owning the state; at most one per group
    backend: Backend        # state type
    shape_class: str        # operator shape class
    effect: Effect          # READ keeps the version; WRITE makes version + 1
    expected_version: int   # must equal ledger.committed(owner_id) when the group is issued
    placement: str = "local"  # worker holding the state

    @property
    def key(self) -> GroupKey:
        return GroupKey(self.effect, self.backend, self.shape_class, self.placement)


@dataclass(frozen=True, slots=True)
class Group:
    """Steps executed by one kernel call; legal by construction (the planner asserts it)."""

    key: GroupKey                    # shared by every member
    tags: tuple[TransitionTag, ...]  # one per owner, owners distinct
    step: int                        # planner step at which the group was issued

    @property
    def owner_ids(self) -> tuple[OwnerId, ...]:
        return tuple(t.owner_id for t in self.tags)

    @property
    def effect(self) -> Effect:
        return self.key.effect

    def __len__(self) -> int:
        return len(self.tags)


@dataclass(frozen=True, slots=True)
class PendingStep:
    """A tagged step waiting in the planner for partners; what a grouping policy sees."""

    tag: TransitionTag   # the step itself
    ready_step: int      # planner step at which it became ready (its wait starts here)
    seq: int             # submit order; breaks ties in ready_step, oldest first
    steps_to_write: int | None = None  # hint: planner steps until this owner's next WRITE; None = unknown
