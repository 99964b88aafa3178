"""Grouping policies: greedy, wait-budget and skew-aware batch selection, and the factory."""
import pytest
from hypothesis import given, settings, strategies as st

from policies.grouping import (GROUPING_NAMES, GreedyGrouping, GroupingPolicy, SkewAwareGrouping,
                               WaitBudgetGrouping, make_grouping)
from rwttt_ray.core.planner import BatchPlanner
from rwttt_ray.core.types import Effect, PendingStep
from tests.factories import make_pending, make_tag

KEY = make_tag().key


def sizes(batches) -> list[int]:
    return [len(b) for b in batches]


def test_greedy_issues_everything_now_in_chunks_oldest_first():
    ready = make_pending(5)
    batches = GreedyGrouping().select(KEY, ready, 0, 2)
    assert sizes(batches) == [2, 2, 1]
    assert [p for b in batches for p in b] == ready
    assert GreedyGrouping().select(KEY, [], 0, 2) == []


def test_wait_budget_full_batches_now_remainder_after_w():
    pol = WaitBudgetGrouping(wait_budget_steps=3, target_group_size=2)
    assert sizes(pol.select(KEY, make_pending(5), 2, 64)) == [2, 2]       # remainder waited 2 < 3
    assert sizes(pol.select(KEY, make_pending(5), 3, 64)) == [2, 2, 1]    # waited 3 = w: goes


def test_wait_budget_remainder_is_judged_by_its_oldest_member():
    pol = WaitBudgetGrouping(wait_budget_steps=2, target_group_size=4)
    ready = make_pending(1, ready_step=0) + make_pending(2, ready_step=3)
    assert pol.select(KEY, ready, 2, 64) == [ready]


def test_wait_budget_never_exceeds_max_group_size():
    pol = WaitBudgetGrouping(wait_budget_steps=0, target_group_size=8)
    assert sizes(pol.select(KEY, make_pending(7), 0, 3)) == [3, 3, 1]


def test_wait_budget_zero_behaves_greedy():
    ready = make_pending(5)
    assert WaitBudgetGrouping(0, 2).select(KEY, ready, 0, 2) == GreedyGrouping().select(KEY, ready, 0, 2)


@pytest.mark.parametrize("w,b", [(-1, 2), (0, 0)])
def test_wait_budget_refuses_bad_settings(w, b):
    with pytest.raises(ValueError):
        WaitBudgetGrouping(w, b)


def test_factory_by_name():
    greedy: GroupingPolicy = make_grouping("greedy")
    waiting = make_grouping("wait_budget", wait_budget_steps=2, target_group_size=4)
    assert isinstance(greedy, GreedyGrouping) and greedy.name == "greedy"
    assert isinstance(waiting, WaitBudgetGrouping) and waiting.name == "wait_budget"
    assert (waiting.wait_budget_steps, waiting.target_group_size) == (2, 4)
    with pytest.raises(ValueError, match="unknown grouping policy 'nope'"):
        make_grouping("nope")


# -- skew-aware grouping ----------------------------------------------------------------------
WRITE_KEY = make_tag(effect=Effect.WRITE, shape_class="f32:write").key


def write_pending(owner_ids, ready_step=0) -> list[PendingStep]:
    return [PendingStep(make_tag(owner_id=o, effect=Effect.WRITE, shape_class="f32:write"), ready_step, i, 0)
            for i, o in enumerate(owner_ids)]


def announce(pol, boundaries: dict[str, int], step: int = 0) -> None:
    """Show the policy READ steps whose owners reach their WRITE at the given steps."""
    ready = [PendingStep(make_tag(owner_id=o), step, i, at - step) for i, (o, at) in enumerate(boundaries.items())]
    assert sizes(pol.select(KEY, ready, step, 64)) == [len(ready)]      # READs go now


def test_skew_aware_waits_only_for_a_partner_due_within_the_budget():
    pol = SkewAwareGrouping(wait_budget_steps=3, target_group_size=8)
    announce(pol, {"late": 9, "soon": 2})
    ready = write_pending(["a"], ready_step=0)
    assert pol.select(WRITE_KEY, ready, 0, 64) == []                  # "soon" writes at 2 <= 0 + 3
    assert pol.select(WRITE_KEY, ready, 3, 64) == [ready]             # budget used up: goes
    alone = SkewAwareGrouping(wait_budget_steps=3)
    announce(alone, {"late": 9})
    assert alone.select(WRITE_KEY, ready, 0, 64) == [ready]           # nobody in time: goes now


def test_skew_aware_without_hints_is_greedy_and_full_batches_go_now():
    pol = SkewAwareGrouping(wait_budget_steps=5, target_group_size=2)
    ready = write_pending(["a", "b", "c"])
    assert pol.select(WRITE_KEY, ready, 0, 2) == GreedyGrouping().select(WRITE_KEY, ready, 0, 2)
    announce(pol, {"d": 1})
    assert sizes(pol.select(WRITE_KEY, ready, 0, 64)) == [2]          # the remainder "c" waits for "d"


def simulate(policy, offsets: dict[str, int], chunk: int, num_steps: int, planner_w: int):
    """Owners READ one token a step and WRITE at each chunk boundary; returns (WRITE group sizes, waits)."""
    planner = BatchPlanner(policy, max_group_size=64, wait_budget_steps=planner_w)
    fill, versions, submitted = dict(offsets), {o: 0 for o in offsets}, {}
    write_sizes, waits = [], []
    for step in range(num_steps):
        pending = {t.owner_id for t in planner.pending()}
        for o in [o for o in fill if o not in pending]:
            effect, shape = (Effect.WRITE, "f32:write") if fill[o] == chunk else (Effect.READ, "f32:decode")
            tag = make_tag(owner_id=o, effect=effect, shape_class=shape, expected_version=versions[o])
            planner.submit(tag, step, steps_to_write=chunk - fill[o])
            submitted[o] = step
        for group in planner.plan(step, versions.__getitem__).groups:
            assert len(set(group.owner_ids)) == len(group) and all(t.key == group.key for t in group.tags)
            waits += [step - submitted[o] for o in group.owner_ids]
            if group.effect is Effect.WRITE:
                write_sizes.append(len(group))
            for o in group.owner_ids:
                versions[o], fill[o] = (versions[o] + 1, 0) if group.effect is Effect.WRITE else (versions[o], fill[o] + 1)
    return write_sizes, waits


SKEWED = {f"o{i}": (3 * i) % 16 for i in range(8)}                     # boundaries spread over the chunk


def test_skew_aware_groups_writes_more_densely_than_greedy_within_the_budget():
    w = 4
    greedy_sizes, _ = simulate(GreedyGrouping(), SKEWED, 16, 200, planner_w=0)
    skew_sizes, waits = simulate(SkewAwareGrouping(w), SKEWED, 16, 200, planner_w=10**6)   # policy alone bounds waits
    assert sum(greedy_sizes) / len(greedy_sizes) == 1.0
    assert sum(skew_sizes) / len(skew_sizes) >= 2.0
    assert max(waits) <= w


def test_skew_aware_does_not_wait_when_no_partner_is_coming():
    lone = {"o0": 0}
    _, budget_waits = simulate(WaitBudgetGrouping(4, 8), lone, 16, 100, planner_w=4)
    _, skew_waits = simulate(SkewAwareGrouping(4, 8), lone, 16, 100, planner_w=4)
    assert max(budget_waits) == 4 and max(skew_waits) == 0


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 7), min_size=1, max_size=10), st.integers(0, 5), st.integers(1, 4))
def test_skew_aware_is_legal_and_bounded_on_any_trace(offsets, w, b):
    owners = {f"o{i}": f for i, f in enumerate(offsets)}
    _, waits = simulate(SkewAwareGrouping(w, target_group_size=b), owners, 8, 40, planner_w=10**6)
    assert waits and max(waits) <= w                                    # legality is asserted in simulate


def test_factory_knows_skew_aware():
    pol = make_grouping("skew_aware", wait_budget_steps=3, target_group_size=4)
    assert isinstance(pol, SkewAwareGrouping) and pol.name == "skew_aware"
    assert (pol.wait_budget_steps, pol.target_group_size) == (3, 4)
    assert set(GROUPING_NAMES) == {"greedy", "wait_budget", "skew_aware"}
    with pytest.raises(ValueError):
        SkewAwareGrouping(-1)


def test_planner_stores_the_steps_to_write_hint():
    seen = []

    class Spy(GreedyGrouping):
        def select(self, key, ready, step, max_group_size):
            seen.extend(p.steps_to_write for p in ready)
            return super().select(key, ready, step, max_group_size)

    planner = BatchPlanner(Spy())
    planner.submit(make_tag(owner_id="a"), 0, steps_to_write=3)
    planner.submit(make_tag(owner_id="b"), 0)
    planner.plan(0, lambda o: 0)
    assert seen == [3, None]
