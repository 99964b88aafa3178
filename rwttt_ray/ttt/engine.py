"""Engine: the single-process RW-TTT serving loop (continuous batching over one GroupRunner).

Each step: every active owner exposes its next tagged step (READ prefill piece / READ decode /
WRITE at a full chunk); the planner forms legal groups; the runner executes them; WRITE groups
commit through the ledger all-or-nothing (a failed group rolls back every member). Owners arrive
and leave at any step. Decisions are data: tags and groups in, tokens and receipts out.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from rwttt_ray.core.ledger import VersionLedger
from rwttt_ray.core.planner import BatchPlanner
from rwttt_ray.core.types import Effect, Group
from rwttt_ray.ttt.model import TTTModel
from rwttt_ray.ttt.runner import GroupRunner
from rwttt_ray.ttt.sampling import Request

MAX_WRITE_RETRIES = 3


@dataclass
class OwnerOutcome:
    """A finished owner: what it generated, when, and its final committed state."""

    tokens: list[int]
    version: int
    logits: list[torch.Tensor] = field(default_factory=list)
    deltas: list[torch.Tensor] | None = None
    arrival_s: float = 0.0
    token_times_s: list[float] = field(default_factory=list)
    error: str | None = None


@dataclass
class EngineStats:
    steps: int = 0
    groups: int = 0
    group_sizes: list[int] = field(default_factory=list)
    writes_committed: int = 0
    writes_rolled_back: int = 0


class Engine:
    """Planner + ledger + runner in one process."""

    def __init__(self, model: TTTModel, max_owners: int = 64, max_group_size: int = 64,
                 wait_budget_steps: int = 0, record_logits: bool = False, keep_state: bool = False,
                 planner: BatchPlanner | None = None) -> None:
        self.runner = GroupRunner(model, max_owners=max_owners, record_logits=record_logits)
        self.ledger = VersionLedger()
        # NOTE: `planner or ...` would drop a given planner: an empty BatchPlanner is falsy (__len__)
        self.planner = planner if planner is not None else BatchPlanner(max_group_size=max_group_size,
                                                                        wait_budget_steps=wait_budget_steps)
        self.keep_state = keep_state
        self.step_index = 0
        self.stats = EngineStats()
        self.outcomes: dict[str, OwnerOutcome] = {}
        self._arrival: dict[str, float] = {}
        self._times: dict[str, list[float]] = {}
        self._retries: dict[str, int] = {}
        self.issued: list[Group] = []           # every group issued (for audits in tests)
        self.audit_groups = False

    # -- owners ---------------------------------------------------------------------------
    def add(self, req: Request) -> None:
        self.runner.admit(req)
        self.ledger.register(req.owner_id)
        self._arrival[req.owner_id] = time.perf_counter()
        self._times[req.owner_id] = []

    def active(self) -> list[str]:
        return list(self.runner.owners)

    def _finish(self, owner_id: str, error: str | None = None) -> None:
        st = self.runner.owners[owner_id]
        self.outcomes[owner_id] = OwnerOutcome(
            tokens=list(st.generated), version=self.ledger.committed(owner_id), logits=st.logits,
            deltas=self.runner.deltas(owner_id) if self.keep_state else None,
            arrival_s=self._arrival.pop(owner_id), token_times_s=self._times.pop(owner_id), error=error)
        self.planner.withdraw(owner_id)
        self.runner.release(owner_id)
        self.ledger.remove(owner_id)

    # -- the loop -------------------------------------------------------------------------
    def _submit_ready(self, effect: Effect | None) -> None:
        """Submit the next step of every owner without one pending (only `effect` steps if given)."""
        pending = {t.owner_id for t in self.planner.pending()}
        for owner_id in self.active():
            if owner_id in pending:
                continue
            tag = self.runner.next_tag(owner_id, self.ledger.committed(owner_id))
            if tag is None:
                self._finish(owner_id)
            elif effect is None or tag.effect is effect:
                self.planner.submit(tag, self.step_index)

    def _plan_and_execute(self) -> list[tuple[str, int]]:
        plan = self.planner.plan(self.step_index, self.ledger.committed)
        emitted: list[tuple[str, int]] = []
        for group in sorted(plan.groups, key=lambda g: g.effect is not Effect.WRITE):   # WRITEs first
            emitted.extend(self._execute(group))
        now = time.perf_counter()
        for owner_id, _ in emitted:
            self._times[owner_id].append(now)
        return emitted

    def step(self) -> list[tuple[str, int]]:
        """One planner step: WRITE groups, then READ groups (writers READ again in the same step,
        after their commit); returns the (owner_id, token) pairs emitted."""
        self._submit_ready(Effect.WRITE)
        emitted = self._plan_and_execute()
        self._submit_ready(None)
        emitted += self._plan_and_execute()
        self.step_index += 1
        self.stats.steps += 1
        return emitted

    def _execute(self, group: Group) -> list[tuple[str, int]]:
        self.stats.groups += 1
        self.stats.group_sizes.append(len(group))
        if self.audit_groups:
            self.issued.append(group)
        if group.effect is Effect.READ:
            res = self.runner.run(group)
            for owner_id, message in res.failed.items():     # that owner's token only
                self._finish(owner_id, error=message)
            return list(res.tokens.items())
        self._execute_write(group)
        return []

    def _execute_write(self, group: Group) -> None:
        self.ledger.begin_group(group)
        try:
            self.runner.run(group)
        except Exception as exc:  # a failed WRITE group rolls back every member
            self.ledger.rollback_group(group)
            self.stats.writes_rolled_back += len(group)
            self._count_failure(group, exc)
            return
        self.ledger.commit_group(group)
        for owner_id in group.owner_ids:
            self.runner.commit(owner_id)
        self.stats.writes_committed += len(group)

    def _count_failure(self, group: Group, exc: Exception) -> None:
        for owner_id in group.owner_ids:
            self._retries[owner_id] = self._retries.get(owner_id, 0) + 1
            if self._retries[owner_id] > MAX_WRITE_RETRIES:
                self._finish(owner_id, error=f"WRITE failed {MAX_WRITE_RETRIES + 1} times: {exc}")

    def has_work(self) -> bool:
        return bool(self.runner.owners)

    def run(self, requests: list[Request], arrival_steps: list[int] | None = None) -> dict[str, OwnerOutcome]:
        """Serve `requests`, the i-th admitted at step arrival_steps[i] (default: all at step 0)."""
        arrivals = sorted(zip(arrival_steps or [0] * len(requests), range(len(requests))))
        nxt = 0
        while nxt < len(arrivals) or self.has_work():
            while nxt < len(arrivals) and arrivals[nxt][0] <= self.step_index:
                self.add(requests[arrivals[nxt][1]])
                nxt += 1
            self.step()
        return {r.owner_id: self.outcomes[r.owner_id] for r in requests}
