"""The owner and worker state the scheduler core keeps, and the methods that change it.

OwnerRecord mirrors one owner (its request, progress and token log); WorkerRecord one worker
(its slots, liveness, and the ledger's verdicts it has not been told yet). `OwnerState` is the
base of SchedulerCore: besides planning and settling (scheduler.py), these methods are the only
writers of owners, workers and the version ledger; the Ray shell (actors/) calls them and never
assigns into the records (tests/core/test_core_owns_state.py checks it). Names follow vLLM's
SchedulerInterface where one fits (finish_requests). Standard library only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from policies.fairness import FairnessPolicy
from rwttt_ray.core.ledger import VersionLedger
from rwttt_ray.core.phase import PhasePlan
from rwttt_ray.core.planner import BatchPlanner
from rwttt_ray.core.progress import OwnerProgress
from rwttt_ray.core.request import Request


@dataclass
class OwnerRecord:
    request: Request
    progress: OwnerProgress
    worker_id: str
    tokens: list[int] = field(default_factory=list)   # generated so far (the token log)
    token_times: list[float] = field(default_factory=list)   # wall clock when each token was settled
    logprobs: list = field(default_factory=list)      # per token, when the request asks for them
    stop_reason: int | str | None = None              # the stop id or string that ended the turn
    resident: bool = True
    last_run_step: int = 0
    resident_since: int = 0
    pinned: bool = False
    error: str | None = None
    tenant_id: str = ""                                # who pays (fairness, tenant_lru)

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
    fairness: FairnessPolicy | None = None              # order of waiting owners across tenants
    draining: bool = False                               # being emptied: takes no new owners
    max_owners: int | None = None                        # device slots + host tier (None: no limit)


class OwnerState:
    """owners, workers and the ledger, with their writers (SchedulerCore sets them up)."""

    ledger: VersionLedger
    owners: dict[str, OwnerRecord]
    workers: dict[str, WorkerRecord]
    chunk: int
    ttt: bool
    step: int

    def owners_on(self, worker_id: str) -> list[str]:
        return [o for o, r in self.owners.items() if r.worker_id == worker_id]

    # -- requests (vLLM: add_request) ----------------------------------------------------------
    def admit(self, req: Request, worker_id: str, version: int = 0, tokens: list[int] | None = None,
              progress: OwnerProgress | None = None, tenant_id: str = "") -> OwnerRecord:
        """A new owner on `worker_id` at `version` (with `tokens` generated already: a replay or
        an adopted state); it waits for the residency policy to give it a slot."""
        toks = list(tokens or [])
        progress = progress or OwnerProgress.fresh(self.chunk, len(req.prompt), len(toks), req.max_new_tokens,
                                                   ttt=self.ttt)
        self.ledger.register(req.owner_id, version)
        rec = OwnerRecord(req, progress, worker_id, toks, resident=False, last_run_step=self.step,
                          resident_since=self.step, tenant_id=tenant_id)
        self.owners[req.owner_id] = rec
        return rec

    def start_turn(self, req: Request) -> OwnerRecord:
        """A held owner's next turn (a session's): its stream is `req.prompt` (all it held and
        the new text); the token log starts empty and any earlier end is cleared."""
        rec = self.owners[req.owner_id]
        rec.request, rec.tokens, rec.token_times, rec.logprobs = req, [], [], []
        rec.error, rec.stop_reason = None, None
        rec.progress = rec.progress.next_turn(len(req.prompt), req.max_new_tokens)
        return rec

    def fork(self, parent_id: str, req: Request, tenant_id: str = "") -> OwnerRecord:
        """A new owner `req.owner_id` with a copy of the parent's committed state, on its worker
        (the worker holds the copy already: resident)."""
        parent = self.owners[parent_id]
        child = self.admit(req, parent.worker_id, version=self.ledger.committed(parent_id),
                           tokens=list(parent.tokens), progress=parent.progress, tenant_id=tenant_id)
        child.resident, child.stop_reason = True, parent.stop_reason
        return child

    def reset_to(self, owner_id: str, version: int, request: Request, tokens: list[int],
                 progress: OwnerProgress) -> None:
        """The owner goes back to a state its worker kept at `version` (a rollback, a cut turn):
        request, token log and progress of that state; the worker holds it (resident)."""
        self.ledger.reset(owner_id, version)
        rec = self.owners[owner_id]
        rec.request, rec.tokens, rec.progress, rec.resident = request, list(tokens), progress, True

    def adopt_write(self, owner_id: str) -> None:
        """The worker published a WRITE the directory had committed (a restart found it mid-commit)."""
        rec = self.owners[owner_id]
        rec.progress = rec.progress.after_write()

    # -- ends --------------------------------------------------------------------------------
    def finish_requests(self, owner_ids: Iterable[str], reason: str) -> None:
        """End these owners' turns with `reason` (not planned again), unless one already ended
        with an error, which it keeps. Unknown owners are skipped."""
        for o in owner_ids:
            if (rec := self.owners.get(o)) is not None and rec.error is None:
                rec.error = reason

    def fail(self, owner_ids: Iterable[str], reason: str, *, rollback: bool = False) -> None:
        """End these owners' turns with the error `reason`; with `rollback`, any uncommitted WRITE
        of theirs is rolled back too. Unknown owners are skipped."""
        for o in owner_ids:
            if (rec := self.owners.get(o)) is not None:
                rec.error = reason
                if rollback:
                    self.ledger.rollback(o)

    def fail_running(self, worker_id: str, reason: str) -> list[str]:
        """Fail the worker's unfinished owners (their uncommitted WRITEs rolled back); returns them."""
        running = [o for o in self.owners_on(worker_id) if not self.owners[o].finished]
        self.fail(running, reason, rollback=True)
        return running

    def abort_writes(self, plan: PhasePlan) -> None:
        """A phase that never came back: the WRITEs it began are rolled back (nothing committed)."""
        for group in plan.writes:
            for o in set(group.owner_ids) & set(self.owners):
                self.ledger.rollback(o)

    def release(self, owner_id: str) -> OwnerRecord | None:
        """Forget the owner (its request is over, or its state dropped); None if not held."""
        rec = self.owners.pop(owner_id, None)
        if rec is not None:
            self.ledger.remove(owner_id)
            if (w := self.workers.get(rec.worker_id)) is not None and w.planner is not None:
                w.planner.withdraw(owner_id)
        return rec

    def forget(self, owner_id: str) -> OwnerRecord:
        rec = self.release(owner_id)
        if rec is None:
            raise KeyError(owner_id)
        return rec

    # -- where state lives -------------------------------------------------------------------
    def move(self, owner_id: str, worker_id: str) -> None:
        """The owner's state now lives on `worker_id` (a migration or handover completed)."""
        self.owners[owner_id].worker_id = worker_id

    def mark_spilled(self, owner_id: str) -> None:
        """The owner's state left its device slot (spilled to the host tier or the store)."""
        self.owners[owner_id].resident = False

    def take_verdicts(self, worker_id: str, owner_id: str) -> tuple[list[str], list[str]]:
        """The ledger's verdicts on the owner's last WRITE not yet told to its worker: (publish,
        discard); the worker is told now (before its state moves), so no phase tells it again."""
        w = self.workers[worker_id]
        verdicts = [o for o in w.commits if o == owner_id], [o for o in w.rollbacks if o == owner_id]
        w.commits = [o for o in w.commits if o != owner_id]
        w.rollbacks = [o for o in w.rollbacks if o != owner_id]
        return verdicts

    # -- workers -----------------------------------------------------------------------------
    def set_draining(self, worker_id: str, draining: bool = True) -> None:
        """A draining worker takes no new owners (placement skips it)."""
        self.workers[worker_id].draining = draining

    def retire(self, worker_id: str) -> bool:
        """An emptied worker stops serving (its loop ends); False if owners remain there."""
        if self.owners_on(worker_id):
            return False
        self.workers[worker_id].alive = False
        return True

    def worker_dead(self, worker_id: str) -> None:
        """The worker is gone; its owners stay pointed at it (they wait for a live worker)."""
        self.workers[worker_id].alive = False

    def can_replay(self, lost: str) -> bool:
        """Is there a live, non-draining worker besides `lost` to replay its owners on?"""
        return any(r.alive and not r.draining for w, r in self.workers.items() if w != lost)

