"""WorkerCore: one worker's owners and the execution of a phase (torch, no ray).

It fences on the scheduler's epoch, publishes or discards the candidates the ledger decided on,
keeps the planned residents in device slots (spilling others to the host tier), runs
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
from rwttt_ray.ttt.capacity import CapacityPlan, swap_bytes
from rwttt_ray.ttt.host_state import HostState, blob_of, snapshot_of
from rwttt_ray.ttt.host_tier import HostTier
from rwttt_ray.ttt.model import TTTModel
from rwttt_ray.ttt.rounds import StaticRounds
from rwttt_ray.ttt.runner import GroupRunner
from rwttt_ray.ttt.sampling import Request


class StaleEpochRefused(RuntimeError):
    """A plan from a scheduler older than one this worker already obeyed."""


class WorkerCore(HostTier):
    def __init__(self, model: TTTModel, worker_id: str, max_states_per_worker: int = 64, record_logits: bool = False,
                 *, runner_cls: type[GroupRunner] = GroupRunner, capacity: CapacityPlan | None = None,
                 write_reserve: int | None = None, static_rounds: bool = True, graphs: bool = True,
                 swap_space: float | None = None) -> None:
        """`runner_cls`: the GroupRunner (a baseline's or a broken one, for the bench and its gates);
        `capacity`: slots, WRITE reserve and KV blocks sized from a memory budget (else
        `max_states_per_worker` slots, `write_reserve` candidates, KV for every slot at full context);
        `static_rounds`: decode rounds on the static-shape path (else eagerly, group by group);
        `graphs`: CUDA graphs for those rounds on CUDA (off: --enforce-eager); `swap_space`: GiB
        the host tier may hold (None: no limit)."""
        slots = capacity.slots if capacity is not None else max_states_per_worker
        self.worker_id, self.max_states_per_worker = worker_id, slots
        kw = {} if capacity is None else dict(write_reserve=capacity.write_reserve, block_size=capacity.block_size,
                                              kv_blocks=capacity.kv_blocks,
                                              max_seq_len=min(model.max_seq_len, capacity.max_tokens_per_owner()))
        self.runner = runner_cls(model, max_owners=slots, placement=worker_id, record_logits=record_logits,
                                 **{"write_reserve": write_reserve, **kw})
        self.static = StaticRounds(self.runner, graphs=graphs) if static_rounds and runner_cls.static_rounds else None
        self.host: OrderedDict[str, bytes | HostState] = OrderedDict()     # the host tier (HostTier)
        self.swap_space, self.swap_bytes = swap_space, swap_bytes(swap_space)
        self.waiting: dict[str, tuple] = {}                      # admitted, not yet given a device slot
        self.kept: dict[tuple[str, int], bytes] = {}             # (owner, version) -> state, for rollback
        self.keep_due: set[str] = set()                          # session turns to keep once they end
        self.epoch = 0
        self.stats = {"spills": 0, "reloads": 0, "spill_s": 0.0, "reload_s": 0.0}
        self.profile = {"forward": 0.0, "write": 0.0}          # seconds in READ rounds and WRITE groups

    @property
    def shape_prefix(self) -> str:
        return self.runner.shape_prefix

    # -- owners ---------------------------------------------------------------------------
    def admit(self, req: Request, generated: list[int] | None = None, target: OwnerProgress | None = None) -> None:
        """A new owner, or (with a target) one rebuilt by replaying its token log. It takes a device
        slot now if one is free, else when a phase first names it a resident."""
        self.waiting[req.owner_id] = (req, generated, target)
        if req.keep_at_end:
            self.keep_due.add(req.owner_id)
        if self.runner.seqs.num_free() > 0:
            self._materialize(req.owner_id)

    def _materialize(self, owner_id: str) -> None:
        req, generated, target = self.waiting.pop(owner_id)
        self.runner.admit(req, generated)
        if target is not None:
            self.runner.replay(owner_id, target)

    def release(self, owner_id: str, keep_versions: bool = False) -> None:
        if not keep_versions:
            self.drop_kept(owner_id)
            self.keep_due.discard(owner_id)
        self.host.pop(owner_id, None)
        self.waiting.pop(owner_id, None)
        if owner_id in self.runner.owners:
            self.runner.release(owner_id)

    def owns(self, owner_id: str) -> bool:
        return owner_id in self.runner.owners or owner_id in self.host or owner_id in self.waiting

    def progress_of(self, owner_id: str) -> OwnerProgress:
        if owner_id in self.runner.owners:
            return self.runner.progress(owner_id)
        if owner_id in self.waiting:
            req, gen, target = self.waiting[owner_id]
            return target or OwnerProgress.fresh(self.runner.settings.chunk, len(req.prompt), len(gen or []),
                                                 req.max_new_tokens, ttt=self.runner.settings.enabled)
        entry = self.host[owner_id]
        if isinstance(entry, HostState):
            s = entry.snap
            return _progress(self.runner.settings, len(s.request.prompt), len(s.generated), s.request.max_new_tokens,
                             s.pos, s.version, s.done)
        h = state_io.read_header(entry)
        return _progress(self.runner.settings, len(h["request"]["prompt"]), len(h["generated"]),
                         h["request"]["max_new_tokens"], h["pos"], h["version"], h["done"])

    def deltas(self, owner_id: str) -> list | None:
        """The owner's committed dW [D, F] per TTT layer, wherever it lives (None: still zero)."""
        if owner_id in self.host:
            snap = snapshot_of(self.host[owner_id])
            dws = [snap.tensors[k].t() for k in sorted(snap.tensors, key=_tensor_order) if k.startswith("dw.")]
            return dws or None
        return self.runner.deltas(owner_id)

    # -- sessions ---------------------------------------------------------------------------
    def _resident(self, owner_id: str, keep: tuple[str, ...] = ()) -> None:
        if owner_id not in self.runner.owners:
            self._ensure_residents((owner_id, *keep))

    def extend(self, req: Request) -> None:
        self._resident(req.owner_id)
        self.runner.extend(req)
        if req.keep_at_end:
            self.keep_due.add(req.owner_id)

    def fork(self, parent_id: str, child: Request) -> None:
        self._resident(parent_id)
        self._make_room(1, keep=(parent_id,))
        self.runner.fork(parent_id, child)

    def keep(self, owner_id: str, version: int) -> None:
        """Keep the owner's committed state at `version` so a later rollback can restore it."""
        if owner_id in self.host:
            self.kept[(owner_id, version)] = blob_of(self.host[owner_id])
        else:
            self.kept[(owner_id, version)] = state_io.dumps(self.runner.snapshot(owner_id))

    def restore_kept(self, owner_id: str, version: int) -> tuple:
        """Replace the owner's state by the one kept at `version`; returns (prompt, generated, progress)."""
        blob = self.kept[(owner_id, version)]
        self.release(owner_id, keep_versions=True)
        self.keep_due.discard(owner_id)          # the restored state is a kept one already
        self.host[owner_id] = blob
        self._resident(owner_id)
        st = self.runner.owners[owner_id]
        return st.request, list(st.generated), st.progress

    def _keep_ended_turns(self, res: PhaseResult) -> None:
        """Keep every session turn that has ended with its WRITEs published (a turn that ends at a
        chunk boundary is kept in the phase that publishes its last WRITE); report them."""
        for owner_id in sorted(self.keep_due):
            if owner_id in self.waiting or not self.owns(owner_id) or self.runner.pool.has_candidate(owner_id):
                continue
            progress = self.progress_of(owner_id)
            if not progress.finished:
                continue
            self.keep_due.discard(owner_id)
            try:
                self.keep(owner_id, progress.writes)
                res.kept.append((owner_id, progress.writes))
            except Exception as exc:      # the turn still ends; its state is just not a rollback point
                res.kept.append((owner_id, None))
                res.error = f"keeping {owner_id} at v{progress.writes} failed: {exc}"

    def drop_kept(self, owner_id: str) -> None:
        for key in [k for k in self.kept if k[0] == owner_id]:
            del self.kept[key]

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
        res = PhaseResult()
        self._keep_ended_turns(res)
        res.spilled = self._ensure_residents(plan.residents)
        self._run_rounds(plan.rounds, res)
        t_write = time.perf_counter()
        for group in plan.writes:
            self._write(group, res)
        self.profile["write"] += time.perf_counter() - t_write
        self._keep_ended_turns(res)
        touched = {o for g in (*[g for r in plan.rounds for g in r], *plan.writes) for o in g.owner_ids}
        res.progress = {o: self.runner.progress(o) for o in touched | set(plan.commits) if o in self.runner.owners}
        res.compute_s = time.perf_counter() - t0
        return res

    def _run_rounds(self, rounds: tuple[tuple[Group, ...], ...], res: PhaseResult) -> None:
        """READ rounds: runs of decode rounds on the static path, the others group by group."""
        t0, i = time.perf_counter(), 0
        while i < len(rounds):
            j = i
            while self.static is not None and j < len(rounds) and self.static.takes(rounds[j]):
                j += 1
            results = self.static.run([g for (g,) in rounds[i:j]], res.failed) if j > i else None
            if results is None:
                for group in rounds[i]:
                    self._read(group, res)
                i += 1
                continue
            for out in results:
                self._collect(out, res)
            i = j
        self.profile["forward"] += time.perf_counter() - t0

    def _live_members(self, group: Group, res: PhaseResult) -> Group | None:
        """The group without owners that stopped early (a stop token) or failed in this phase;
        refuses any other mismatch."""
        tags = []
        for tag in group.tags:
            if tag.owner_id in res.failed:
                continue
            actual = self.runner.next_tag(tag.owner_id, self.runner.owners[tag.owner_id].writes)
            if actual == tag:
                tags.append(tag)
            elif not self.runner.progress(tag.owner_id).done:
                raise RuntimeError(f"owner {tag.owner_id}: planned {tag.key.shape_class}, worker has {actual}")
        return Group(group.key, tuple(tags), group.step) if tags else None

    def _isolated(self, group: Group, res: PhaseResult, run, room: int | None = None) -> None:
        """Run a group (its first `room` live members, if given); if it raises, every member
        alone: a member that fails alone fails (its owner ends with the error), the others go
        on, so one request cannot fail its group. A READ that raised wrote only the KV and
        buffer rows a re-run writes again; a WRITE that raised rolled every member's candidate back."""
        live = self._live_members(group, res)
        if live is not None and room is not None and room < len(live):
            live = Group(live.key, live.tags[:room], live.step) if room else None
        if live is None:
            return
        try:
            run(live)
            return
        except Exception as exc:
            if len(live) == 1:
                res.failed[live.owner_ids[0]] = f"{type(exc).__name__}: {exc}"
                return
        for tag in live.tags:
            self._isolated(Group(live.key, (tag,), live.step), res, run)

    def _read(self, group: Group, res: PhaseResult) -> None:
        self._isolated(group, res, lambda live: self._collect(self.runner.run(live), res))

    @staticmethod
    def _collect(out, res: PhaseResult) -> None:
        for owner_id, tok in out.tokens.items():
            res.tokens.setdefault(owner_id, []).append(tok)
        for owner_id, entry in out.logprobs.items():
            res.logprobs.setdefault(owner_id, []).append(entry)
        res.stops.update(out.stops)
        res.failed.update(out.failed)

    def _write(self, group: Group, res: PhaseResult) -> None:
        """A WRITE group; members beyond the free candidate slots wait for a later phase (their
        WRITE stays pending, and the scheduler plans it again once the ledger has published)."""
        self._isolated(group, res, lambda g: res.receipts.extend(self.runner.run(g).receipts),
                       room=self.runner.write_room())


def _tensor_order(name: str) -> tuple[str, int]:
    kind, index = name.split(".")
    return kind, int(index)


def _progress(settings, prompt_len: int, generated: int, max_new_tokens: int, pos: int, writes: int,
              done: bool) -> OwnerProgress:
    """A spilled owner's progress, from its snapshot's fields."""
    return OwnerProgress.fresh(settings.chunk, prompt_len, generated, max_new_tokens, pos=pos, writes=writes,
                               done=done, ttt=settings.enabled)
