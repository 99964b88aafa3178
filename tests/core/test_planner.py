import pytest

from rwttt_ray.core.errors import DuplicateOwnerError, IllegalGroupError
from rwttt_ray.core.planner import BatchPlanner, assert_legal
from rwttt_ray.core.types import Effect
from tests.factories import make_group, make_tag

ZERO = lambda owner_id: 0


def test_groups_by_key_and_never_mixes_effects():
    p = BatchPlanner()
    p.submit(make_tag(owner_id="a"), 0)
    p.submit(make_tag(owner_id="b"), 0)
    p.submit(make_tag(owner_id="c", effect=Effect.WRITE), 0)
    p.submit(make_tag(owner_id="d", shape_class="f32:prefill4"), 0)
    plan = p.plan(0, ZERO)
    assert sorted(sorted(g.owner_ids) for g in plan.groups) == [["a", "b"], ["c"], ["d"]]
    assert len(p) == 0


def test_stale_steps_are_dropped_not_issued():
    p = BatchPlanner()
    p.submit(make_tag(owner_id="a", expected_version=1), 0)
    p.submit(make_tag(owner_id="b"), 0)
    plan = p.plan(0, ZERO)
    assert [g.owner_ids for g in plan.groups] == [("b",)]
    assert [t.owner_id for t in plan.stale] == ["a"]


def test_one_pending_step_per_owner_and_group_size_limit():
    p = BatchPlanner(max_group_size=2)
    p.submit(make_tag(owner_id="a"), 0)
    with pytest.raises(DuplicateOwnerError):
        p.submit(make_tag(owner_id="a"), 0)
    for o in "bcde":
        p.submit(make_tag(owner_id=o), 0)
    assert [len(g) for g in p.plan(0, ZERO).groups] == [2, 2, 1]


def test_wait_budget_holds_small_groups_at_most_w_steps():
    p = BatchPlanner(max_group_size=4, wait_budget_steps=2)
    p.submit(make_tag(owner_id="a"), 0)
    assert p.plan(0, ZERO).groups == () and p.plan(1, ZERO).groups == ()
    p.submit(make_tag(owner_id="b"), 1)
    groups = p.plan(2, ZERO).groups
    assert [g.owner_ids for g in groups] == [("a", "b")]     # a waited w=2 steps; b rides along


@pytest.mark.parametrize("tags,why", [
    ((make_tag(owner_id="a"), make_tag(owner_id="a")), "twice"),
    ((make_tag(owner_id="a"), make_tag(owner_id="b", effect=Effect.WRITE)), "differs"),
    ((make_tag(owner_id="a", expected_version=2),), "expects"),
])
def test_assert_legal_rejects(tags, why):
    with pytest.raises(IllegalGroupError, match=why):
        assert_legal(make_group(*tags), ZERO)


def test_assert_legal_unknown_owner():
    def committed(owner_id):
        raise KeyError(owner_id)
    with pytest.raises(IllegalGroupError, match="unknown"):
        assert_legal(make_group(make_tag()), committed)
