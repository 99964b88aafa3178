"""Contract properties over random traces, pure (no torch).

A tiny simulator feeds owners through BatchPlanner + VersionLedger like In-Place TTT serving:
each owner READs one token per step and WRITEs after every C tokens. Owners arrive at random
steps with random lengths, chunk sizes, shape classes and placements; w and B are random; faults
are injected (stale tags, duplicate owners in hand-built groups, WRITE groups that raise).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings, strategies as st

from policies.grouping import make_grouping
from rwttt_ray.core.errors import (ContractError, DuplicateCommitError, IllegalGroupError, StaleVersionError,
                                   WriteInProgressError)
from rwttt_ray.core.ledger import VersionLedger
from rwttt_ray.core.planner import BatchPlanner, assert_legal
from rwttt_ray.core.types import Backend, Effect, Group, TransitionTag

SETTINGS = settings(max_examples=200, deadline=None)
MAX_STEPS = 1000


@dataclass
class Owner:
    arrival: int
    length: int                 # tokens to READ
    chunk: int                  # C: a WRITE after every C tokens
    shape_class: str
    placement: str
    fed: int = 0                # tokens READ so far
    writes: int = 0             # WRITEs committed so far
    events: list = field(default_factory=list)   # ("R"|"W", fed), in execution order

    def next_effect(self) -> Effect | None:
        if self.fed // self.chunk > self.writes:
            return Effect.WRITE
        return Effect.READ if self.fed < self.length else None

    def serial_events(self) -> list:
        out = []
        for i in range(1, self.length + 1):
            out.append(("R", i))
            if i % self.chunk == 0:
                out.append(("W", i))
        return out


owner_spec = st.builds(Owner, arrival=st.integers(0, 10), length=st.integers(1, 24), chunk=st.integers(1, 8),
                       shape_class=st.sampled_from(["f32:decode", "f32:long"]),
                       placement=st.sampled_from(["w0", "w1"]))


@dataclass
class Faults:
    stale_at: frozenset = frozenset()        # steps at which one owner submits a stale tag
    duplicate_at: frozenset = frozenset()    # group indices rebuilt with an owner twice
    raise_at: frozenset = frozenset()        # WRITE group indices whose kernel raises


faults_spec = st.builds(Faults, *(st.frozensets(st.integers(0, 40), max_size=4) for _ in range(3)))


@dataclass
class Sim:
    owners: dict[str, Owner]
    planner: BatchPlanner
    faults: Faults
    ledger: VersionLedger = field(default_factory=VersionLedger)
    ready_at: dict = field(default_factory=dict)   # owner -> ready step of its pending step
    num_groups: int = 0
    num_write_groups: int = 0
    max_wait: int = 0

    def tag(self, owner_id: str, effect: Effect, version: int) -> TransitionTag:
        o = self.owners[owner_id]
        return TransitionTag(owner_id, Backend.FAST_WEIGHT, o.shape_class, effect, version, o.placement)

    def run(self) -> None:
        for step in range(MAX_STEPS):
            self.arrive(step)
            stale = self.submit(step)
            before = self.ledger.snapshot()
            plan = self.planner.plan(step, self.ledger.committed)
            assert self.ledger.snapshot() == before                # planning changes no version
            assert {t.owner_id for t in plan.stale} == stale       # exactly the injected stale tags
            for group in plan.groups:
                self.execute(step, group)
            if len(self.ledger) == len(self.owners) and all(o.next_effect() is None for o in self.owners.values()):
                return
        raise AssertionError("trace did not finish")

    def arrive(self, step: int) -> None:
        for owner_id, o in self.owners.items():
            if o.arrival == step:
                self.ledger.register(owner_id)

    def submit(self, step: int) -> set[str]:
        """Queue every idle owner's next step; at a fault step, one of them gets a stale tag."""
        pending = {t.owner_id for t in self.planner.pending()}
        idle = [o for o in self.ledger.owners() if o not in pending and self.owners[o].next_effect()]
        stale = {idle[step % len(idle)]} if idle and step in self.faults.stale_at else set()
        for owner_id in idle:
            version = self.ledger.committed(owner_id) + (1 if owner_id in stale else 0)
            self.planner.submit(self.tag(owner_id, self.owners[owner_id].next_effect(), version), step)
            self.ready_at[owner_id] = step
        return stale

    def execute(self, step: int, group: Group) -> None:
        assert_legal(group, self.ledger.committed)                 # what the worker re-checks
        assert len({t.key for t in group.tags}) == 1 and len(set(group.owner_ids)) == len(group)
        assert all(t.expected_version == self.ledger.committed(t.owner_id) for t in group.tags)
        for owner_id in group.owner_ids:
            self.max_wait = max(self.max_wait, step - self.ready_at[owner_id])
        self.num_groups += 1
        if self.num_groups in self.faults.duplicate_at:
            self.reject_duplicate(group)
        if group.effect is Effect.READ:
            self.read(group)
        else:
            self.write(group)

    def reject_duplicate(self, group: Group) -> None:
        bad = Group(group.key, group.tags + group.tags[:1], group.step)
        before = (self.ledger.snapshot(), self.pending_of(group))
        with pytest.raises(IllegalGroupError, match="twice"):
            assert_legal(bad, self.ledger.committed)
        with pytest.raises(ContractError):
            self.ledger.begin_group(bad)
        assert (self.ledger.snapshot(), self.pending_of(group)) == before

    def read(self, group: Group) -> None:
        before = self.ledger.snapshot()
        for owner_id in group.owner_ids:
            o = self.owners[owner_id]
            o.fed += 1
            o.events.append(("R", o.fed))
        assert self.ledger.snapshot() == before                    # a READ never changes a version

    def write(self, group: Group) -> None:
        before = self.ledger.snapshot()
        assert self.ledger.begin_group(group) == {o: before[o] + 1 for o in group.owner_ids}
        assert self.ledger.snapshot() == before                    # dirty until commit
        self.num_write_groups += 1
        if self.num_write_groups in self.faults.raise_at:          # the kernel raised mid-group
            self.ledger.rollback_group(group)
            assert self.ledger.snapshot() == before and set(self.pending_of(group)) == {None}
            return                                                 # the owners retry next step
        self.ledger.commit_group(group)
        after = self.ledger.snapshot()
        assert after == {o: v + (o in group.owner_ids) for o, v in before.items()}
        self.replay_commit(group.owner_ids[0])
        for owner_id in group.owner_ids:
            o = self.owners[owner_id]
            o.writes += 1
            o.events.append(("W", o.fed))

    def replay_commit(self, owner_id: str) -> None:
        before = self.ledger.snapshot()
        with pytest.raises(DuplicateCommitError):
            self.ledger.commit(owner_id, self.ledger.committed(owner_id))
        assert self.ledger.snapshot() == before

    def pending_of(self, group: Group) -> list:
        return [self.ledger.pending(o) for o in group.owner_ids]


@SETTINGS
@given(owners=st.lists(owner_spec, min_size=1, max_size=10), wait_budget_steps=st.integers(0, 4),
       target_group_size=st.integers(1, 6), max_group_size=st.integers(1, 8), faults=faults_spec)
def test_random_traces_keep_the_contract(owners, wait_budget_steps, target_group_size, max_group_size, faults):
    policy = make_grouping("wait_budget", wait_budget_steps, target_group_size)
    planner = BatchPlanner(policy, max_group_size=max_group_size, wait_budget_steps=wait_budget_steps)
    sim = Sim({f"o{i}": o for i, o in enumerate(owners)}, planner, faults)
    sim.run()
    assert sim.max_wait <= wait_budget_steps                       # no ready step waits more than w
    for owner_id, o in sim.owners.items():
        assert o.events == o.serial_events()                       # READ/WRITE order and count = serial
        assert sim.ledger.committed(owner_id) == o.writes == o.length // o.chunk
        assert [r.to_version for r in sim.ledger.writes_of(owner_id)] == list(range(1, o.writes + 1))
        assert sim.ledger.pending(owner_id) is None


# -- the ledger alone: random operations against a plain model ---------------------------------
OPS = ["begin", "commit", "replay", "skip", "rollback", "reset", "fork"]


@dataclass
class LedgerModel:
    """What the ledger should hold: committed and pending versions, and the number of commits."""

    committed: dict
    pending: dict = field(default_factory=dict)
    num_commits: int = 0

    def apply(self, op: str, owner_id: str, delta: int, new_owner_id: str) -> type | None:
        """Apply `op` to the model; return the error the ledger must raise (None: success)."""
        c, has_pending = self.committed[owner_id], owner_id in self.pending
        if op == "begin":
            if delta:
                return StaleVersionError
            if has_pending:
                return WriteInProgressError
            self.pending[owner_id] = c + 1
        elif op == "replay" or (op in ("commit", "skip") and not has_pending):
            return DuplicateCommitError
        elif op == "skip":
            return StaleVersionError
        elif op == "commit":
            self.committed[owner_id] = self.pending.pop(owner_id)
            self.num_commits += 1
        elif op == "rollback":
            self.pending.pop(owner_id, None)
        elif op == "reset":
            if not 0 <= c - delta <= c:
                return ValueError
            self.committed[owner_id] = c - delta
            self.pending.pop(owner_id, None)
        else:
            self.committed[new_owner_id] = c
        return None


def apply_op(led: VersionLedger, op: str, owner_id: str, delta: int, new_owner_id: str) -> None:
    c = led.committed(owner_id)
    calls = {"begin": lambda: led.begin_write(owner_id, c + delta),      # stale unless delta == 0
             "commit": lambda: led.commit(owner_id, c + 1),
             "replay": lambda: led.commit(owner_id, c),                 # a version already committed
             "skip": lambda: led.commit(owner_id, c + 2 + max(delta, 0)),   # a candidate never begun
             "rollback": lambda: led.rollback(owner_id),
             "reset": lambda: led.reset(owner_id, c - delta),           # delta -1: a future version
             "fork": lambda: led.fork(owner_id, new_owner_id)}
    calls[op]()


@SETTINGS
@given(ops=st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 7), st.integers(-1, 2)), max_size=60))
def test_ledger_matches_a_model_and_errors_change_nothing(ops):
    led = VersionLedger.restore({f"o{i}": 0 for i in range(3)})
    model = LedgerModel(led.snapshot())
    for n, (op, i, delta) in enumerate(ops):
        owner_id = led.owners()[i % len(led)]
        expected_error = model.apply(op, owner_id, delta, f"f{n}")
        if expected_error is None:
            apply_op(led, op, owner_id, delta, f"f{n}")
        else:
            with pytest.raises(expected_error):
                apply_op(led, op, owner_id, delta, f"f{n}")
        assert led.snapshot() == model.committed
        assert {o: led.pending(o) for o in led.owners() if led.pending(o)} == model.pending
        assert len(led.history) == model.num_commits
