"""WorkerCore: one worker's owners and the execution of a phase (torch, no ray).

It fences on the scheduler's epoch, publishes or discards the candidates the ledger decided on,
keeps the planned residents in device slots (spilling others to the host tier as bytes), runs
the planned READ rounds and WRITE groups (re-checking each group, dropping owners that stopped
early), and reports tokens, actual progress and WRITE receipts. The Ray actor is a thin shell.
"""
from __future__ import annotations

import time
from collections import OrderedDict

from rwttt_ray.core.phase import PhasePlan, PhaseResult
from rwttt_ray.core.progress import OwnerProgress
from rwttt_ray.core.types import Group
from rwttt_ray.ttt import state_io
from rwttt_ray.ttt.model import TTTModel
from rwttt_ray.ttt.runner import GroupRunner
from rwttt_ray.ttt.sampling import Request


class StaleEpochRefused(RuntimeError):
    """A plan from a scheduler older than one this worker already obeyed."""


class WorkerCore:
    def __init__(self, model: TTTModel, worker_id: str, max_states: int = 64, record_logits: bool = False) -> None:
        self.worker_id, self.max_states = worker_id, max_states
        self.runner = GroupRunner(model, max_owners=max_states, placement=worker_id, record_logits=record_logits)
        self.host: OrderedDict[str, bytes] = OrderedDict()     # spilled owners (host tier)
        self.epoch = 0
        self.stats = {"spills": 0, "reloads": 0, "spill_s": 0.0, "reload_s": 0.0}

    @property
    def shape_prefix(self) -> str:
        return self.runner.shape_prefix

    # -- owners ---------------------------------------------------------------------------
    def admit(self, req: Request, generated: list[int] | None = None, target: OwnerProgress | None = None) -> None:
        """A new owner, or (with a target) one rebuilt by replaying its token log."""
        self._make_room(1, keep=())
        self.runner.admit(req, generated)
        if target is not None:
            self.runner.replay(req.owner_id, target)

    def release(self, owner_id: str) -> None:
        self.host.pop(owner_id, None)
        if owner_id in self.runner.owners:
            self.runner.release(owner_id)

    def owns(self, owner_id: str) -> bool:
        return owner_id in self.runner.owners or owner_id in self.host

    def progress_of(self, owner_id: str) -> OwnerProgress:
        if owner_id in self.runner.owners:
            return self.runner.progress(owner_id)
        return _progress_from_blob(self.host[owner_id], self.runner.settings)

    # -- tiers ----------------------------------------------------------------------------
    def export_owner(self, owner_id: str) -> bytes:
        """The owner's committed state as bytes; it leaves this worker."""
        blob = self.host.pop(owner_id, None)
        if blob is None:
            blob = state_io.dumps(self.runner.snapshot(owner_id))
            self.runner.release(owner_id)
        return blob

    def import_owner(self, blob: bytes) -> str:
        snap = state_io.loads(blob)
        self._make_room(1, keep=())
        self.runner.restore(snap)
        return snap.request.owner_id

    def spill(self, owner_id: str) -> None:
        t0 = time.perf_counter()
        self.host[owner_id] = state_io.dumps(self.runner.snapshot(owner_id))
        self.runner.release(owner_id)
        self.stats["spills"] += 1
        self.stats["spill_s"] += time.perf_counter() - t0

    def reload(self, owner_id: str) -> None:
        t0 = time.perf_counter()
        self.runner.restore(state_io.loads(self.host.pop(owner_id)))
        self.stats["reloads"] += 1
        self.stats["reload_s"] += time.perf_counter() - t0

    def _make_room(self, n: int, keep: tuple[str, ...]) -> list[str]:
        spilled = []
        for owner_id in list(self.runner.owners):
            if self.runner.seqs.num_free() >= n:
                break
            if owner_id not in keep:
                self.spill(owner_id)
                spilled.append(owner_id)
        return spilled

    def _ensure_residents(self, residents: tuple[str, ...]) -> list[str]:
        missing = [o for o in residents if o in self.host]
        spilled = self._make_room(len(missing), keep=residents)
        for owner_id in missing:
            self.reload(owner_id)
        return spilled

    # -- a phase --------------------------------------------------------------------------
    def run_phase(self, plan: PhasePlan) -> PhaseResult:
        if plan.epoch < self.epoch:
            raise StaleEpochRefused(f"plan of epoch {plan.epoch} refused: worker obeys epoch {self.epoch}")
        self.epoch = plan.epoch
        t0 = time.perf_counter()
        for owner_id in plan.commits:
            self.runner.commit(owner_id)
        for owner_id in plan.rollbacks:
            self.runner.rollback(owner_id)
        res = PhaseResult(spilled=self._ensure_residents(plan.residents))
        for groups in plan.rounds:
            for group in groups:
                self._read(group, res)
        for group in plan.writes:
            self._write(group, res)
        touched = {o for g in (*[g for r in plan.rounds for g in r], *plan.writes) for o in g.owner_ids}
        res.progress = {o: self.runner.progress(o) for o in touched | set(plan.commits) if o in self.runner.owners}
        res.compute_s = time.perf_counter() - t0
        return res

    def _live_members(self, group: Group) -> Group | None:
        """The group without owners that stopped early (a stop token); refuses any other mismatch."""
        tags = []
        for tag in group.tags:
            actual = self.runner.next_tag(tag.owner_id, self.runner.owners[tag.owner_id].writes)
            if actual == tag:
                tags.append(tag)
            elif not self.runner.progress(tag.owner_id).done:
                raise RuntimeError(f"owner {tag.owner_id}: planned {tag.key.shape_class}, worker has {actual}")
        return Group(group.key, tuple(tags), group.step) if tags else None

    def _read(self, group: Group, res: PhaseResult) -> None:
        live = self._live_members(group)
        if live is not None:
            for owner_id, tok in self.runner.run(live).tokens.items():
                res.tokens.setdefault(owner_id, []).append(tok)

    def _write(self, group: Group, res: PhaseResult) -> None:
        try:
            live = self._live_members(group)
            if live is not None:
                res.receipts.extend(self.runner.run(live).receipts)
        except Exception as exc:   # the runner already rolled the candidates back
            res.failed_writes.extend(group.owner_ids)
            res.error = f"WRITE group failed: {exc}"


def _progress_from_blob(blob: bytes, settings) -> OwnerProgress:
    h = state_io.read_header(blob)
    req = h["request"]
    return OwnerProgress(settings.chunk, len(req["prompt"]), len(req["prompt"]) + len(h["generated"]),
                         req["max_new_tokens"], pos=h["pos"], writes=h["version"], done=h["done"], ttt=settings.enabled)
