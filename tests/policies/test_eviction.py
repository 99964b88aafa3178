"""Residency policies: lru (with pinning and quantum) and tenant_lru (slots by tenant weight)."""
import pytest
from hypothesis import assume, given, settings, strategies as st

from policies.eviction import EVICTION_NAMES, LRUResidency, Residency, TenantLRUResidency, make_residency


def owner(owner_id, tenant_id="", resident=False, last_run_step=0, resident_since=0, pinned=False,
          has_work=True) -> Residency:
    return Residency(owner_id, resident, has_work, last_run_step, resident_since, pinned, tenant_id)


# -- lru ------------------------------------------------------------------------------------
def test_lru_keeps_residents_and_fills_free_slots_pinned_then_least_recent():
    owners = [owner("r", resident=True), owner("w_new", last_run_step=5), owner("w_old", last_run_step=1),
              owner("w_pin", last_run_step=9, pinned=True), owner("done", has_work=False)]
    assert LRUResidency().residents(owners, 3, 10) == ("r", "w_pin", "w_old")


def test_lru_spills_the_longest_resident_past_its_quantum_only_when_owners_wait():
    owners = [owner("a", resident=True, resident_since=0), owner("b", resident=True, resident_since=5),
              owner("p", resident=True, resident_since=0, pinned=True)]
    assert LRUResidency(quantum_steps=4).residents(owners, 3, 10) == ("a", "b", "p")
    waiting = owners + [owner("w")]
    assert LRUResidency(quantum_steps=4).residents(waiting, 3, 10) == ("b", "p", "w")


# -- tenant_lru -----------------------------------------------------------------------------
def hogging() -> list[Residency]:
    """Tenant "big" holds all four slots; tenant "small" has two owners waiting."""
    return ([owner(f"b{i}", "big", resident=True, resident_since=i) for i in range(4)]
            + [owner(f"s{i}", "small", last_run_step=i) for i in range(2)])


def test_tenant_lru_spills_from_the_tenant_over_its_weighted_share():
    chosen = TenantLRUResidency().residents(hogging(), 4, 10)
    assert sorted(chosen) == ["b0", "b1", "s0", "s1"]
    weighted = TenantLRUResidency(weights={"big": 3, "small": 1}).residents(hogging(), 4, 10)
    assert sorted(weighted) == ["b0", "b1", "b2", "s0"]


def test_tenant_lru_never_spills_pinned_owners():
    owners = [owner(f"b{i}", "big", resident=True, pinned=True) for i in range(3)] + [owner("s0", "small")]
    assert sorted(TenantLRUResidency().residents(owners, 3, 10)) == ["b0", "b1", "b2"]


def test_tenant_lru_rotates_inside_a_tenant_past_the_quantum():
    owners = [owner("a0", "t", resident=True, resident_since=0), owner("a1", "t", resident=True, resident_since=8),
              owner("a2", "t", last_run_step=3)]
    assert sorted(TenantLRUResidency(quantum_steps=4).residents(owners, 2, 10)) == ["a1", "a2"]
    assert sorted(TenantLRUResidency().residents(owners, 2, 10)) == ["a0", "a1"]


def test_tenant_lru_with_room_for_everyone_keeps_everyone():
    assert sorted(TenantLRUResidency().residents(hogging(), 8, 10)) == ["b0", "b1", "b2", "b3", "s0", "s1"]


owners_st = st.lists(st.tuples(st.booleans(), st.booleans(), st.integers(0, 9), st.integers(0, 9), st.booleans(),
                               st.sampled_from(["x", "y", "z"])), max_size=12)


@settings(max_examples=80, deadline=None)
@given(owners_st, st.integers(1, 6), st.one_of(st.none(), st.integers(0, 5)))
def test_tenant_lru_with_one_tenant_matches_lru(rows, capacity, quantum):
    owners = [owner(f"o{i}", "", res, run, since, pin, work) for i, (res, pin, run, since, work, _) in enumerate(rows)]
    assume(sum(o.resident and o.has_work for o in owners) <= capacity)   # as on a real worker
    lru = LRUResidency(quantum).residents(owners, capacity, 10)
    assert set(TenantLRUResidency(quantum).residents(owners, capacity, 10)) == set(lru)


@settings(max_examples=80, deadline=None)
@given(owners_st, st.integers(1, 6), st.one_of(st.none(), st.integers(0, 5)))
def test_tenant_lru_invariants(rows, capacity, quantum):
    owners = [owner(f"o{i}", t, res, run, since, pin, work) for i, (res, pin, run, since, work, t) in enumerate(rows)]
    chosen = TenantLRUResidency(quantum, {"x": 2}).residents(owners, capacity, 10)
    active = [o for o in owners if o.has_work]
    assert len(chosen) == len(set(chosen)) == min(capacity, len(active))
    assert set(chosen) <= {o.owner_id for o in active}
    pinned = [o.owner_id for o in active if o.resident and o.pinned]
    if len(pinned) <= capacity:
        assert set(pinned) <= set(chosen)


def test_factory_and_bad_weights():
    assert set(EVICTION_NAMES) == {"lru", "tenant_lru"}
    assert isinstance(make_residency("lru", quantum_steps=3), LRUResidency)
    tenant = make_residency("tenant_lru", quantum_steps=3, weights={"a": 2})
    assert isinstance(tenant, TenantLRUResidency) and tenant.quantum_steps == 3 and tenant.weights == {"a": 2}
    with pytest.raises(ValueError, match="unknown eviction policy 'nope'"):
        make_residency("nope")
    with pytest.raises(ValueError):
        TenantLRUResidency(weights={"a": 0})
