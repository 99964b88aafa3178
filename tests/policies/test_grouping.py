import pytest

from policies.grouping import GreedyGrouping, PendingStep, WaitBudgetGrouping, make_grouping
from tests.factories import make_tag


def ready(n, step=0):
    return [PendingStep(make_tag(owner_id=f"o{i}"), step, i) for i in range(n)]


def test_greedy_issues_everything_in_chunks():
    batches = GreedyGrouping().select(None, ready(5), 0, 2)
    assert [len(b) for b in batches] == [2, 2, 1]


def test_wait_budget_full_batches_now_remainder_after_w():
    pol = WaitBudgetGrouping(wait_budget_steps=3, target_group_size=2)
    assert [len(b) for b in pol.select(None, ready(5), 1, 64)] == [2, 2]
    assert [len(b) for b in pol.select(None, ready(5), 3, 64)] == [2, 2, 1]


def test_factory():
    assert make_grouping("greedy").name == "greedy"
    assert make_grouping("wait_budget", 2, 4).name == "wait_budget"
    with pytest.raises(ValueError):
        make_grouping("nope")
    with pytest.raises(ValueError):
        WaitBudgetGrouping(-1, 2)
