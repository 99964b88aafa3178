"""`rwttt eval` runs: every mode on one trace, the per-trace table, the scaling sweep over owners.

The modes come from `bench.modes` (sequential, naive shared-state batching, static ceiling,
replicas) and `bench.backends` (Ray, HTTP). RW-TTT in-process (the serving loop, `ttt.local`) is
built here from `Hooks`, so a test can swap in a broken runner, planner, ledger or worker and watch
the gates fail. Replicas are
memory-matched: as many as fit RW-TTT's measured peak RSS at one replica's RSS, capped by cores.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any, Callable

from tqdm import tqdm

from rwttt_ray.bench import modes
from rwttt_ray.bench.eval_options import EvalOptions, cores
from rwttt_ray.bench.gates import gates
from rwttt_ray.bench.inproc import _run_steps
from rwttt_ray.bench.modes import ModeResult
from rwttt_ray.bench.traces import Trace, make_trace
from rwttt_ray.core.ledger import VersionLedger
from rwttt_ray.core.planner import BatchPlanner
from rwttt_ray.ttt.baselines import static_model
from rwttt_ray.ttt.local import LocalLoop
from rwttt_ray.ttt.model import TTTModel
from rwttt_ray.ttt.runner import GroupRunner
from rwttt_ray.ttt.worker_core import WorkerCore

SWEEP_MODES = ("sequential", "naive_shared", "static_ceiling", "rwttt_inproc")


@dataclass(frozen=True, slots=True)
class Hooks:
    """The components of the RW-TTT serving loop under test (defaults: the real ones)."""

    runner_cls: type = GroupRunner
    planner_cls: type = BatchPlanner
    ledger_cls: type = VersionLedger
    worker_cls: type = WorkerCore


def progress_bar(items: Any, desc: str) -> tqdm:
    """tqdm on stderr; shown on a terminal or with RWTTT_PROGRESS=1."""
    return tqdm(items, desc=desc, unit="run", file=sys.stderr, leave=False,
                disable=not sys.stderr.isatty() and not os.environ.get("RWTTT_PROGRESS"))


def build_loop(model: TTTModel, hooks: Hooks, max_states_per_worker: int, max_group_size: int = 64,
               wait_budget_steps: int = 0, **kw: Any) -> LocalLoop:
    """The serving loop over the hooked runner and worker, with the hooked ledger and per-worker
    planners in its SchedulerCore (set before any owner is admitted)."""
    loop = LocalLoop(model=model, max_states_per_worker=max_states_per_worker, max_group_size=max_group_size,
                     wait_budget_steps=wait_budget_steps, runner_cls=hooks.runner_cls, worker_cls=hooks.worker_cls,
                     **kw)
    loop.core.ledger = hooks.ledger_cls()
    if hooks.planner_cls is not BatchPlanner:
        for w in loop.core.workers.values():
            w.planner = hooks.planner_cls(max_group_size=max_group_size, wait_budget_steps=wait_budget_steps)
    return loop


def run_rwttt(model: TTTModel, trace: Trace, opts: EvalOptions, hooks: Hooks = Hooks()) -> ModeResult:
    """RW-TTT in-process on `trace`, with the ledger's audit log of every committed WRITE."""
    loop = build_loop(model, hooks, len(trace.requests), opts.max_group_size, opts.wait_budget_steps,
                      record_logits=True, keep_state=True)
    res = modes.run_loop_mode("rwttt_inproc", loop, trace)
    res.extra["audit"] = loop.core.ledger.history
    return res


def make(opts: EvalOptions, model: TTTModel, name: str, owners: int) -> Trace:
    return make_trace(name, owners, opts.prompt_len, opts.gen_len, model.settings.chunk, opts.seed)


# -- every mode on one trace ----------------------------------------------------------------------
def memory_matched(results: dict[str, ModeResult], owners: int, forced: int | None) -> dict[str, Any]:
    """Replicas that fit RW-TTT's memory: floor(RW-TTT peak RSS / one replica's RSS), where one
    replica's RSS is the sequential mode's (the same batch-1 TTT server in one process), capped
    by cores and owners, at least 1."""
    budget, each = results["rwttt_inproc"].peak_rss_bytes, results["sequential"].peak_rss_bytes
    by_memory = max(1, budget // each) if each else 1
    count = forced or max(1, min(by_memory, cores(), owners))
    rule = ("set by --replicas" if forced else "min(floor(RW-TTT peak RSS / one replica's RSS), cores, owners), "
            "one replica's RSS = the sequential mode's (a batch-1 TTT process)")
    return {"replicas": count, "rule": rule, "budget_mib": round(budget / 2**20, 1),
            "replica_mib": round(each / 2**20, 1), "by_memory": by_memory, "cores": cores()}


def run_modes(model: TTTModel, opts: EvalOptions, config: Any, hooks: Hooks = Hooks()) -> tuple[dict, dict]:
    """Every mode on one trace: (results by mode, the replicas' memory budget)."""
    trace = make(opts, model, opts.trace, opts.owners)
    steps = [("sequential", lambda: modes.run_sequential("sequential", model, trace)),
             ("static_batch1", lambda: modes.run_sequential("static_batch1", static_model(model), trace)),
             ("naive_shared", lambda: modes.run_naive(model, trace)),
             ("static_ceiling", lambda: modes.run_static(model, trace, max_group_size=opts.max_group_size)),
             ("rwttt_inproc", lambda: run_rwttt(model, trace, opts, hooks))]
    results = _run_steps(steps, opts.repeat)
    budget = memory_matched(results, opts.owners, opts.replicas)
    results["replicas"] = modes.run_replica_mode(model, trace, budget["replicas"])
    results["replicas"].extra["processes"] = budget["replicas"] + 1     # the replicas and their driver
    for name, fn in backend_modes(config, opts).items():
        results[name] = fn(model, trace)
    order = ("sequential", "replicas", "naive_shared", "static_batch1", "static_ceiling", "rwttt_inproc")
    return {n: results[n] for n in (*order, *[n for n in results if n not in order])}, budget


def backend_modes(config: Any, opts: EvalOptions) -> dict[str, Callable]:
    if not opts.backends:
        return {}
    from rwttt_ray.bench.backends import run_http, run_ray

    fns = {"ray": lambda m, t: run_ray(config, opts, m, t), "http": lambda m, t: run_http(config, opts, m, t)}
    return {f"rwttt_{b}": fns[b] for b in opts.backends}


# -- the per-trace table ------------------------------------------------------------------------
def check_trace(model: TTTModel, trace: Trace, opts: EvalOptions, hooks: Hooks = Hooks()) -> dict[str, Any]:
    """Sequential vs RW-TTT on one trace: throughput and the gates (a crash fails them)."""
    seq = modes.run_sequential("sequential", model, trace)
    try:
        rw = run_rwttt(model, trace, opts, hooks)
    except Exception as exc:  # a broken loop may crash instead of diverging: that fails the gates
        return {"sequential_tok_per_s": round(seq.tok_per_s, 2), "gates": _crashed(exc, len(trace.requests))}
    g = gates(rw, None, seq)
    g["writes_audited"] = len(rw.extra["audit"])
    return {"sequential_tok_per_s": round(seq.tok_per_s, 2), "rwttt_tok_per_s": round(rw.tok_per_s, 2),
            "speedup": round(rw.tok_per_s / seq.tok_per_s, 3) if seq.tok_per_s else None,
            "mean_group_size": rw.extra.get("mean_group_size"), "gates": g}


def _crashed(exc: Exception, owners: int) -> dict[str, Any]:
    return {"contract_held": False, "token_match": f"0/{owners}", "max_logit_diff": None, "passed": False,
            "writes_audited": 0, "error": f"{type(exc).__name__}: {exc}"}


def run_traces(model: TTTModel, opts: EvalOptions, hooks: Hooks = Hooks()) -> dict[str, dict]:
    return {name: check_trace(model, make(opts, model, name, opts.owners), opts, hooks)
            for name in progress_bar(opts.traces, "traces")}


# -- the scaling sweep --------------------------------------------------------------------------
def summarize(res: ModeResult, owners: int) -> dict[str, Any]:
    s = {k: v for k, v in res.summary().items() if k not in ("audit", "runs")}
    return {"owners": owners, **s}


def sweep_point(model: TTTModel, opts: EvalOptions, owners: int) -> tuple[dict[str, dict], dict]:
    """The sweep's modes at one owner count, and RW-TTT's gates there."""
    trace = make(opts, model, opts.trace, owners)
    runs = {"sequential": lambda: modes.run_sequential("sequential", model, trace),
            "naive_shared": lambda: modes.run_naive(model, trace),
            "static_ceiling": lambda: modes.run_static(model, trace, max_group_size=opts.max_group_size),
            "rwttt_inproc": lambda: run_rwttt(model, trace, opts)}
    results = {name: runs[name]() for name in SWEEP_MODES}
    g = gates(results["rwttt_inproc"], None, results["sequential"])
    g["writes_audited"] = len(results["rwttt_inproc"].extra["audit"])
    return {name: summarize(r, owners) for name, r in results.items()}, g


def run_sweep(model: TTTModel, opts: EvalOptions, config: Any) -> dict[str, Any]:
    """tok/s and latency per mode at every owner count, in-process (eval.sweep_section adds Ray)."""
    rows: dict[str, list] = {m: [] for m in SWEEP_MODES}
    point_gates = {}
    for n in progress_bar(opts.sweep_owners, "sweep"):
        point, point_gates[n] = sweep_point(model, opts, n)
        for name, row in point.items():
            rows[name].append(row)
    return {"owners": list(opts.sweep_owners), "modes": rows, "gates": point_gates}
