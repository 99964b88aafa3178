"""The writers of SchedulerCore's owner, worker and ledger state (rwttt_ray/core/owners.py), and
the small value types they use: OwnerProgress.fresh / next_turn, StepKind and shape_class."""
import pytest

from rwttt_ray.core.phase import PhaseResult, WriteReceipt
from rwttt_ray.core.progress import OwnerProgress
from rwttt_ray.core.request import Request
from rwttt_ray.core.scheduler import SchedulerCore
from rwttt_ray.core.types import StepKind, shape_class

C = 4


def core_with(workers=("w0",), capacity=4) -> SchedulerCore:
    core = SchedulerCore.from_policies(C, True)
    for w in workers:
        core.add_worker(w, "m", capacity)
    return core


def writing(core, owner="a", worker="w0"):
    """An owner whose full chunk is planned as a WRITE (the ledger has its candidate)."""
    core.admit(Request(owner, (1, 2, 3, 4), 5), worker, progress=OwnerProgress.fresh(C, 4, 0, 5, pos=4))
    plan = core.next_plan(worker, epoch=1)
    assert plan.writes and core.ledger.pending(owner) == 1
    return plan


def test_fresh_progress_and_the_next_turn():
    p = OwnerProgress.fresh(C, 3, 2, 10, ttt=False)
    assert (p.num_prompt, p.stream_len, p.pos, p.ttt) == (3, 5, 0, False)
    q = OwnerProgress.fresh(C, 6, 0, 4, pos=6, writes=1, done=True).next_turn(9, 7)
    assert (q.num_prompt, q.stream_len, q.max_new_tokens, q.done, q.pos, q.writes) == (9, 9, 7, False, 6, 1)


def test_step_kinds_and_shape_classes():
    assert OwnerProgress.fresh(C, 3, 0, 5).step_kind() is StepKind.PREFILL
    assert OwnerProgress.fresh(C, 3, 0, 5).shape_class("m") == "m:prefill3" == shape_class("m", StepKind.PREFILL, 3)
    assert OwnerProgress.fresh(C, 3, 1, 5, pos=3).step_kind() is StepKind.DECODE
    full = OwnerProgress.fresh(C, 4, 0, 5, pos=4)
    assert full.step_kind() is StepKind.WRITE and full.shape_class("m") == "m:write"
    assert shape_class("m", StepKind.DECODE) == "m:decode"


def test_start_turn_clears_the_last_turn():
    core = core_with()
    rec = core.admit(Request("s", (1, 2), 3, keep_at_end=True), "w0", tokens=[7, 8])
    rec.error, rec.stop_reason, rec.logprobs, rec.token_times = "x", 8, [0.1], [1.0]
    nxt = Request("s", (1, 2, 7, 8, 9), 4, keep_at_end=True)
    assert core.start_turn(nxt) is rec
    assert rec.request is nxt and rec.tokens == rec.logprobs == rec.token_times == []
    assert rec.error is None and rec.stop_reason is None and not rec.finished
    assert (rec.progress.num_prompt, rec.progress.stream_len, rec.progress.max_new_tokens) == (5, 5, 4)


def test_fork_copies_the_committed_state_on_the_parents_worker():
    core = core_with(("w0", "w1"))
    parent = core.admit(Request("p", (1, 2), 3), "w1", version=2, tokens=[5])
    parent.stop_reason = 5
    child = core.fork("p", Request("c", (1, 2), 3), tenant_id="t")
    assert child.worker_id == "w1" and child.tokens == [5] and child.tokens is not parent.tokens
    assert child.resident and child.stop_reason == 5 and child.tenant_id == "t"
    assert core.ledger.committed("c") == 2 and child.progress == parent.progress


def test_reset_to_a_kept_version():
    core = core_with()
    core.admit(Request("s", (1, 2), 3), "w0", version=4, tokens=[1, 2, 3])
    back, progress = Request("s", (1,), 2), OwnerProgress.fresh(C, 1, 1, 2, pos=1)
    core.reset_to("s", 1, back, (9,), progress)
    rec = core.owners["s"]
    assert core.ledger.committed("s") == 1 and rec.request is back and rec.tokens == [9]
    assert rec.progress is progress and rec.resident


def test_finish_requests_keeps_an_earlier_error_fail_replaces_it():
    core = core_with()
    for o in "ab":
        core.admit(Request(o, (1,), 2), "w0")
    core.fail(["a"], "worker error: boom")
    core.finish_requests(["a", "b", "nobody"], "cancelled")
    assert core.owners["a"].error == "worker error: boom" and core.owners["b"].error == "cancelled"
    core.fail(["b", "nobody"], "shutting down")
    assert core.owners["b"].error == "shutting down" and core.owners["b"].finished


def test_fail_with_rollback_and_fail_running():
    core = core_with()
    writing(core, "a")
    core.fail(["a"], "x", rollback=True)
    assert core.ledger.pending("a") is None and core.ledger.committed("a") == 0
    core2 = core_with()
    writing(core2, "a")
    core2.admit(Request("done", (1,), 1), "w0").error = "earlier"
    assert core2.fail_running("w0", "lost") == ["a"]
    assert core2.owners["a"].error == "lost" and core2.ledger.pending("a") is None
    assert core2.owners["done"].error == "earlier"


def test_abort_writes_rolls_back_a_phase_that_never_came_back():
    core = core_with()
    core.admit(Request("gone", (1, 2, 3, 4), 5), "w0", progress=OwnerProgress.fresh(C, 4, 0, 5, pos=4))
    plan = writing(core, "a")
    assert {o for g in plan.writes for o in g.owner_ids} == {"a", "gone"}
    core.release("gone")                                 # released while its phase ran: skipped
    core.abort_writes(plan)
    assert core.ledger.pending("a") is None and core.ledger.committed("a") == 0


def test_release_forgets_the_owner_everywhere():
    core = core_with()
    core.admit(Request("a", (1,), 2), "w0")
    core.workers["w0"].planner.submit(core._tag("w0")("a", core.owners["a"].progress, 0), 0)
    rec = core.release("a")
    assert rec.request.owner_id == "a" and "a" not in core.owners and "a" not in core.ledger
    assert len(core.workers["w0"].planner) == 0
    assert core.release("a") is None
    with pytest.raises(KeyError):
        core.forget("a")


def test_spill_verdicts_and_adopted_writes():
    core = core_with()
    plan = writing(core, "a")
    receipt = WriteReceipt("a", 0, 0.0)
    core.settle("w0", plan, PhaseResult(receipts=[receipt]), {"a": True})
    assert core.workers["w0"].commits == ["a"] and core.owners["a"].progress.writes == 1
    core.workers["w0"].rollbacks.append("b")
    assert core.take_verdicts("w0", "a") == (["a"], [])
    assert core.workers["w0"].commits == [] and core.workers["w0"].rollbacks == ["b"]
    assert core.take_verdicts("w0", "a") == ([], [])
    core.mark_spilled("a")
    assert not core.owners["a"].resident
    core.adopt_write("a")
    assert core.owners["a"].progress.writes == 2


def test_workers_drain_retire_and_die():
    core = core_with(("w0", "w1"))
    core.admit(Request("a", (1,), 2), "w0")
    core.set_draining("w1")
    assert not core.can_replay("w0") and core.choose_worker("b") == "w0"
    core.set_draining("w1", False)
    assert core.can_replay("w0")
    assert not core.retire("w0") and core.workers["w0"].alive
    assert core.retire("w1") and not core.workers["w1"].alive
    core.worker_dead("w0")
    assert not core.workers["w0"].alive and core.owners_on("w0") == ["a"]
    assert not core.can_replay("w1")
