"""BatchPlanner and assert_legal: grouping by key, stale drops, wait budget, legality."""
import pytest

from policies.grouping import GreedyGrouping, WaitBudgetGrouping
from rwttt_ray.core.errors import DuplicateOwnerError, IllegalGroupError, UnknownOwnerError
from rwttt_ray.core.planner import BatchPlanner, Plan, assert_legal
from rwttt_ray.core.types import Effect, Group
from tests.factories import make_group, make_tag


def zero(owner_id: str) -> int:
    return 0


def owner_groups(plan: Plan) -> list[tuple[str, ...]]:
    return [g.owner_ids for g in plan.groups]


# -- construction and pending steps ---------------------------------------------------------
def test_default_policy_follows_the_wait_budget():
    assert isinstance(BatchPlanner().policy, GreedyGrouping)
    waiting = BatchPlanner(max_group_size=8, wait_budget_steps=3).policy
    assert isinstance(waiting, WaitBudgetGrouping)
    assert (waiting.wait_budget_steps, waiting.target_group_size) == (3, 8)


@pytest.mark.parametrize("kw", [dict(max_group_size=0), dict(wait_budget_steps=-1)])
def test_bad_limits_are_refused(kw):
    with pytest.raises(ValueError):
        BatchPlanner(**kw)


def test_submit_withdraw_pending_len():
    p = BatchPlanner()
    p.submit(make_tag(owner_id="a"), 0)
    p.submit(make_tag(owner_id="b"), 0)
    with pytest.raises(DuplicateOwnerError):
        p.submit(make_tag(owner_id="a", effect=Effect.WRITE), 1)
    assert [t.owner_id for t in p.pending()] == ["a", "b"] and len(p) == 2
    p.withdraw("a")
    p.withdraw("zz")                    # no-op
    assert [t.owner_id for t in p.pending()] == ["b"] and len(p) == 1


# -- plan -----------------------------------------------------------------------------------
def test_groups_by_key_and_never_mixes_effects_shapes_or_placements():
    p = BatchPlanner()
    p.submit(make_tag(owner_id="a"), 0)
    p.submit(make_tag(owner_id="b"), 0)
    p.submit(make_tag(owner_id="c", effect=Effect.WRITE), 0)
    p.submit(make_tag(owner_id="d", shape_class="f32:prefill4"), 0)
    p.submit(make_tag(owner_id="e", placement="w1"), 0)
    plan = p.plan(7, zero)
    assert sorted(owner_groups(plan)) == [("a", "b"), ("c",), ("d",), ("e",)]
    assert all(g.step == 7 for g in plan.groups) and plan.stale == () and len(p) == 0


def test_oldest_first_then_submit_order():
    p = BatchPlanner(max_group_size=2)
    p.submit(make_tag(owner_id="young"), 5)
    p.submit(make_tag(owner_id="old2"), 1)
    p.submit(make_tag(owner_id="old1"), 1)
    p.submit(make_tag(owner_id="oldest"), 0)
    assert owner_groups(p.plan(5, zero)) == [("oldest", "old2"), ("old1", "young")]


def test_stale_and_unknown_owners_are_dropped_not_issued():
    versions = {"a": 1, "b": 0}

    def committed(owner_id):
        if owner_id not in versions:
            raise UnknownOwnerError(f"unknown owner {owner_id}")
        return versions[owner_id]

    p = BatchPlanner()
    p.submit(make_tag(owner_id="a", expected_version=0), 0)
    p.submit(make_tag(owner_id="b"), 0)
    p.submit(make_tag(owner_id="gone"), 0)
    plan = p.plan(0, committed)
    assert owner_groups(plan) == [("b",)]
    assert [t.owner_id for t in plan.stale] == ["a", "gone"] and len(p) == 0


def test_max_group_size_splits_batches():
    p = BatchPlanner(max_group_size=2)
    for o in "abcde":
        p.submit(make_tag(owner_id=o), 0)
    assert [len(g) for g in p.plan(0, zero).groups] == [2, 2, 1]


def test_wait_budget_holds_small_groups_at_most_w_steps():
    p = BatchPlanner(max_group_size=4, wait_budget_steps=2)
    p.submit(make_tag(owner_id="a"), 0)
    assert p.plan(0, zero).groups == () and p.plan(1, zero).groups == ()
    p.submit(make_tag(owner_id="b"), 1)
    assert owner_groups(p.plan(2, zero)) == [("a", "b")]     # a waited w=2 steps; b rides along
    assert len(p) == 0


def test_full_target_batch_goes_at_once():
    p = BatchPlanner(max_group_size=2, wait_budget_steps=5)
    for o in "abc":
        p.submit(make_tag(owner_id=o), 0)
    assert owner_groups(p.plan(0, zero)) == [("a", "b")]
    assert [t.owner_id for t in p.pending()] == ["c"]


class Hoarder:
    """A policy that never issues anything: the planner must still honour w."""

    name = "hoarder"

    def select(self, key, ready, step, max_group_size):
        return []


def test_planner_enforces_the_wait_budget_whatever_the_policy():
    p = BatchPlanner(policy=Hoarder(), max_group_size=2, wait_budget_steps=1)
    for o in "abc":
        p.submit(make_tag(owner_id=o), 0)
    assert p.plan(0, zero).groups == ()
    assert owner_groups(p.plan(1, zero)) == [("a", "b"), ("c",)]


class Broken:
    name = "broken"

    def __init__(self, batches):
        self.batches = batches

    def select(self, key, ready, step, max_group_size):
        return self.batches(ready)


@pytest.mark.parametrize("batches", [
    lambda ready: [ready[:1], ready[:1]],          # one owner issued twice
    lambda ready: [list(ready)],                   # larger than max_group_size
    lambda ready: [[]],                            # empty batch
])
def test_a_policy_that_breaks_its_contract_is_caught(batches):
    p = BatchPlanner(policy=Broken(batches), max_group_size=2)
    for o in "abc":
        p.submit(make_tag(owner_id=o), 0)
    with pytest.raises(IllegalGroupError):
        p.plan(0, zero)
    assert len(p) == 3                              # nothing left the planner


def test_plan_asserts_legality_against_the_ledger_view():
    calls = []

    def committed(owner_id):                        # changes between the stale check and the legality check
        calls.append(owner_id)
        return 0 if len(calls) == 1 else 1

    p = BatchPlanner()
    p.submit(make_tag(owner_id="a"), 0)
    with pytest.raises(IllegalGroupError, match="expects version 0"):
        p.plan(0, committed)


# -- assert_legal ---------------------------------------------------------------------------
def test_assert_legal_accepts_a_legal_group_with_different_versions():
    group = make_group(make_tag(owner_id="a"), make_tag(owner_id="b", expected_version=3))
    assert_legal(group, {"a": 0, "b": 3}.__getitem__)


@pytest.mark.parametrize("tags,why", [
    ((make_tag(owner_id="a"), make_tag(owner_id="a")), "twice"),
    ((make_tag(owner_id="a"), make_tag(owner_id="b", effect=Effect.WRITE)), "differs"),
    ((make_tag(owner_id="a"), make_tag(owner_id="b", shape_class="f32:prefill8")), "differs"),
    ((make_tag(owner_id="a"), make_tag(owner_id="b", placement="w9")), "differs"),
    ((make_tag(owner_id="a", expected_version=2),), "expects version 2, committed version is 0"),
])
def test_assert_legal_rejects(tags, why):
    with pytest.raises(IllegalGroupError, match=why):
        assert_legal(make_group(*tags), zero)


def test_assert_legal_rejects_empty_and_unknown():
    with pytest.raises(IllegalGroupError, match="empty"):
        assert_legal(Group(make_tag().key, (), 0), zero)
    with pytest.raises(IllegalGroupError, match="unknown"):
        assert_legal(make_group(make_tag()), {}.__getitem__)
