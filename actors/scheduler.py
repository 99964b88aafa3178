"""SchedulerActor: a Ray actor shell over SchedulerCore; the only writer of versions.

One asyncio loop per worker: plan a phase (pure), run it on the worker (one Ray call, many
rounds), commit its WRITE receipts in the directory (fenced CAS, one round trip), settle the
ledger, log tokens, wake waiters. A lost worker's owners are replayed on another worker; a
restarted scheduler (new epoch) rebuilds its ledger from Redis and reconciles with the workers.
With an autoscaling policy and a launcher, a WorkerScaler (actors/scaling.py) adds and drains workers.
"""
from __future__ import annotations

import asyncio
import logging
import time

import ray
from ray.exceptions import RayActorError, RayTaskError

from actors.adoption import adopt_spilled, rebuild_after_restart
from actors.operations import drain_service, migrate_owner
from actors.scheduler_metrics import render_metrics
from actors.directory import (DirectoryEntry, DirectoryUnavailableError, RedisDirectory, StaleEpochError, Tier,
                              UnknownEntryError)
from actors.scaling import WorkerScaler
from actors.worker import WorkerLauncher
from policies.autoscaling import AutoscalingPolicy
from rwttt_ray.config import RwtttConfig
from rwttt_ray.core.request import Request
from actors.sessions import SessionService
from rwttt_ray.core.metrics import SIZE_BUCKETS, Histogram
from rwttt_ray.core.scheduler import SchedulerCore

RETRIES = 10
logger = logging.getLogger(__name__)


def _plan_owners(plan) -> set[str]:
    return {o for r in plan.rounds for g in r for o in g.owner_ids} | {o for g in plan.writes for o in g.owner_ids}


@ray.remote(num_cpus=0, max_restarts=0)
class SchedulerActor:
    def __init__(self, config: RwtttConfig, chunk: int, ttt: bool, redis_url: str, namespace: str,
                 worker_names: list[str], max_rounds: int = 64, quantum_steps: int | None = None,
                 tenant_limits: dict | None = None, launcher: WorkerLauncher | None = None,
                 autoscaler: AutoscalingPolicy | None = None, scale_interval_s: float = 0.5) -> None:
        self.tenant_limits = tenant_limits or {}
        self.counters = {"rwttt_tokens_total": 0, "rwttt_commits_total": 0, "rwttt_rejected_commits_total": 0,
                         "rwttt_groups_total": 0, "rwttt_phases_total": 0}
        self.group_sizes = Histogram(SIZE_BUCKETS)
        self.directory = RedisDirectory(redis_url, namespace)
        self.epoch = self.directory.acquire_epoch()
        weights = {t: float(lim.get("weight", 1.0)) for t, lim in self.tenant_limits.items()}
        self.core = SchedulerCore.from_policies(
            chunk, ttt, max_group_size=config.max_group_size, wait_budget_steps=config.wait_budget_steps,
            max_rounds=max_rounds, quantum_steps=quantum_steps, grouping_policy=config.grouping_policy,
            placement_policy=config.placement_policy, eviction_policy=config.eviction_policy,
            fairness_policy=config.fairness_policy, weights=weights, align_rounds=config.align_rounds)
        self.scaler = WorkerScaler(self, autoscaler, launcher, scale_interval_s)
        self.worker_names = list(worker_names)
        self.workers: dict[str, ray.actor.ActorHandle] = {}
        self.stale = False
        self.calls, self.call_s, self.compute_s = 0, 0.0, 0.0
        self._wake: dict[str, asyncio.Event] = {}
        self._arrivals: dict[str, float] = {}     # worker -> when its last new turn arrived
        self.admit_window_s = config.admit_window_ms / 1e3
        self._changed: asyncio.Event | None = None
        self.sessions: SessionService | None = None   # made in start(), on the actor's loop
        self._tasks: list[asyncio.Task] = []
        self._jobs: dict[str, list] = {}          # worker -> [(job, future)] run between its phases
        self._max_len: dict[str, int] = {}        # worker -> context limit
        self.session_ttl_s = config.session_ttl_s

    async def start(self, recover: bool = False) -> int:
        """Attach the workers (and, after a restart, rebuild from Redis); returns the epoch."""
        self._changed = asyncio.Event()
        for name in self.worker_names:
            await self._add_worker(name, ray.get_actor(name))
        self.sessions = SessionService(self.core, self.directory, self.workers, lambda: self.epoch,
                                       self._arrived, max_len=min(self._max_len.values()),
                                       session_ttl_s=self.session_ttl_s)
        self.sessions.set_limits(self.tenant_limits)
        if recover:
            await rebuild_after_restart(self)
        else:
            self.adopted = await adopt_spilled(self)
        self._tasks = [asyncio.ensure_future(self._loop(w)) for w in self.workers]
        self._tasks.append(asyncio.ensure_future(self._expire_sessions()))
        if self.scaler.enabled:
            self._tasks.append(asyncio.ensure_future(self.scaler.run()))
        return self.epoch

    async def _add_worker(self, name: str, handle) -> None:
        info = await handle.info.remote()
        self._max_len[name] = info["max_seq_len"]
        self.workers[name] = handle
        self.core.add_worker(name, info["shape_prefix"], info["capacity"])
        self._wake[name] = asyncio.Event()

    async def attach_worker(self, name: str, handle) -> None:
        """A worker started while serving (autoscaling): known to the core, with its own loop."""
        await self._add_worker(name, handle)
        self._tasks.append(asyncio.ensure_future(self._loop(name)))

    async def retire_worker(self, name: str) -> bool:
        """Between its phases: mark an emptied worker dead so its loop ends; False if owners remain."""
        async def job() -> bool:
            if self.core.owners_on(name):
                return False
            self.core.workers[name].alive = False
            return True
        retired = await self._between_phases(name, job)
        self._wake[name].set()      # the loop sees the worker gone and ends
        return retired

    # -- requests -------------------------------------------------------------------------
    async def submit(self, req: Request, tenant_id: str = "") -> str:
        worker_id = self.core.choose_worker(req.owner_id)
        self.directory.register(DirectoryEntry(owner_id=req.owner_id, worker_id=worker_id, epoch=self.epoch, tenant_id=tenant_id),
                                request=req.to_dict())
        self.core.admit(req, worker_id, tenant_id=tenant_id)   # counts for placement at once
        await self.workers[worker_id].admit.remote(req)   # ordered before any phase that plans it
        self._arrived(worker_id)
        return req.owner_id

    def _arrived(self, worker_id: str) -> None:
        """A new turn for the worker: note when (see `_gather`) and wake its loop."""
        self._arrivals[worker_id] = time.monotonic()
        self._wake[worker_id].set()

    async def _gather(self, worker_id: str) -> None:
        """An idle worker woken by arrivals lets the rest of a burst arrive (until none came for
        admit_window_ms, ten windows at most), so the burst starts as one cohort in step."""
        start, window = time.monotonic(), self.admit_window_s
        while window > 0 and (quiet := time.monotonic() - self._arrivals.get(worker_id, 0.0)) < window \
                and time.monotonic() - start < 10 * window:
            await asyncio.sleep(window - quiet)

    def _result(self, owner_id: str) -> dict:
        rec = self.core.owners[owner_id]
        return {"tokens": list(rec.tokens), "version": self.core.ledger.committed(owner_id),
                "worker_id": rec.worker_id, "finished": rec.finished, "error": rec.error,
                "token_times": list(rec.token_times)}

    async def wait(self, owner_ids: list[str], timeout_s: float = 600.0) -> dict[str, dict]:
        deadline = time.monotonic() + timeout_s
        while not all(self.core.owners[o].finished for o in owner_ids):
            if self.stale:
                raise RuntimeError(f"scheduler epoch {self.epoch} is stale")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), max(0.01, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                raise TimeoutError(f"owners not finished after {timeout_s}s") from None
        return {o: self._result(o) for o in owner_ids}

    async def poll(self, owner_id: str, cursor: int) -> dict:
        res = self._result(owner_id)
        res["tokens"] = res["tokens"][cursor:]
        return res

    # -- the loop ---------------------------------------------------------------------------
    async def _loop(self, worker_id: str) -> None:
        """Phases for one worker until it is lost or this scheduler is stale; a bug in one phase
        fails that phase's owners (with the error) and the loop goes on serving the others."""
        while not self.stale and self.core.workers[worker_id].alive:
            try:
                if await self._one_phase(worker_id):
                    return
            except Exception as exc:   # NOTE: an escaped exception would silently end this worker's loop
                logger.exception("scheduler loop for %s", worker_id)
                self._fail_owners(worker_id, f"scheduler error: {type(exc).__name__}: {exc}")

    def _fail_owners(self, worker_id: str, message: str) -> None:
        for owner_id in self.core.owners_on(worker_id):
            rec = self.core.owners[owner_id]
            if not rec.finished:
                rec.error = message
                self.core.ledger.rollback(owner_id)
                self.sessions.on_tokens(owner_id, 0, time.time())
        self._notify()

    async def _one_phase(self, worker_id: str) -> bool:
        """Plan, run and settle one phase; True when the worker was lost (the loop ends)."""
        if self._jobs.get(worker_id):
            await self._run_jobs(worker_id)
        plan = self.core.next_plan(worker_id, self.epoch)
        if plan is None:
            self._wake[worker_id].clear()
            if not self._jobs.get(worker_id):
                await self._wake[worker_id].wait()
                await self._gather(worker_id)
            return False
        t0 = time.perf_counter()
        try:
            result = await self.workers[worker_id].run_phase.remote(plan)
        except RayActorError:
            await self._recover_worker(worker_id)
            return True
        except RayTaskError as exc:
            self._phase_failed(plan, exc)
            return False
        self.calls, self.call_s = self.calls + 1, self.call_s + time.perf_counter() - t0
        self.compute_s += result.compute_s
        await self._settle(worker_id, plan, result)
        return False

    def _phase_failed(self, plan, exc: Exception) -> None:
        """A refused plan (a newer epoch exists) makes this scheduler stale; any other failure
        fails the phase's owners with the worker's error, and nothing of theirs is committed."""
        if "StaleEpochRefused" in str(exc):
            self.stale = True
        else:
            cause = str(exc).strip().splitlines()[-1]
            for owner_id in _plan_owners(plan) & set(self.core.owners):
                self.core.owners[owner_id].error = f"worker error: {cause}"
        for group in plan.writes:
            for owner_id in set(group.owner_ids) & set(self.core.owners):
                self.core.ledger.rollback(owner_id)
        self._notify()

    async def _settle(self, worker_id, plan, result) -> None:
        receipts = self.core.receipts(result)
        try:
            verdicts = await self._commit_receipts(receipts)
        except DirectoryUnavailableError as exc:   # Redis stayed away: fail these owners, commit nothing
            verdicts = [exc] * len(receipts)
            for owner_id, _ in receipts:
                self.core.owners[owner_id].error = str(exc)
        if any(isinstance(v, StaleEpochError) for v in verdicts):
            self.stale = True
        accepted = {o: isinstance(v, int) for (o, _), v in zip(receipts, verdicts)}
        now = time.time()
        new = self.core.settle(worker_id, plan, result, accepted, now=now)
        try:
            self.directory.append_tokens(new)
        except DirectoryUnavailableError:
            pass   # the token log is a recovery aid; the worker still holds the tokens
        self._count(plan, new, accepted)
        for owner_id in set(new) | set(result.progress) | set(result.failed):
            self.sessions.on_tokens(owner_id, len(new.get(owner_id, [])), now)
        for owner_id, version in result.kept:
            self.sessions.on_kept(owner_id, version)
        if result.error:
            logger.warning("worker %s: %s", worker_id, result.error)
        self._notify()

    def _count(self, plan, new: dict, accepted: dict) -> None:
        c = self.counters
        c["rwttt_phases_total"] += 1
        c["rwttt_tokens_total"] += sum(len(t) for t in new.values())
        c["rwttt_commits_total"] += sum(accepted.values())
        c["rwttt_rejected_commits_total"] += sum(not v for v in accepted.values())
        for group in (*[g for r in plan.rounds for g in r], *plan.writes):
            c["rwttt_groups_total"] += 1
            self.group_sizes.observe(len(group))

    async def _commit_receipts(self, receipts: list[tuple[str, int]]) -> list:
        """CAS-commit in the directory; retries while Redis restarts, and re-registers entries a
        restarted (empty) Redis lost, from this scheduler's ledger (the CAS still forbids doubles)."""
        if not receipts:
            return []
        for attempt in range(RETRIES):
            try:
                verdicts = self.directory.commit_many(receipts, self.epoch)
                lost = [o for (o, _), v in zip(receipts, verdicts) if isinstance(v, UnknownEntryError)]
                if not lost:
                    return verdicts
                for owner_id in lost:
                    self._reregister(owner_id)
            except DirectoryUnavailableError:
                if attempt == RETRIES - 1:
                    raise
                await asyncio.sleep(0.2 * (attempt + 1))
        return self.directory.commit_many(receipts, self.epoch)

    def _reregister(self, owner_id: str) -> None:
        rec = self.core.owners[owner_id]
        entry = DirectoryEntry(owner_id=owner_id, worker_id=rec.worker_id, epoch=self.epoch,
                               version=self.core.ledger.committed(owner_id))
        self.directory.register(entry, request=rec.request.to_dict())
        self.directory.append_tokens({owner_id: rec.tokens})

    def _notify(self) -> None:
        """Wake `wait` callers and the sessions' long-polls: owners' tokens or ends changed."""
        if self._changed is not None:
            self._changed.set()
        if self.sessions is not None:
            self.sessions.pulse()

    async def _expire_sessions(self, every_s: float = 1.0) -> None:
        """Release sessions idle past their ttl (their slots and kept states go with them)."""
        while not self.stale:
            await asyncio.sleep(every_s)
            try:
                if await self.sessions.expire():
                    self._notify()
            except Exception:
                logger.exception("session expiry")

    # -- recovery ---------------------------------------------------------------------------
    async def _recover_worker(self, worker_id: str) -> None:
        """Replay the lost worker's owners elsewhere from their token logs. The admits are sent
        before this coroutine yields, so Ray runs them before any phase that plans those owners."""
        moved = self.core.worker_lost(worker_id)
        refs = [self.workers[self.core.owners[o].worker_id].admit.remote(
            self.core.owners[o].request, self.core.owners[o].tokens, self.core.owners[o].progress) for o in moved]
        for owner_id, ref in zip(moved, refs):
            dst = self.core.owners[owner_id].worker_id
            await ref
            self.directory.move(owner_id, self.epoch, dst, -1, Tier.DEVICE)
            self._wake[dst].set()
        self._notify()

    # -- operations -------------------------------------------------------------------------
    async def migrate(self, owner_id: str, dst: str) -> None:
        """Move an owner's committed state to another worker, between two of its source's phases."""
        await migrate_owner(self, owner_id, dst)

    async def drain_worker(self, name: str) -> list[str]:
        """Operations: move every owner off a worker (between its phases), then stop it."""
        return await self.scaler.drain(name)

    async def drain(self, grace_s: float = 20.0) -> dict:
        """Graceful shutdown (actors/operations.py): running turns finish, sessions spill to the store."""
        return await drain_service(self, grace_s)

    async def _between_phases(self, worker_id: str, job):
        """Run `job()` on the worker's loop between two phases (none of its phases in flight)."""
        done = asyncio.get_running_loop().create_future()
        self._jobs.setdefault(worker_id, []).append((job, done))
        self._wake[worker_id].set()
        return await done

    async def _run_jobs(self, worker_id: str) -> None:
        for job, done in self._jobs.pop(worker_id, []):
            try:
                done.set_result(await job())
            except Exception as exc:
                done.set_exception(exc)

    async def stats(self) -> dict:
        return {"epoch": self.epoch, "calls": self.calls, "call_s": self.call_s, "compute_s": self.compute_s,
                "owners": len(self.core.owners), "ledger": self.core.ledger.snapshot(), "stale": self.stale,
                "workers": [w for w, r in self.core.workers.items() if r.alive],
                "scaling": list(self.scaler.events)}

    async def health(self) -> dict:
        """Ready only when this scheduler is current, the directory answers and at least one worker
        is live (its heartbeat, beaten from a thread beside its phases, is in the directory)."""
        try:
            beating, directory = self.directory.live_workers(), True
        except DirectoryUnavailableError:
            beating, directory = set(), False
        workers = sum(r.alive and w in beating for w, r in self.core.workers.items())
        status = ("stale" if self.stale else "draining" if self.sessions.draining else
                  "ok" if directory and workers else "unavailable")
        reason = None if status != "unavailable" else "no live worker" if directory else "the directory (Redis) is unreachable"
        return {"status": status, "workers": workers, "directory": directory, **({"reason": reason} if reason else {})}

    async def ledger(self) -> dict[str, int]:
        return self.core.ledger.snapshot()

    async def release(self, owner_id: str) -> None:
        await self.sessions.release(owner_id)

    # -- the service API (tenants, sessions, streaming), used by the HTTP ingress -------------
    async def open_session(self, tenant: str, ttl_s: float | None = None) -> str:
        return self.sessions.open(tenant, ttl_s)

    async def list_sessions(self, tenant: str) -> list[dict]:
        return self.sessions.list(tenant)

    async def complete(self, tenant: str, owner_id: str | None, prompt: list[int], max_new_tokens: int | None,
                       **fields) -> dict:
        return await self.sessions.complete(tenant, owner_id, prompt, max_new_tokens, **fields)

    async def next_tokens(self, tenant: str, owner_id: str, cursor: int, timeout_s: float = 30.0) -> dict:
        return await self.sessions.next_tokens(tenant, owner_id, cursor, timeout_s)

    async def next_tokens_many(self, wants: dict[str, tuple[str, int]], timeout_s: float = 30.0) -> dict[str, dict]:
        return await self.sessions.next_tokens_many(wants, timeout_s)

    async def session_info(self, tenant: str, owner_id: str, include_tokens: bool = False) -> dict:
        return self.sessions.info(tenant, owner_id, include_tokens)

    async def fork_session(self, tenant: str, owner_id: str) -> str:
        return await self.sessions.fork(tenant, owner_id)

    async def rollback_session(self, tenant: str, owner_id: str, version: int) -> dict:
        return await self.sessions.rollback(tenant, owner_id, version)

    async def delete_session(self, tenant: str, owner_id: str) -> None:
        await self.sessions.delete(tenant, owner_id)

    async def cancel(self, tenant: str, owner_id: str) -> None:
        await self.sessions.cancel(tenant, owner_id)

    async def metrics(self) -> str:
        return await render_metrics(self)
