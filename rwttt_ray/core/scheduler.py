"""SchedulerCore: the scheduler's decisions as pure data (the Ray actor is a thin shell over it).

It owns the version ledger and, per worker, a planner. It mirrors each owner's progress and
token log, chooses residents and plans phases (PhasePlan out), then settles results (PhaseResult
in): WRITE receipts become ledger commits once the directory accepted them, and the worker
publishes them at the start of its next phase. It also decides recovery after a lost worker.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from policies.eviction import LRUResidency, Residency
from policies.placement import LeastLoaded, PlacementPolicy, WorkerLoad
from rwttt_ray.core.ledger import VersionLedger
from rwttt_ray.core.phase import PhasePlan, PhaseResult, plan_phase
from rwttt_ray.core.planner import BatchPlanner
from rwttt_ray.core.progress import OwnerProgress
from rwttt_ray.core.request import Request
from rwttt_ray.core.types import Backend, Effect, TransitionTag


@dataclass
class OwnerRecord:
    request: Request
    progress: OwnerProgress
    worker_id: str
    tokens: list[int] = field(default_factory=list)   # generated so far (the token log)
    token_times: list[float] = field(default_factory=list)   # wall clock when each token was settled
    resident: bool = True
    last_run_step: int = 0
    resident_since: int = 0
    pinned: bool = False
    error: str | None = None

    @property
    def finished(self) -> bool:
        return self.progress.finished or self.error is not None


@dataclass
class WorkerRecord:
    shape_prefix: str
    capacity: int
    alive: bool = True
    commits: list[str] = field(default_factory=list)     # ledger-committed, not yet published there
    rollbacks: list[str] = field(default_factory=list)
    planner: BatchPlanner | None = None


class SchedulerCore:
    def __init__(self, chunk: int, ttt: bool = True, max_group_size: int = 64, wait_budget_steps: int = 0,
                 max_rounds: int = 64, placement: PlacementPolicy | None = None,
                 residency: LRUResidency | None = None) -> None:
        self.chunk, self.ttt, self.max_rounds = chunk, ttt, max_rounds
        self.max_group_size, self.wait_budget_steps = max_group_size, wait_budget_steps
        self.placement = placement or LeastLoaded()
        self.residency = residency or LRUResidency()
        self.ledger = VersionLedger()
        self.owners: dict[str, OwnerRecord] = {}
        self.workers: dict[str, WorkerRecord] = {}
        self.step = 0

    # -- workers and owners ----------------------------------------------------------------
    def add_worker(self, worker_id: str, shape_prefix: str, capacity: int) -> None:
        self.workers[worker_id] = WorkerRecord(shape_prefix, capacity, planner=BatchPlanner(
            max_group_size=self.max_group_size, wait_budget_steps=self.wait_budget_steps))

    def owners_on(self, worker_id: str) -> list[str]:
        return [o for o, r in self.owners.items() if r.worker_id == worker_id]

    def loads(self) -> dict[str, WorkerLoad]:
        return {w: WorkerLoad(len(self.owners_on(w)), r.capacity, r.alive) for w, r in self.workers.items()}

    def choose_worker(self, owner_id: str) -> str:
        return self.placement.choose(owner_id, self.loads())

    def admit(self, req: Request, worker_id: str, version: int = 0, tokens: list[int] | None = None,
              progress: OwnerProgress | None = None) -> OwnerRecord:
        toks = list(tokens or [])
        progress = progress or OwnerProgress(self.chunk, len(req.prompt), len(req.prompt) + len(toks),
                                             req.max_new_tokens, ttt=self.ttt)
        self.ledger.register(req.owner_id, version)
        rec = OwnerRecord(req, progress, worker_id, toks, resident=False, last_run_step=self.step,
                          resident_since=self.step)     # the residency policy gives it a slot
        self.owners[req.owner_id] = rec
        return rec

    def forget(self, owner_id: str) -> OwnerRecord:
        rec = self.owners.pop(owner_id)
        self.ledger.remove(owner_id)
        return rec

    # -- planning -----------------------------------------------------------------------------
    def _tag(self, worker_id: str):
        prefix = self.workers[worker_id].shape_prefix

        def tag(owner_id: str, p: OwnerProgress, version: int) -> TransitionTag:
            eff = Effect.WRITE if p.write_pending else Effect.READ
            return TransitionTag(owner_id, Backend.FAST_WEIGHT, f"{prefix}:{p.phase_name()}", eff, version, worker_id)
        return tag

    def _residents(self, worker_id: str) -> tuple[str, ...]:
        info = [Residency(o, r.resident, not r.finished, r.last_run_step, r.resident_since, r.pinned)
                for o in self.owners_on(worker_id) for r in [self.owners[o]]]
        return self.residency.residents(info, self.workers[worker_id].capacity, self.step)

    def next_plan(self, worker_id: str, epoch: int) -> PhasePlan | None:
        """The worker's next phase, or None when it has nothing to do."""
        w = self.workers[worker_id]
        residents = self._residents(worker_id)
        progress = {o: self.owners[o].progress for o in residents}
        rounds, writes, end = plan_phase(progress, self.ledger.committed, w.planner, self._tag(worker_id),
                                         self.step, self.max_rounds)
        if not rounds and not writes and not w.commits and not w.rollbacks:
            return None
        for group in writes:
            self.ledger.begin_group(group)
        for o in residents:
            rec = self.owners[o]
            if not rec.resident:
                rec.resident, rec.resident_since = True, self.step
        plan = PhasePlan(epoch, tuple(w.commits), tuple(w.rollbacks), residents, rounds, writes)
        w.commits, w.rollbacks = [], []
        self.step = max(self.step + 1, end)
        return plan

    # -- settling ------------------------------------------------------------------------------
    def receipts(self, result: PhaseResult) -> list[tuple[str, int]]:
        """(owner, expected version) of every WRITE to commit in the directory (owners still held)."""
        return [(r.owner_id, r.base_version) for r in result.receipts if r.owner_id in self.owners]

    def settle(self, worker_id: str, plan: PhasePlan, result: PhaseResult,
               accepted: dict[str, bool], now: float = 0.0) -> dict[str, list[int]]:
        """Apply a phase's result; `accepted`: the directory's verdict per receipt owner."""
        w = self.workers[worker_id]
        live = self.owners   # NOTE: an owner released while its phase ran is skipped, never settled
        for o, toks in result.tokens.items():
            if o in live:
                live[o].tokens.extend(toks)
                live[o].token_times.extend([now] * len(toks))
        for o, p in result.progress.items():
            if o in live:
                live[o].progress, live[o].last_run_step = p, self.step
        for o in result.spilled:
            if o in live:
                live[o].resident = False
        receipted = {r.owner_id for r in result.receipts}
        for group in plan.writes:
            for o in group.owner_ids:
                if o not in live:
                    continue
                if o in receipted and accepted.get(o, False):
                    self.ledger.commit(o, self.ledger.committed(o) + 1)
                    self.owners[o].progress = self.owners[o].progress.after_write()   # published next phase
                    w.commits.append(o)
                else:
                    self.ledger.rollback(o)
                    if o in receipted:
                        w.rollbacks.append(o)
        return {o: list(t) for o, t in result.tokens.items() if o in live}

    # -- recovery -------------------------------------------------------------------------------
    def worker_lost(self, worker_id: str) -> list[str]:
        """Mark a worker dead; return its owners, each rolled back to its committed version and
        re-pointed at a live worker (the caller re-admits them there by replay)."""
        w = self.workers[worker_id]
        w.alive, w.commits, w.rollbacks = False, [], []
        moved = []
        for o in self.owners_on(worker_id):
            rec = self.owners[o]
            self.ledger.rollback(o)
            rec.progress = replace(rec.progress, writes=self.ledger.committed(o))
            rec.worker_id, rec.resident = self.choose_worker(o), True
            moved.append(o)
        return moved

    def replay_target(self, owner_id: str) -> OwnerProgress:
        return self.owners[owner_id].progress
