"""SchedulerCore: the scheduler's decisions as pure data (the Ray actor is a thin shell over it).

It owns the version ledger and, per worker, a planner. It mirrors each owner's progress and
token log, chooses residents and plans phases (PhasePlan out), then settles results (PhaseResult
in): WRITE receipts become ledger commits once the directory accepted them, and the worker
publishes them at the start of its next phase. It also decides recovery after a lost worker.
Policies come by name (`from_policies`): grouping and fairness are per worker (they keep state),
placement and residency are shared; when a worker's owners outnumber its slots, waiting owners
get slots in the fairness order, and `settle` charges each tenant the tokens it was served.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable, Mapping

from policies.autoscaling import ScaleObservation, WorkerUsage
from policies.eviction import LRUResidency, Residency, ResidencyPolicy, make_residency
from policies.fairness import make_fairness
from policies.grouping import make_grouping
from policies.placement import LeastLoaded, PlacementPolicy, WorkerLoad, make_placement
from rwttt_ray.core.ledger import VersionLedger
from rwttt_ray.core.phase import PhasePlan, PhaseResult, plan_phase
from rwttt_ray.core.owners import OwnerRecord, OwnerState, WorkerRecord
from rwttt_ray.core.planner import BatchPlanner
from rwttt_ray.core.progress import OwnerProgress
from rwttt_ray.core.tenancy import CapacityFullError
from rwttt_ray.core.types import Backend, Effect, TransitionTag

__all__ = ["OwnerRecord", "SchedulerCore", "WorkerRecord"]


class SchedulerCore(OwnerState):
    def __init__(self, chunk: int, ttt: bool = True, max_group_size: int = 64, wait_budget_steps: int = 0,
                 rounds_per_call: int = 64, placement: PlacementPolicy | None = None,
                 residency: ResidencyPolicy | None = None, grouping_policy: str = "greedy",
                 fairness_policy: str = "vtc", weights: Mapping[str, float] | None = None,
                 align_rounds: int | None = None) -> None:
        self.chunk, self.ttt, self.rounds_per_call = chunk, ttt, rounds_per_call
        self.align_rounds = chunk // 2 if align_rounds is None else align_rounds   # see plan_phase
        self.max_group_size, self.wait_budget_steps = max_group_size, wait_budget_steps
        self.placement = placement or LeastLoaded()
        self.residency = residency or LRUResidency()
        self.grouping_policy, self.fairness_policy = grouping_policy, fairness_policy
        self.weights = dict(weights or {})
        make_grouping(grouping_policy), make_fairness(fairness_policy, self.weights)   # fail fast on a bad name
        self.ledger = VersionLedger()
        self.owners: dict[str, OwnerRecord] = {}
        self.workers: dict[str, WorkerRecord] = {}
        self.step = 0

    @classmethod
    def from_policies(cls, chunk: int, ttt: bool = True, *, max_group_size: int = 64, wait_budget_steps: int = 0,
                      rounds_per_call: int = 64, quantum_steps: int | None = None, grouping_policy: str = "greedy",
                      placement_policy: str = "least_loaded", eviction_policy: str = "lru",
                      fairness_policy: str = "vtc", weights: Mapping[str, float] | None = None,
                      align_rounds: int | None = None) -> "SchedulerCore":
        """A core whose policies are chosen by name (RwtttConfig's *_policy fields); `weights`:
        tenant -> share of contended slots (fairness and tenant_lru; default 1)."""
        return cls(chunk, ttt, max_group_size, wait_budget_steps, rounds_per_call,
                   placement=make_placement(placement_policy),
                   residency=make_residency(eviction_policy, quantum_steps, weights),
                   grouping_policy=grouping_policy, fairness_policy=fairness_policy, weights=weights,
                   align_rounds=align_rounds)

    # -- workers and owners ----------------------------------------------------------------
    def add_worker(self, worker_id: str, shape_prefix: str, capacity: int, max_owners: int | None = None) -> None:
        # NOTE: "greedy" with w > 0 keeps the planner's own default, which waits as wait_budget does
        grouping = None if self.grouping_policy == "greedy" else make_grouping(
            self.grouping_policy, self.wait_budget_steps, self.max_group_size)
        self.workers[worker_id] = WorkerRecord(shape_prefix, capacity, planner=BatchPlanner(
            grouping, max_group_size=self.max_group_size, wait_budget_steps=self.wait_budget_steps),
            fairness=make_fairness(self.fairness_policy, self.weights), max_owners=max_owners)

    def loads(self) -> dict[str, WorkerLoad]:
        """Per worker: owners, slots, and whether it takes new owners (alive and not draining)."""
        return {w: WorkerLoad(len(self.owners_on(w)), r.capacity, r.alive and not r.draining)
                for w, r in self.workers.items()}

    def choose_worker(self, owner_id: str, home: str | None = None) -> str:
        """A worker for the owner; `home`: where its state is now (a hint for affinity)."""
        return self.placement.choose(owner_id, self.loads(), home)

    def admission_worker(self, owner_id: str) -> str:
        """A worker for a new owner among those with room (owners below their max_owners);
        CapacityFullError (429) when every live worker is full."""
        return self.placement.choose(owner_id, self._with_room())

    def check_admission(self) -> None:
        """CapacityFullError (429) if live workers exist and none can hold one more owner."""
        self._with_room()

    def _with_room(self) -> dict[str, WorkerLoad]:
        loads = self.loads()
        room = {w: load for w, load in loads.items() if self._fits(w, load.num_owners)}
        live = [load.num_owners for load in loads.values() if load.alive]
        if live and not any(load.alive for load in room.values()):
            raise _full(f"the cluster holds {sum(live)} owners, all its workers take")
        return room

    def _fits(self, worker_id: str, num_owners: int) -> bool:
        cap = self.workers[worker_id].max_owners
        return cap is None or num_owners < cap

    def check_room(self, worker_id: str) -> None:
        """CapacityFullError (429) unless the worker can hold one more owner (a fork stays on its
        parent's worker)."""
        held = len(self.owners_on(worker_id))
        if not self._fits(worker_id, held):
            raise _full(f"worker {worker_id} holds {held} owners, all it takes")

    def scale_observation(self, num_pending: int = 0) -> ScaleObservation:
        """What an autoscaler sees: each live, non-draining worker's slots and owners."""
        usage = tuple(WorkerUsage(w, r.capacity, sum(not self.owners[o].finished for o in self.owners_on(w)),
                                  len(self.owners_on(w)))
                      for w, r in sorted(self.workers.items()) if r.alive and not r.draining)
        return ScaleObservation(usage, num_pending)

    def drain_targets(self, worker_id: str) -> dict[str, str]:
        """Where each owner of a draining worker goes, chosen by the placement policy as if
        they were moved one by one (home: the worker it leaves)."""
        loads = {w: load for w, load in self.loads().items() if w != worker_id}
        targets = {}
        for o in self.owners_on(worker_id):
            dst = self.placement.choose(o, loads, worker_id)
            targets[o] = dst
            loads[dst] = replace(loads[dst], num_owners=loads[dst].num_owners + 1)
        return targets

    def rebalance_moves(self, dst: str) -> list[str]:
        """Owners waiting for a slot on crowded workers that a new worker `dst` should take over
        (at most its free slots; from each worker only those beyond its own slots)."""
        free = self.workers[dst].capacity - sum(not self.owners[o].finished for o in self.owners_on(dst))
        moves: list[str] = []
        for w, rec in sorted(self.workers.items()):
            if w == dst or not rec.alive:
                continue
            active = [o for o in self.owners_on(w) if not self.owners[o].finished]
            waiting = [o for o in active if not self.owners[o].resident]
            moves += waiting[:max(0, len(active) - rec.capacity)]
        return moves[:max(0, free)]

    # -- planning -----------------------------------------------------------------------------
    def _tag(self, worker_id: str) -> Callable[[str, OwnerProgress, int], TransitionTag]:
        prefix = self.workers[worker_id].shape_prefix

        def tag(owner_id: str, p: OwnerProgress, version: int) -> TransitionTag:
            eff = Effect.WRITE if p.write_pending else Effect.READ
            return TransitionTag(owner_id, Backend.FAST_WEIGHT, p.shape_class(prefix), eff, version, worker_id)
        return tag

    def _residents(self, worker_id: str) -> tuple[str, ...]:
        owners = self.owners_on(worker_id)
        rank = self._fair_rank(worker_id, owners)
        info = [Residency(o, r.resident, not r.finished, r.last_run_step, r.resident_since, r.pinned,
                          r.tenant_id, rank.get(o, 0)) for o in owners for r in [self.owners[o]]]
        return self.residency.residents(info, self.workers[worker_id].capacity, self.step)

    def _fair_rank(self, worker_id: str, owners: list[str]) -> dict[str, int]:
        """When owners with work outnumber the slots: each waiting owner's place in the fairness
        order (asked in LRU order, so one tenant keeps the LRU order); else nothing to order."""
        w = self.workers[worker_id]
        active = [o for o in owners if not self.owners[o].finished]
        if len(active) <= w.capacity or w.fairness is None:
            return {}
        waiting = sorted((o for o in active if not self.owners[o].resident),
                         key=lambda o: (not self.owners[o].pinned, self.owners[o].last_run_step))
        order = w.fairness.order([(o, self.owners[o].tenant_id) for o in waiting])
        return {o: i for i, o in enumerate(order)}

    def next_plan(self, worker_id: str, epoch: int) -> PhasePlan | None:
        """The worker's next phase, or None when it has nothing to do."""
        w = self.workers[worker_id]
        assert w.planner is not None, "add_worker gives every worker a planner"
        residents = self._residents(worker_id)
        progress = {o: self.owners[o].progress for o in residents if self.owners[o].error is None}   # a cut turn stops
        rounds, writes, end = plan_phase(progress, self.ledger.committed, w.planner, self._tag(worker_id),
                                         self.step, self.rounds_per_call, self.align_rounds)
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
                live[o].logprobs.extend(result.logprobs.get(o, ()))
        for o, reason in result.stops.items():
            if o in live:
                live[o].stop_reason = reason
        for o, p in result.progress.items():
            if o in live:
                self._charge(w, live[o], p)
                live[o].progress, live[o].last_run_step = p, self.step
        for o in result.spilled:
            if o in live:
                live[o].resident = False
        for o, message in result.failed.items():
            if o in live and live[o].error is None:
                live[o].error = f"worker error: {message}"
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

    @staticmethod
    def _charge(w: WorkerRecord, rec: OwnerRecord, progress: OwnerProgress) -> None:
        """Charge the owner's tenant the tokens it was served (fed) in this phase."""
        if w.fairness is not None:
            w.fairness.charge(rec.tenant_id, max(0, progress.pos - rec.progress.pos))

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


def _full(what: str) -> CapacityFullError:
    return CapacityFullError(f"{what} (device slots and the --swap-space host tier): retry when some have ended", 1)
