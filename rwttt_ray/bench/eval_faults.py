"""State-contract stress (the paper's Table 6, "5 injected failures"), in-process, on the serving
loop (`ttt.local.LocalLoop`: the real ledger, planner, runner, SchedulerCore and WorkerCore; no
Ray, no fakes).

Each fault is injected mid-run; it counts as caught only if every layer that should refuse it
does (with its named error, changing nothing) and the run still ends with every owner's tokens
and version equal to the sequential reference (an owner failed on purpose: its tokens a prefix):
  stale_version    a step tagged with the version before its owner's last WRITE
  duplicate_owner  one owner twice: a second pending step, a hand-built group with it twice
  failed_write     a WRITE kernel that raises for one owner, in its group and alone: the group's
                   candidates roll back, the others re-run alone and commit, that owner fails
                   alone and its begun version is rolled back
  lost_worker      a worker dies holding begun WRITEs; its owners replay on another worker
  stale_scheduler  a plan from the scheduler before a restart (old epoch) reaches the worker
The model runs with chunk min(C, 16), so short streams cross several WRITE boundaries.
"""
from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any, Callable

from rwttt_ray.bench.eval_modes import Hooks, build_loop
from rwttt_ray.bench.traces import make_trace
from rwttt_ray.core.errors import ContractError
from rwttt_ray.core.types import Group
from rwttt_ray.ttt.local import LocalLoop
from rwttt_ray.ttt.model import TTTModel
from rwttt_ray.ttt.reference import SequentialReference
from rwttt_ray.ttt.sampling import Request
from rwttt_ray.ttt.worker_core import StaleEpochRefused

FAULTS = ("stale_version", "duplicate_owner", "failed_write", "lost_worker", "stale_scheduler")
MAX_TICKS = 10_000


def _requests(model: TTTModel, n: int, seed: int = 0) -> list[Request]:
    c = model.settings.chunk   # prompt = one chunk: the first phase ends in a WRITE
    return list(make_trace("uniform", n, c, c + 5, c, seed).requests)


def _refuses(fn: Callable[[], Any], error: type = ContractError) -> bool:
    try:
        fn()
    except error:
        return True
    return False


def _finish(model: TTTModel, loop: LocalLoop, reqs: list[Request], failed: str | None = None) -> bool:
    """Run to the end: every owner's tokens and version are the reference's, and no owner has an
    error but `failed`, whose tokens are the start of the reference's."""
    loop.run([], max_ticks=MAX_TICKS)
    out, ref = loop.outcomes(), SequentialReference(model)
    for r in reqs:
        got, want = out[r.owner_id], ref.run(r)
        if r.owner_id == failed:
            if got.error is None or got.tokens != want.tokens[:len(got.tokens)]:
                return False
        elif got.error is not None or got.tokens != want.tokens or got.version != want.num_writes:
            return False
    return True


def _loop(model: TTTModel, hooks: Hooks, reqs: list[Request], workers: int = 1) -> LocalLoop:
    loop = build_loop(model, hooks, 16, workers=workers, rounds_per_call=6)
    for r in reqs:
        loop.submit(r)
    return loop


def _tick_until(loop: LocalLoop, done: Callable[[], bool]) -> None:
    for _ in range(MAX_TICKS):
        if done():
            return
        if not loop.tick():
            break
    raise RuntimeError("the fault's precondition never came")


# -- the ledger, the planner, the runner --------------------------------------------------------
def stale_version(model: TTTModel, hooks: Hooks) -> dict[str, Any]:
    reqs = _requests(model, 3)
    loop = _loop(model, hooks, reqs)
    core, runner, planner = loop.core, loop.workers["w0"].runner, loop.core.workers["w0"].planner

    def published(o: str) -> bool:                       # a WRITE committed and published on the worker
        return o in runner.owners and runner.owners[o].writes == core.ledger.committed(o) >= 1

    _tick_until(loop, lambda: any(map(published, core.owners)))
    owner = next(o for o in core.owners if published(o))
    v = core.ledger.committed(owner)
    stale = runner.next_tag(owner, v - 1)               # tagged before the owner's last WRITE
    planner.withdraw(owner)
    planner.submit(stale, core.step)
    plan = planner.plan(core.step, core.ledger.committed)
    dropped = stale in plan.stale and all(owner not in g.owner_ids for g in plan.groups)
    planner.withdraw(owner)
    before = (core.ledger.snapshot(), runner.progress(owner))
    ledger_refused = _refuses(lambda: core.ledger.begin_write(owner, v - 1))
    core.ledger.rollback(owner)                          # a broken ledger may have begun it
    worker_refused = _refuses(lambda: runner.run(Group(stale.key, (stale,), core.step)))
    unchanged = before == (core.ledger.snapshot(), runner.progress(owner))
    checks = dict(planner_dropped=dropped, ledger_refused=ledger_refused, worker_refused=worker_refused,
                  state_unchanged=unchanged, outputs_match=_finish(model, loop, reqs))
    return _verdict(checks, f"owner {owner} tagged v{v - 1}, committed v{v}")


def _reads_to_a_boundary(loop: LocalLoop) -> list[str]:
    """Run the READ rounds of w0's phases until one ends at WRITE boundaries, without its WRITEs
    (what the worker holds mid-phase); returns the owners now at a boundary, WRITE not begun."""
    for _ in range(MAX_TICKS):
        plan = loop.plan("w0")
        if plan is None:
            break
        writes, plan = plan.writes, replace(plan, writes=())
        for group in writes:
            loop.core.ledger.rollback_group(group)        # not begun after all: the phase is cut there
        loop.settle("w0", plan, loop.workers["w0"].run_phase(plan))
        if writes:
            return [o for g in writes for o in g.owner_ids]
    raise RuntimeError("the fault's precondition never came")


def duplicate_owner(model: TTTModel, hooks: Hooks) -> dict[str, Any]:
    reqs = _requests(model, 2)
    loop = _loop(model, hooks, reqs)
    core, runner, planner = loop.core, loop.workers["w0"].runner, loop.core.workers["w0"].planner
    owner = _reads_to_a_boundary(loop)[0]
    tag = runner.next_tag(owner, core.ledger.committed(owner))
    planner.withdraw(owner)
    planner.submit(tag, core.step)
    planner_refused = _refuses(lambda: planner.submit(tag, core.step))
    planner_refused = planner_refused and [t.owner_id for t in planner.pending()].count(owner) == 1
    planner.withdraw(owner)
    twice = Group(tag.key, (tag, tag), core.step)
    before = (core.ledger.snapshot(), core.ledger.pending(owner), runner.pool.has_candidate(owner))
    ledger_refused = _refuses(lambda: core.ledger.begin_group(twice))
    worker_refused = _refuses(lambda: runner.run(twice))
    unchanged = before == (core.ledger.snapshot(), core.ledger.pending(owner), runner.pool.has_candidate(owner))
    checks = dict(planner_refused=planner_refused, ledger_refused=ledger_refused, worker_refused=worker_refused,
                  state_unchanged=unchanged, outputs_match=_finish(model, loop, reqs))
    return _verdict(checks, f"owner {owner}'s WRITE submitted twice and grouped twice")


def failed_write(model: TTTModel, hooks: Hooks) -> dict[str, Any]:
    reqs = _requests(model, 3)
    loop = _loop(model, hooks, reqs)
    core, runner = loop.core, loop.workers["w0"].runner
    victim, fired = reqs[1].owner_id, []

    def fault(owner_id: str) -> None:
        if owner_id == victim and len(fired) < 2:      # in its group, then alone: it fails
            fired.append(core.step)
            raise RuntimeError("injected WRITE failure")

    rolled_back, rollback = set(), runner.pool.rollback

    def spy(owner_id: str) -> None:
        if runner.pool.has_candidate(owner_id):
            rolled_back.add(owner_id)
        rollback(owner_id)

    runner.write_fault, runner.pool.rollback = fault, spy
    _tick_until(loop, lambda: len(fired) == 2)
    runner.pool.rollback = rollback
    clean = core.ledger.pending(victim) is None and not runner.pool.has_candidate(victim)
    group = rolled_back == {r.owner_id for r in reqs}        # every member's candidate, at the first raise
    others = all(core.ledger.committed(o) == 1 for o in core.owners if o != victim)
    checks = dict(group_rolled_back=group and loop.stats.writes_rolled_back == 1 and clean, others_committed=others,
                  victim_failed="injected WRITE failure" in (loop.outcomes()[victim].error or ""),
                  outputs_match=_finish(model, loop, reqs, failed=victim))
    return _verdict(checks, f"WRITE of {victim} raised in its group and alone; "
                            f"{loop.stats.writes_rolled_back} member(s) rolled back, the others committed")


# -- the phase path: SchedulerCore + WorkerCore ---------------------------------------------------
def lost_worker(model: TTTModel, hooks: Hooks) -> dict[str, Any]:
    reqs = _requests(model, 4)
    loop = _loop(model, hooks, reqs, workers=2)
    plan = loop.plan("w0")
    while plan is not None and not plan.writes:          # run w0 until a phase ends in WRITEs
        loop.settle("w0", plan, loop.workers["w0"].run_phase(plan))
        plan = loop.plan("w0")
    if plan is None:
        raise RuntimeError("the fault's precondition never came")
    moved = loop.kill("w0")                              # dies holding begun WRITEs: no result comes back
    rolled_back = all(loop.core.ledger.pending(o) is None for o in moved)
    checks = dict(writes_rolled_back=rolled_back, owners_moved=bool(moved) and all(
        loop.core.owners[o].worker_id == "w1" for o in moved), outputs_match=_finish(model, loop, reqs))
    return _verdict(checks, f"w0 lost with {sum(len(g) for g in plan.writes)} begun WRITE(s); "
                            f"{len(moved)} owner(s) replayed on w1")


def stale_scheduler(model: TTTModel, hooks: Hooks) -> dict[str, Any]:
    reqs = _requests(model, 3)
    loop = _loop(model, hooks, reqs)
    loop.tick()
    old = copy.deepcopy(loop.core)                       # the scheduler before the restart (epoch 1)
    loop.core.ledger = hooks.ledger_cls.restore(loop.core.ledger.snapshot())   # restart: rebuilt, epoch 2
    loop.epoch = 2
    loop.tick()
    stale_plan = old.next_plan("w0", 1)
    worker = loop.workers["w0"]
    before = {o: (worker.runner.progress(o), len(worker.runner.owners[o].stream)) for o in worker.runner.owners}
    refused = stale_plan is not None and _refuses(lambda: worker.run_phase(stale_plan), StaleEpochRefused)
    after = {o: (worker.runner.progress(o), len(worker.runner.owners[o].stream)) for o in worker.runner.owners}
    checks = dict(worker_refused=refused, state_unchanged=before == after, outputs_match=_finish(model, loop, reqs))
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
