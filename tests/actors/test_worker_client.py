"""WorkerClient is the scheduler side's only caller of worker actors; failures are judged by type.

No Ray cluster: a fake handle records the calls, and RayTaskError is built by hand as Ray builds it.
"""
import ast
import pathlib
from types import SimpleNamespace
from unittest.mock import MagicMock

import pytest
from ray.exceptions import RayTaskError

from actors.worker_client import Admission, Handover, WorkerClient, phase_failure, remote_cause
from rwttt_ray.core.request import Request
from rwttt_ray.ttt.worker_core import StaleEpochRefused

ROOT = pathlib.Path(__file__).resolve().parents[2]
# every actors module but the client itself (the scheduler side, the cluster and service shells, and
# modules functions may move to); the worker module's own `.options(...).remote(...)` starts actors
SCHEDULER_SIDE = sorted(p.name for p in (ROOT / "actors").glob("*.py") if p.name != "worker_client.py")
# receivers whose `.m.remote()` calls are the scheduler's or the service manager's, not a worker's
NOT_WORKERS = {"self.scheduler", "self.cluster.scheduler", "sched", "manager", "self.manager"}


def worker_calls(source: str) -> list[int]:
    """Lines with a `.remote(` call that may be on a worker handle: any `<x>.<method>.remote(...)`
    whose `<x>` is not a known scheduler or manager handle (actor construction and @ray.remote pass)."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "remote":
            target = node.func.value
            if isinstance(target, ast.Name) and target.id == "ray" or isinstance(target, ast.Call):
                continue
            if isinstance(target, ast.Attribute) and ast.unparse(target.value) in NOT_WORKERS:
                continue
            lines.append(node.lineno)
    return lines


def test_the_checker_finds_worker_calls():
    assert {"scheduler.py", "sessions.py", "operations.py", "adoption.py", "scaling.py", "cluster.py"} <= set(SCHEDULER_SIDE)
    assert worker_calls("await sched.workers[w].run_phase.remote(plan)") == [1]
    assert worker_calls("h = handle.ping.remote()\nx = self.scheduler.stats.remote()") == [1]
    assert worker_calls("@ray.remote(num_cpus=0)\nclass A: ...\nA.options(name='a').remote()") == []


@pytest.mark.parametrize("name", SCHEDULER_SIDE)
def test_no_worker_remote_call_outside_the_worker_client(name):
    source = (ROOT / "actors" / name).read_text()
    assert worker_calls(source) == [], f"actors/{name}: call workers through WorkerClient"


class FakeHandle:
    """Records `handle.<method>.remote(*args)` and answers ("ref", method, args)."""

    def __init__(self) -> None:
        self.calls = []

    def __getattr__(self, method):
        def remote(*args, **kw):
            self.calls.append((method, args))
            return ("ref", method, args)
        return SimpleNamespace(remote=remote)


def test_each_method_is_one_remote_call_returning_its_ref():
    handle = FakeHandle()
    w = WorkerClient(name="w0", handle=handle)
    req = Request("o", (1, 2), 3)
    assert w.run_phase("plan") == ("ref", "run_phase", ("plan",))
    assert w.admit(req) == ("ref", "admit", (req, None, None))
    ref = w.handover("o")
    w.accept(ref)                                   # a ref is passed on as it is (worker to worker)
    w.reconcile(["a"], ["b"])
    w.spill_to_store("o", 2, 7)
    assert handle.calls[-4:] == [("handover", ("o",)), ("accept", (ref,)), ("reconcile", (["a"], ["b"])),
                                 ("spill_to_store", ("o", 2, 7))]
    with pytest.raises(TypeError):
        WorkerClient(handle, "w0")                  # keyword-only


def test_a_handover_carries_a_state_or_an_admission():
    req = Request("o", (1,), 2)
    assert Handover(state=b"s").admission is None
    assert Handover(admission=Admission(request=req), kept={1: b"k"}).state is None
    for bad in ({}, {"state": b"s", "admission": Admission(request=req)}):
        with pytest.raises(ValueError):
            Handover(**bad)


def _ray_error(cause: BaseException) -> RayTaskError:
    return RayTaskError("run_phase", f"Traceback ...\n{type(cause).__name__}: {cause}", cause)


def test_a_stale_epoch_refusal_is_judged_by_its_type():
    refused = StaleEpochRefused("plan of epoch 3 refused: worker obeys epoch 4")
    for exc in (_ray_error(refused), _ray_error(refused).as_instanceof_cause(), refused):
        assert remote_cause(exc) is refused or isinstance(remote_cause(exc), StaleEpochRefused)
        assert phase_failure(exc).stale
    named = phase_failure(_ray_error(RuntimeError("StaleEpochRefused (a message naming it)")))
    assert not named.stale and named.message == "RuntimeError: StaleEpochRefused (a message naming it)"
    assert phase_failure(_ray_error(ValueError("bad sampler"))).message == "ValueError: bad sampler"


@pytest.mark.parametrize("cause, stale", [(StaleEpochRefused("refused"), True),
                                          (RuntimeError("StaleEpochRefused in the text only"), False)])
def test_the_scheduler_goes_stale_only_on_the_refusal_type(cause, stale):
    from actors.scheduler import SchedulerActor

    host = SimpleNamespace(stale=False, core=MagicMock(owners={}), _notify=lambda: None)
    plan = SimpleNamespace(rounds=[], writes=[])
    SchedulerActor.__ray_actor_class__._phase_failed(host, plan, _ray_error(cause).as_instanceof_cause())
    assert host.stale is stale
