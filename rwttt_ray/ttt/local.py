"""LocalLoop: the serving loop in one process (no Ray): one SchedulerCore, one WorkerCore per worker.

It is the loop the scheduler actor runs, minus the transport (as vLLM's EngineCore is to
EngineCoreProc): per live worker, a phase is planned (`SchedulerCore.next_plan`), run
(`WorkerCore.run_phase`) and settled with every WRITE receipt accepted (there is no directory
in-process) at the clock of the phase end. Owners arrive between phases; a finished one-shot owner
is released (its outcome kept) before its worker's next phase is planned, once its last WRITE is
published. A lost worker's owners replay
elsewhere from their token log; an owner migrates as its state's bytes. The in-process benchmark,
the baselines, the gates and the oracle tests all run this loop.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

import torch

from rwttt_ray.core.phase import PhasePlan, PhaseResult
from rwttt_ray.core.scheduler import SchedulerCore
from rwttt_ray.core.types import Group
from rwttt_ray.ttt.model import TTTModel
from rwttt_ray.ttt.runner import GroupRunner
from rwttt_ray.ttt.sampling import Request
from rwttt_ray.ttt.worker_core import WorkerCore


@dataclass
class OwnerOutcome:
    """An owner as it ended (or stands): what it generated, when, and its committed state."""

    tokens: list[int]
    version: int
    logits: list[torch.Tensor] = field(default_factory=list)
    deltas: list[torch.Tensor] | None = None
    arrival_s: float = 0.0
    token_times_s: list[float] = field(default_factory=list)
    error: str | None = None
    stop_reason: int | str | None = None
    logprobs: list = field(default_factory=list)
    worker_id: str = ""


@dataclass
class LoopStats:
    """What the loop saw of its plans and results."""

    phases: int = 0
    groups: int = 0
    group_sizes: list[int] = field(default_factory=list)
    writes_committed: int = 0
    writes_rolled_back: int = 0          # planned WRITEs without an accepted receipt
    issued: list[Group] = field(default_factory=list)   # every planned group, with audit_groups
    kept: list[tuple[str, int | None]] = field(default_factory=list)   # session turns kept


Phase = tuple[str, PhasePlan, PhaseResult]


class LocalLoop:
    def __init__(self, *, model: TTTModel, workers: int = 1, max_states_per_worker: int = 64, max_group_size: int = 64,
                 wait_budget_steps: int = 0, rounds_per_call: int = 64, quantum_steps: int | None = None,
                 align_rounds: int | None = None, grouping_policy: str = "greedy",
                 placement_policy: str = "least_loaded", eviction_policy: str = "lru", fairness_policy: str = "vtc",
                 weights: Mapping[str, float] | None = None, record_logits: bool = False, keep_state: bool = False,
                 audit_groups: bool = False, runner_cls: type[GroupRunner] = GroupRunner,
                 worker_cls: type[WorkerCore] = WorkerCore, worker_options: Mapping[str, Any] | None = None) -> None:
        """`worker_options`: WorkerCore's keywords (capacity, write_reserve, static_rounds, graphs)."""
        s = model.settings
        self.worker_options = dict(worker_options or {})
        self.model, self.record_logits, self.keep_state = model, record_logits, keep_state
        self.runner_cls, self.worker_cls, self.audit_groups = runner_cls, worker_cls, audit_groups
        self.core = SchedulerCore.from_policies(
            s.chunk, s.enabled, max_group_size=max_group_size, wait_budget_steps=wait_budget_steps,
            rounds_per_call=rounds_per_call, quantum_steps=quantum_steps, grouping_policy=grouping_policy,
            placement_policy=placement_policy, eviction_policy=eviction_policy, fairness_policy=fairness_policy,
            weights=weights, align_rounds=align_rounds)
        self.workers: dict[str, WorkerCore] = {}
        for i in range(workers):
            self.add_worker(f"w{i}", max_states_per_worker)
        self.epoch = 1
        self.stats = LoopStats()
        self._planning_s = self._run_s = 0.0
        self._arrival: dict[str, float] = {}
        self._done: dict[str, OwnerOutcome] = {}

    def add_worker(self, worker_id: str, max_states_per_worker: int) -> WorkerCore:
        worker = self.worker_cls(self.model, worker_id, max_states_per_worker=max_states_per_worker,
                                 record_logits=self.record_logits, runner_cls=self.runner_cls, **self.worker_options)
        self.workers[worker_id] = worker
        self.core.add_worker(worker_id, worker.shape_prefix, worker.max_states_per_worker, worker.max_owners)
        return worker

    # -- owners ---------------------------------------------------------------------------------
    def submit(self, req: Request) -> str:
        """Admit an owner on the worker placement chooses; returns that worker."""
        worker_id = self.core.admission_worker(req.owner_id)
        self.core.admit(req, worker_id)
        self.workers[worker_id].admit(req)
        self._arrival[req.owner_id] = time.perf_counter()
        return worker_id

    def next_turn(self, owner_id: str, new_prompt: tuple[int, ...], max_new_tokens: int) -> Request:
        """A held owner's (a session's) next turn: its stream goes on with what it generated and
        `new_prompt`, from the state it holds (as SessionService does for a session's turn)."""
        rec = self.core.owners[owner_id]
        req = replace(rec.request, prompt=(*rec.request.prompt, *rec.tokens, *new_prompt),
                      max_new_tokens=max_new_tokens)
        self.workers[rec.worker_id].extend(req)
        self.core.start_turn(req)
        return req

    def kill(self, worker_id: str) -> list[str]:
        """The worker is lost mid-run: its owners roll back to their committed versions and are
        rebuilt on live workers by replaying their token logs. Returns the owners moved."""
        del self.workers[worker_id]
        moved = self.core.worker_lost(worker_id)
        for o in moved:
            rec = self.core.owners[o]
            self.workers[rec.worker_id].admit(rec.request, rec.tokens, rec.progress)
        return moved

    def migrate(self, owner_id: str, dst: str) -> None:
        """Move an owner's committed state (no WRITE waiting to be published) to worker `dst`."""
        src = self.core.owners[owner_id].worker_id
        self.workers[dst].import_owner(self.workers[src].export_owner(owner_id))
        self.core.move(owner_id, dst)

    # -- a phase --------------------------------------------------------------------------------
    def plan(self, worker_id: str) -> PhasePlan | None:
        """Release the worker's finished one-shot owners, then plan its next phase."""
        self._release_finished(worker_id)
        return self.core.next_plan(worker_id, self.epoch)

    def settle(self, worker_id: str, plan: PhasePlan, result: PhaseResult) -> dict[str, list[int]]:
        """Settle a phase with every receipt accepted, at the clock of the phase end."""
        accepted = {o: True for o, _ in self.core.receipts(result)}
        new = self.core.settle(worker_id, plan, result, accepted, now=time.perf_counter())
        self._count(plan, result, accepted)
        return new

    def phase(self, worker_id: str) -> Phase | None:
        """Plan, run and settle one phase of the worker (None: it has nothing to do)."""
        t0 = time.perf_counter()
        plan = self.plan(worker_id)
        self._planning_s += time.perf_counter() - t0
        if plan is None:
            return None
        result = self.workers[worker_id].run_phase(plan)
        t0 = time.perf_counter()
        self.settle(worker_id, plan, result)
        self._planning_s += time.perf_counter() - t0
        return worker_id, plan, result

    def profile(self) -> dict[str, float]:
        """Seconds of `run` spent in: forward (READ rounds, less sampling and host syncs),
        planning (plan + settle), sampling, write (WRITE groups), host_sync, idle (the rest)."""
        parts = {"forward": 0.0, "planning": self._planning_s, "sampling": 0.0, "write": 0.0, "host_sync": 0.0}
        for w in self.workers.values():
            for key in ("sampling", "host_sync"):
                parts[key] += w.runner.profile[key]
            parts["forward"] += w.profile["forward"] - w.runner.profile["sampling"] - w.runner.profile["host_sync"]
            parts["write"] += w.profile["write"]
        parts["idle"] = max(0.0, self._run_s - sum(parts.values()))
        return parts

    def tick(self) -> list[Phase]:
        """One phase on every live worker that has work; [] when the loop is idle."""
        return [p for wid in list(self.workers) if self.core.workers[wid].alive
                for p in [self.phase(wid)] if p is not None]

    def run(self, requests: list[Request], arrival_steps: list[int] | None = None,
            max_ticks: int | None = None) -> dict[str, OwnerOutcome]:
        """Serve `requests`, the i-th admitted once the scheduler's step reaches arrival_steps[i]
        (between phases; an idle loop admits the next one at once); run until idle."""
        arrivals = sorted(zip(arrival_steps or [0] * len(requests), range(len(requests))))
        nxt, ticks, t0 = 0, 0, time.perf_counter()
        while True:
            while nxt < len(arrivals) and arrivals[nxt][0] <= self.core.step:
                self.submit(requests[arrivals[nxt][1]])
                nxt += 1
            if not self.tick():
                if nxt == len(arrivals):
                    break
                self.submit(requests[arrivals[nxt][1]])
                nxt += 1
            ticks += 1
            if max_ticks is not None and ticks > max_ticks:
                raise RuntimeError(f"the loop did not finish within {max_ticks} ticks")
        self._run_s += time.perf_counter() - t0
        out = self.outcomes()
        return {r.owner_id: out[r.owner_id] for r in requests}

    # -- outcomes -------------------------------------------------------------------------------
    def outcomes(self) -> dict[str, OwnerOutcome]:
        """Every owner seen: the released ones as they ended, the held ones as they stand."""
        return {**self._done, **{o: self._outcome(o) for o in self.core.owners}}

    def _outcome(self, owner_id: str) -> OwnerOutcome:
        rec = self.core.owners[owner_id]
        worker = self.workers.get(rec.worker_id)
        st = worker.runner.owners.get(owner_id) if worker is not None else None
        deltas = worker.deltas(owner_id) if self.keep_state and worker is not None and worker.owns(owner_id) else None
        return OwnerOutcome(tokens=list(rec.tokens), version=self.core.ledger.committed(owner_id),
                            logits=st.logits if st is not None else [], deltas=deltas,
                            arrival_s=self._arrival.get(owner_id, 0.0), token_times_s=list(rec.token_times),
                            error=rec.error, stop_reason=rec.stop_reason, logprobs=list(rec.logprobs),
                            worker_id=rec.worker_id)

    def _release_finished(self, worker_id: str) -> None:
        """Release finished one-shot owners whose last WRITE is published (a session's stay)."""
        w = self.core.workers[worker_id]
        for o in self.core.owners_on(worker_id):
            rec = self.core.owners[o]
            if rec.finished and not rec.request.keep_at_end and o not in w.commits and o not in w.rollbacks:
                self._done[o] = self._outcome(o)
                self.core.release(o)
                self.workers[worker_id].release(o)
                self._arrival.pop(o, None)

    def _count(self, plan: PhasePlan, result: PhaseResult, accepted: dict[str, bool]) -> None:
        st = self.stats
        groups = [*(g for r in plan.rounds for g in r), *plan.writes]
        st.phases += 1
        st.groups += len(groups)
        st.group_sizes += [len(g) for g in groups]
        if self.audit_groups:
            st.issued += groups
        written = [o for g in plan.writes for o in g.owner_ids]
        st.writes_committed += sum(accepted.get(o, False) for o in written)
        st.writes_rolled_back += sum(not accepted.get(o, False) for o in written)
        st.kept += result.kept
