"""State-contract stress (the paper's Table 6, "5 injected failures"), in-process, on the real
ledger, planner, runner, SchedulerCore and WorkerCore (no Ray, no fakes).

Each fault is injected mid-run; it counts as caught only if every layer that should refuse it
does (with its named error, changing nothing) and the run still ends with every owner's tokens
and version equal to the sequential reference:
  stale_version    a step tagged with the version before its owner's last WRITE
  duplicate_owner  one owner twice: a second pending step, a hand-built group with it twice
  failed_write     a WRITE kernel that raises once: the whole group rolls back, then retries
  lost_worker      a worker dies holding begun WRITEs; its owners replay on another worker
  stale_scheduler  a plan from the scheduler before a restart (old epoch) reaches the worker
The model runs with chunk min(C, 16), so short streams cross several WRITE boundaries.
"""
from __future__ import annotations

import copy
from typing import Any, Callable

from rwttt_ray.bench.eval_modes import Hooks, build_engine
from rwttt_ray.bench.traces import make_trace
from rwttt_ray.core.errors import ContractError
from rwttt_ray.core.scheduler import SchedulerCore
from rwttt_ray.core.types import Effect, Group
from rwttt_ray.ttt.engine import Engine
from rwttt_ray.ttt.model import TTTModel
from rwttt_ray.ttt.reference import SequentialReference
from rwttt_ray.ttt.sampling import Request
from rwttt_ray.ttt.worker_core import StaleEpochRefused

FAULTS = ("stale_version", "duplicate_owner", "failed_write", "lost_worker", "stale_scheduler")


def _requests(model: TTTModel, n: int, seed: int = 0) -> list[Request]:
    c = model.settings.chunk   # prompt = one chunk: the first phase ends in a WRITE
    return list(make_trace("uniform", n, c, c + 5, c, seed).requests)


def _matches(model: TTTModel, reqs: list[Request], tokens: dict, versions: dict) -> bool:
    ref = SequentialReference(model)
    for r in reqs:
        want = ref.run(r)
        if tokens.get(r.owner_id) != want.tokens or versions.get(r.owner_id) != want.num_writes:
            return False
    return True


def _refuses(fn: Callable[[], Any], error: type = ContractError) -> bool:
    try:
        fn()
    except error:
        return True
    return False


def _finish(model: TTTModel, eng: Engine, reqs: list[Request]) -> bool:
    eng.run([])
    out = eng.outcomes
    return all(out[r.owner_id].error is None for r in reqs) and _matches(
        model, reqs, {o: r.tokens for o, r in out.items()}, {o: r.version for o, r in out.items()})


def _engine(model: TTTModel, hooks: Hooks, reqs: list[Request]) -> Engine:
    eng = build_engine(model, hooks, len(reqs), record_logits=False)
    for r in reqs:
        eng.add(r)
    return eng


def _step_until(eng: Engine, done: Callable[[], bool], max_steps: int = 10_000) -> None:
    for _ in range(max_steps):
        if done():
            return
        eng.step()
    raise RuntimeError("the fault's precondition never came")


# -- the engine's faults ------------------------------------------------------------------------
def stale_version(model: TTTModel, hooks: Hooks) -> dict[str, Any]:
    reqs = _requests(model, 3)
    eng = _engine(model, hooks, reqs)
    _step_until(eng, lambda: any(eng.ledger.committed(o) >= 1 for o in eng.active()))
    owner = next(o for o in eng.active() if eng.ledger.committed(o) >= 1)
    v = eng.ledger.committed(owner)
    stale = eng.runner.next_tag(owner, v - 1)            # tagged before the owner's last WRITE
    eng.planner.withdraw(owner)
    eng.planner.submit(stale, eng.step_index)
    plan = eng.planner.plan(eng.step_index, eng.ledger.committed)
    dropped = stale in plan.stale and all(owner not in g.owner_ids for g in plan.groups)
    before = (eng.ledger.snapshot(), eng.runner.progress(owner))
    ledger_refused = _refuses(lambda: eng.ledger.begin_write(owner, v - 1))
    eng.ledger.rollback(owner)                           # a broken ledger may have begun it
    worker_refused = _refuses(lambda: eng.runner.run(Group(stale.key, (stale,), eng.step_index)))
    unchanged = before == (eng.ledger.snapshot(), eng.runner.progress(owner))
    checks = dict(planner_dropped=dropped, ledger_refused=ledger_refused, worker_refused=worker_refused,
                  state_unchanged=unchanged, outputs_match=_finish(model, eng, reqs))
    return _verdict(checks, f"owner {owner} tagged v{v - 1}, committed v{v}")


def duplicate_owner(model: TTTModel, hooks: Hooks) -> dict[str, Any]:
    reqs = _requests(model, 2)
    eng = _engine(model, hooks, reqs)
    write_tag = lambda o: eng.runner.next_tag(o, eng.ledger.committed(o))   # noqa: E731
    _step_until(eng, lambda: any(t is not None and t.effect is Effect.WRITE for t in map(write_tag, eng.active())))
    owner = next(o for o in eng.active() if write_tag(o).effect is Effect.WRITE)
    tag = write_tag(owner)
    eng.planner.withdraw(owner)
    eng.planner.submit(tag, eng.step_index)
    planner_refused = _refuses(lambda: eng.planner.submit(tag, eng.step_index))
    planner_refused = planner_refused and [t.owner_id for t in eng.planner.pending()].count(owner) == 1
    eng.planner.withdraw(owner)
    twice = Group(tag.key, (tag, tag), eng.step_index)
    before = (eng.ledger.snapshot(), eng.ledger.pending(owner), eng.runner.pool.has_candidate(owner))
    ledger_refused = _refuses(lambda: eng.ledger.begin_group(twice))
    worker_refused = _refuses(lambda: eng.runner.run(twice))
    unchanged = before == (eng.ledger.snapshot(), eng.ledger.pending(owner), eng.runner.pool.has_candidate(owner))
    checks = dict(planner_refused=planner_refused, ledger_refused=ledger_refused, worker_refused=worker_refused,
                  state_unchanged=unchanged, outputs_match=_finish(model, eng, reqs))
    return _verdict(checks, f"owner {owner}'s WRITE submitted twice and grouped twice")


def failed_write(model: TTTModel, hooks: Hooks) -> dict[str, Any]:
    reqs = _requests(model, 3)
    eng = _engine(model, hooks, reqs)
    victim, fired = reqs[1].owner_id, []

    def fault(owner_id: str) -> None:
        if owner_id == victim and not fired:
            fired.append(eng.step_index)
            raise RuntimeError("injected WRITE failure")

    eng.runner.write_fault = fault
    _step_until(eng, lambda: bool(fired))
    clean = all(eng.ledger.pending(o) is None and not eng.runner.pool.has_candidate(o) for o in eng.active())
    checks = dict(group_rolled_back=eng.stats.writes_rolled_back >= 1 and clean,
                  outputs_match=_finish(model, eng, reqs))
    return _verdict(checks, f"WRITE of {victim} raised at step {fired[0]}; "
                            f"{eng.stats.writes_rolled_back} member(s) rolled back, then retried")


# -- the phase path: SchedulerCore + WorkerCore ---------------------------------------------------
class _Driver:
    """A scheduler and its workers in one process, as the Ray actors drive them."""

    def __init__(self, model: TTTModel, hooks: Hooks, num_workers: int) -> None:
        self.model, self.hooks, self.epoch = model, hooks, 1
        self.core = SchedulerCore(model.settings.chunk, model.settings.enabled, max_rounds=6)
        self.core.ledger = hooks.ledger_cls()
        self.workers = {f"w{i}": hooks.worker_cls(model, f"w{i}", max_states=16) for i in range(num_workers)}
        for wid, w in self.workers.items():
            self.core.add_worker(wid, w.shape_prefix, 16)

    def submit(self, req: Request) -> None:
        wid = self.core.choose_worker(req.owner_id)
        self.core.admit(req, wid)
        self.workers[wid].admit(req)

    def tick(self) -> bool:
        busy = False
        for wid, worker in list(self.workers.items()):
            plan = self.core.next_plan(wid, self.epoch)
            if plan is not None:
                busy = True
                res = worker.run_phase(plan)
                self.core.settle(wid, plan, res, {o: True for o, _ in self.core.receipts(res)})
        return busy

    def finish(self, reqs: list[Request]) -> bool:
        for _ in range(10_000):
            if not self.tick():
                break
        recs = self.core.owners
        return all(recs[r.owner_id].error is None for r in reqs) and _matches(
            self.model, reqs, {o: rec.tokens for o, rec in recs.items()},
            {o: self.core.ledger.committed(o) for o in recs})


def lost_worker(model: TTTModel, hooks: Hooks) -> dict[str, Any]:
    reqs = _requests(model, 4)
    d = _Driver(model, hooks, num_workers=2)
    for r in reqs:
        d.submit(r)
    plan = d.core.next_plan("w0", d.epoch)
    while plan is not None and not plan.writes:          # run w0 until a phase ends in WRITEs
        d.core.settle("w0", plan, res := d.workers["w0"].run_phase(plan), {o: True for o, _ in d.core.receipts(res)})
        plan = d.core.next_plan("w0", d.epoch)
    if plan is None:
        raise RuntimeError("the fault's precondition never came")
    del d.workers["w0"]                                  # dies holding begun WRITEs: no result comes back
    moved = d.core.worker_lost("w0")
    for o in moved:
        rec = d.core.owners[o]
        d.workers[rec.worker_id].admit(rec.request, rec.tokens, rec.progress)
    rolled_back = all(d.core.ledger.pending(o) is None for o in moved)
    checks = dict(writes_rolled_back=rolled_back, owners_moved=bool(moved) and all(
        d.core.owners[o].worker_id == "w1" for o in moved), outputs_match=d.finish(reqs))
    return _verdict(checks, f"w0 lost with {sum(len(g) for g in plan.writes)} begun WRITE(s); "
                            f"{len(moved)} owner(s) replayed on w1")


def stale_scheduler(model: TTTModel, hooks: Hooks) -> dict[str, Any]:
    reqs = _requests(model, 3)
    d = _Driver(model, hooks, num_workers=1)
    for r in reqs:
        d.submit(r)
    d.tick()
    old = copy.deepcopy(d.core)                          # the scheduler before the restart (epoch 1)
    d.core.ledger = hooks.ledger_cls.restore(d.core.ledger.snapshot())   # restart: rebuilt, epoch 2
    d.epoch = 2
    d.tick()
    stale_plan = old.next_plan("w0", 1)
    worker = d.workers["w0"]
    before = {o: (worker.runner.progress(o), len(worker.runner.owners[o].stream)) for o in worker.runner.owners}
    refused = stale_plan is not None and _refuses(lambda: worker.run_phase(stale_plan), StaleEpochRefused)
    after = {o: (worker.runner.progress(o), len(worker.runner.owners[o].stream)) for o in worker.runner.owners}
    checks = dict(worker_refused=refused, state_unchanged=before == after, outputs_match=d.finish(reqs))
    return _verdict(checks, "a plan of epoch 1 sent after the scheduler restarted at epoch 2")


# -- all five -----------------------------------------------------------------------------------
def _verdict(checks: dict[str, bool], detail: str) -> dict[str, Any]:
    return {"caught": all(checks.values()), "checks": checks, "detail": detail}


def run_fault(name: str, model: TTTModel, hooks: Hooks = Hooks()) -> dict[str, Any]:
    """One fault; an unexpected crash counts as not caught, with its error."""
    small = model.with_settings(model.settings.with_overrides(chunk=min(model.settings.chunk, 16)))
    try:
        return globals()[name](small, hooks)
    except Exception as exc:  # a broken component may crash the run: the fault was not contained
        return {"caught": False, "checks": {}, "detail": f"{type(exc).__name__}: {exc}"}


def run_faults(model: TTTModel, hooks: Hooks = Hooks(), names: tuple[str, ...] = FAULTS) -> dict[str, Any]:
    results = {n: run_fault(n, model, hooks) for n in names}
    return {"faults": results, "caught": f"{sum(r['caught'] for r in results.values())}/{len(results)}",
            "passed": all(r["caught"] for r in results.values())}
