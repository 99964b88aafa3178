"""SchedulerCore with policies chosen by name: fairness orders the owners waiting for a worker's
slots, settle charges tenants, draining workers take no new owners, autoscaler observations."""
import pytest

from policies.eviction import LRUResidency, TenantLRUResidency
from policies.fairness import FirstComeFirstServed, VirtualTokenCounter
from policies.grouping import SkewAwareGrouping
from policies.placement import Pack
from rwttt_ray.core.phase import PhaseResult
from rwttt_ray.core.request import Request
from rwttt_ray.core.scheduler import SchedulerCore


def core_with(capacity: int = 2, **policies) -> SchedulerCore:
    core = SchedulerCore.from_policies(4, True, **policies)
    core.add_worker("w0", "m", capacity)
    return core


def admit(core: SchedulerCore, owners: list[tuple[str, str]]) -> None:
    for owner_id, tenant_id in owners:
        core.admit(Request(owner_id, (1, 2, 3), 5), "w0", tenant_id=tenant_id)


def test_policies_by_name():
    core = core_with(grouping_policy="skew_aware", placement_policy="pack", eviction_policy="tenant_lru",
                     fairness_policy="fcfs", weights={"a": 2.0}, quantum_steps=3)
    assert isinstance(core.placement, Pack) and isinstance(core.residency, TenantLRUResidency)
    assert core.residency.weights == {"a": 2.0} and core.residency.quantum_steps == 3
    assert isinstance(core.workers["w0"].planner.policy, SkewAwareGrouping)
    assert isinstance(core.workers["w0"].fairness, FirstComeFirstServed)
    default = core_with()
    assert isinstance(default.residency, LRUResidency) and isinstance(default.workers["w0"].fairness,
                                                                     VirtualTokenCounter)
    with pytest.raises(ValueError, match="unknown"):
        SchedulerCore.from_policies(4, fairness_policy="nope")


@pytest.mark.parametrize("fairness, want", [("vtc", ("a1", "b1")), ("fcfs", ("a1", "a2"))])
def test_waiting_owners_get_slots_in_fairness_order(fairness, want):
    core = core_with(capacity=2, fairness_policy=fairness)
    admit(core, [("a1", "a"), ("a2", "a"), ("a3", "a"), ("b1", "b")])
    assert core.next_plan("w0", epoch=1).residents == want


def test_one_tenant_keeps_the_lru_order():
    core = core_with(capacity=2)
    admit(core, [("o1", ""), ("o2", ""), ("o3", "")])
    assert core.next_plan("w0", epoch=1).residents == ("o1", "o2")


def test_settle_charges_each_tenant_the_tokens_served():
    core = core_with(capacity=4)
    admit(core, [("a1", "a"), ("b1", "b")])
    plan = core.next_plan("w0", epoch=1)
    progress = {o: core.owners[o].progress for o in ("a1", "b1")}
    result = PhaseResult(progress={"a1": progress["a1"].after_read()})     # a1 fed 3 prompt tokens
    core.settle("w0", plan, result, {})
    assert core.workers["w0"].fairness.counters["a"] == 3
    assert core.workers["w0"].fairness.counters.get("b", 0) == 0


def test_draining_worker_takes_no_new_owners_and_is_not_observed():
    core = core_with(capacity=2)
    core.add_worker("w1", "m", 2)
    admit(core, [("a1", "a")])
    core.workers["w1"].draining = True
    assert core.choose_worker("x") == "w0"
    obs = core.scale_observation(num_pending=1)
    assert [w.worker_id for w in obs.workers] == ["w0"] and obs.num_pending == 1
    assert obs.workers[0].num_active == 1 and obs.queue_depth == 0


def test_admission_refuses_by_name_when_every_live_worker_is_full():
    from rwttt_ray.core.tenancy import CapacityFullError, QuotaError

    core = SchedulerCore.from_policies(4, True)
    core.add_worker("w0", "m", 1, max_owners=2)
    core.add_worker("w1", "m", 1, max_owners=1)
    core.add_worker("free", "m", 1)                  # no host-tier limit
    core.workers["free"].alive = False               # ... but dead: it takes nobody
    placed = []
    for owner_id in ("a", "b", "c"):
        placed.append(core.admission_worker(owner_id))
        core.admit(Request(owner_id, (1, 2, 3), 5), placed[-1])
    assert sorted(placed) == ["w0", "w0", "w1"]
    with pytest.raises(CapacityFullError, match="holds 3 owners") as err:
        core.admission_worker("d")
    assert isinstance(err.value, QuotaError) and err.value.status == 429
    with pytest.raises(CapacityFullError, match="worker w1"):
        core.check_room("w1")
    core.forget(core.owners_on("w1")[0])            # an owner ends: there is room again
    assert core.admission_worker("d") == "w1"
    core.workers["free"].alive = True
    core.admit(Request("d", (1,), 1), "w1")
    assert core.admission_worker("e") == "free"
