"""Property tests over random traces, pure (no torch): a simulator drives owners through
OwnerProgress + BatchPlanner + VersionLedger like the engine does, and checks the contract."""
from dataclasses import dataclass, field

from hypothesis import given, settings, strategies as st

from rwttt_ray.core.errors import ContractError, IllegalGroupError
from rwttt_ray.core.ledger import VersionLedger
from rwttt_ray.core.planner import BatchPlanner, assert_legal
from rwttt_ray.core.progress import OwnerProgress
from rwttt_ray.core.types import Backend, Effect, Group, TransitionTag
from tests.factories import make_group, make_tag

owner_spec = st.tuples(st.integers(0, 12), st.integers(1, 20), st.integers(1, 15))   # arrival, prompt, gen


@dataclass
class Sim:
    chunk: int
    planner: BatchPlanner
    ledger: VersionLedger = field(default_factory=VersionLedger)
    progress: dict = field(default_factory=dict)
    writes: dict = field(default_factory=dict)        # owner -> positions of its WRITEs, in order
    issued: list = field(default_factory=list)
    fail_write_at: int = -1                           # fail the n-th WRITE group (fault injection)
    write_groups: int = 0

    def tag(self, owner_id):
        p = self.progress[owner_id]
        eff = p.next_effect()
        return None if eff is None else TransitionTag(owner_id, Backend.FAST_WEIGHT, p.phase_name(), eff,
                                                      self.ledger.committed(owner_id))

    def step(self, step):
        pending = {t.owner_id for t in self.planner.pending()}
        for o in list(self.progress):
            if o not in pending and (t := self.tag(o)) is not None:
                self.planner.submit(t, step)
        plan = self.planner.plan(step, self.ledger.committed)
        assert plan.stale == ()
        for g in plan.groups:
            assert_legal(g, self.ledger.committed)     # what the worker re-checks
            self.issued.append((step, g))
            self.run(g)

    def run(self, g):
        if g.effect is Effect.READ:
            for o in g.owner_ids:
                self.progress[o] = self.progress[o].after_read()
            return
        before = self.ledger.snapshot()
        self.ledger.begin_group(g)
        self.write_groups += 1
        if self.write_groups == self.fail_write_at:      # a WRITE that raises mid-group
            self.ledger.rollback_group(g)
            assert self.ledger.snapshot() == before
            return
        self.ledger.commit_group(g)
        for o in g.owner_ids:
            self.writes.setdefault(o, []).append(self.progress[o].pos)
            self.progress[o] = self.progress[o].after_write()


def serial_writes(chunk, prompt, gen):
    """Positions at which the sequential run WRITEs: every full chunk of fed tokens."""
    fed = prompt + gen - 1
    return [chunk * (i + 1) for i in range(fed // chunk)]


@settings(max_examples=150, deadline=None)
@given(st.lists(owner_spec, min_size=1, max_size=9), st.integers(1, 8), st.integers(1, 5), st.integers(0, 3),
       st.integers(-1, 6))
def test_random_traces_keep_the_contract(owners, chunk, group_size, wait, fail_at):
    sim = Sim(chunk, BatchPlanner(max_group_size=group_size, wait_budget_steps=wait), fail_write_at=fail_at)
    arrivals = {f"o{i}": spec for i, spec in enumerate(owners)}
    for step in range(400):
        for o, (arr, prompt, gen) in arrivals.items():
            if arr == step:
                sim.ledger.register(o)
                sim.progress[o] = OwnerProgress(chunk, prompt, prompt, gen)
        sim.step(step)
        if step > 12 and all(p.finished for p in sim.progress.values()):
            break
    for step, g in sim.issued:
        assert len(set(g.owner_ids)) == len(g.owner_ids) and all(t.key == g.key for t in g.tags)
    for o, (arr, prompt, gen) in arrivals.items():
        p = sim.progress[o]
        assert p.finished and p.num_generated == gen
        assert sim.writes.get(o, []) == serial_writes(chunk, prompt, gen)   # order and count
        assert sim.ledger.committed(o) == len(sim.writes.get(o, [])) == p.writes
        assert [r.to_version for r in sim.ledger.writes_of(o)] == list(range(1, p.writes + 1))


@given(st.integers(0, 3))
def test_stale_tag_is_rejected_and_changes_nothing(v):
    led = VersionLedger()
    led.register("a", v)
    led.register("b")
    before = led.snapshot()
    group = make_group(make_tag(owner_id="a", effect=Effect.WRITE, expected_version=v + 1),
                       make_tag(owner_id="b", effect=Effect.WRITE))
    try:
        assert_legal(group, led.committed)
        raise AssertionError("stale group passed")
    except IllegalGroupError:
        pass
    try:
        led.begin_group(group)
    except ContractError:
        pass
    assert led.snapshot() == before and led.pending("b") is None


def test_duplicate_owner_in_a_hand_built_group_is_refused():
    led = VersionLedger()
    led.register("a")
    group = Group(make_tag().key, (make_tag(owner_id="a"), make_tag(owner_id="a")), 0)
    try:
        assert_legal(group, led.committed)
        raise AssertionError("duplicate owner passed")
    except IllegalGroupError:
        pass
