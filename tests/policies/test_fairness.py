"""Fairness policies: VTC keeps a steady tenant at its weight share against a flooding one; FCFS does not."""
from collections import Counter

import pytest

from policies.fairness import (FAIRNESS_NAMES, FairnessPolicy, FirstComeFirstServed, VirtualTokenCounter,
                               make_fairness)

BUDGET_TOKENS, PIECE_TOKENS = 16, 4            # per round; each served owner gets one piece a round
FLOOD = [(f"f{i}", "flood") for i in range(40)]   # always many backlogged owners, arrived first
STEADY = [(f"s{i}", "steady") for i in range(4)]  # a few, always backlogged


def steady_share(policy: FairnessPolicy, num_rounds: int = 200) -> float:
    """Serve `num_rounds` rounds of a fixed token budget; the steady tenant's share of tokens."""
    queue, served = FLOOD + STEADY, Counter()
    for _ in range(num_rounds):
        tenant_of, left, done = dict(queue), BUDGET_TOKENS, set()
        for owner_id in policy.order(queue, cost={o: PIECE_TOKENS for o, _ in queue}):
            if left < PIECE_TOKENS:
                break
            left -= PIECE_TOKENS
            served[tenant_of[owner_id]] += PIECE_TOKENS
            policy.charge(tenant_of[owner_id], PIECE_TOKENS)
            done.add(owner_id)
        queue = [c for c in queue if c[0] not in done] + [c for c in queue if c[0] in done]   # served: back of the line
    return served["steady"] / sum(served.values())


WEIGHTS = [({"steady": 1, "flood": 1}, 0.5), ({"steady": 3, "flood": 1}, 0.75), ({"steady": 1, "flood": 3}, 0.25)]


@pytest.mark.parametrize("weights,target", WEIGHTS)
def test_vtc_keeps_the_steady_tenant_within_10_percent_of_its_weight_share(weights, target):
    assert steady_share(VirtualTokenCounter(weights)) == pytest.approx(target, rel=0.10)


@pytest.mark.parametrize("weights,target", WEIGHTS)
def test_fcfs_lets_the_flood_take_the_steady_tenants_share(weights, target):
    share = steady_share(FirstComeFirstServed())
    assert share != pytest.approx(target, rel=0.10)
    assert share < 0.8 * target


def test_order_interleaves_by_projected_counter_and_weight():
    vtc = VirtualTokenCounter({"a": 1, "b": 2})
    cands = [("a1", "a"), ("a2", "a"), ("a3", "a"), ("b1", "b"), ("b2", "b"), ("b3", "b"), ("b4", "b")]
    assert vtc.order(cands) == ["a1", "b1", "b2", "a2", "b3", "b4", "a3"]
    assert FirstComeFirstServed().order(cands) == [o for o, _ in cands]


def test_lowest_counter_goes_first():
    vtc = VirtualTokenCounter()
    cands = [("a1", "a"), ("b1", "b")]
    vtc.order(cands)
    vtc.charge("a", 10)
    assert vtc.order(cands)[0] == "b1"
    vtc.charge("b", 11)
    assert vtc.order(cands)[0] == "a1"


def test_a_tenant_back_from_idle_is_lifted_and_does_not_bank_idle_time():
    vtc = VirtualTokenCounter()
    vtc.order([("a1", "a"), ("b1", "b")])
    for _ in range(10):                         # b idles while a is served
        vtc.order([("a1", "a")])
        vtc.charge("a", 100)
    vtc.order([("a1", "a"), ("b1", "b")])
    assert vtc.counters["b"] == vtc.counters["a"] == 1000
    assert vtc.order([("a1", "a"), ("a2", "a"), ("b1", "b"), ("b2", "b")]) == ["a1", "b1", "a2", "b2"]


def test_lift_never_lowers_a_counter_and_survives_a_global_idle():
    vtc = VirtualTokenCounter()
    vtc.order([("a1", "a"), ("b1", "b")])
    vtc.charge("a", 50)
    vtc.charge("b", 20)
    vtc.order([])                               # everyone idle
    vtc.order([("c1", "c"), ("a1", "a")])       # c is new: lifted to the last floor, not 0
    assert vtc.counters["c"] == 20 and vtc.counters["a"] == 50


def test_bad_input_is_refused_and_factory_knows_the_names():
    with pytest.raises(ValueError, match="weight of tenant 'x'"):
        VirtualTokenCounter({"x": 0})
    with pytest.raises(ValueError):
        VirtualTokenCounter().charge("a", -1)
    vtc = make_fairness("vtc", {"a": 2})
    assert isinstance(vtc, VirtualTokenCounter) and vtc.weight("a") == 2 and vtc.weight("z") == 1
    assert make_fairness("fcfs").name == "fcfs"
    assert set(FAIRNESS_NAMES) == {"vtc", "fcfs"}
    with pytest.raises(ValueError, match="unknown fairness policy 'nope'"):
        make_fairness("nope")
