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
from actors.operations import publish_pending
from actors.recovery import recover_worker, replay_lost
from actors.scheduler_api import ServiceAPI
from actors.commits import DirectoryKeeper
from actors.directory import DirectoryUnavailableError, RedisDirectory, StaleEpochError
from actors.scaling import WorkerScaler
from actors.state_directory import StateDirectory
from actors.worker import WorkerLauncher
from actors.worker_client import WorkerClient, phase_failure
from policies.autoscaling import AutoscalingPolicy
from rwttt_ray.config import RwtttConfig
from actors.sessions import SessionService
from rwttt_ray.core.events import EventLog
from rwttt_ray.core.metrics import SIZE_BUCKETS, Histogram
from rwttt_ray.core.scheduler import SchedulerCore

logger = logging.getLogger(__name__)
SPILL_BURST = 4          # spills in one phase that make an event


def _plan_owners(plan) -> set[str]:
    return {o for r in plan.rounds for g in r for o in g.owner_ids} | {o for g in plan.writes for o in g.owner_ids}


@ray.remote(num_cpus=0, max_restarts=0)
class SchedulerActor(ServiceAPI):
    def __init__(self, *, config: RwtttConfig, chunk: int, ttt: bool, redis_url: str, namespace: str,
                 worker_names: list[str], launcher: WorkerLauncher | None = None,
                 autoscaler: AutoscalingPolicy | None = None) -> None:
        batching = config.batching
        self.tenant_limits = dict(config.service.tenant_limits)
        self.counters = {"rwttt_tokens_total": 0, "rwttt_commits_total": 0, "rwttt_rejected_commits_total": 0,
                         "rwttt_groups_total": 0, "rwttt_phases_total": 0}
        self.group_sizes = Histogram(SIZE_BUCKETS)
        self.directory: StateDirectory = RedisDirectory(redis_url, namespace)
        self.epoch = self.directory.acquire_epoch()
        weights = {t: float(lim.get("weight", 1.0)) for t, lim in self.tenant_limits.items()}
        self.core = SchedulerCore.from_policies(chunk, ttt, placement_policy=config.cluster.placement_policy,
                                                weights=weights, **batching.scheduling())
        self.scaler = WorkerScaler(self, autoscaler, launcher, config.cluster.scale_interval_s)
        self.worker_names = list(worker_names)
        self.workers: dict[str, WorkerClient] = {}
        self.stale = False
        self.calls, self.call_s, self.compute_s = 0, 0.0, 0.0
        self._wake: dict[str, asyncio.Event] = {}
        self._arrivals: dict[str, float] = {}     # worker -> when its last new turn arrived
        self.admit_window_s = batching.admit_window_ms / 1e3
        self._changed: asyncio.Event | None = None
        self.sessions: SessionService | None = None   # made in start(), on the actor's loop
        self._tasks: list[asyncio.Task] = []
        self._jobs: dict[str, list] = {}          # worker -> [(job, future)] run between its phases
        self._max_len: dict[str, int] = {}        # worker -> context limit
        self.session_ttl_s = config.service.session_ttl_s
        self.keeper = DirectoryKeeper(self)
        self.stranded: set[str] = set()           # dead workers whose owners wait for a live one
        self._bursts: dict[str, float] = {}       # worker -> when its last spill burst was told
        self.events = EventLog()                  # the operator's events (the serve console prints them)

    async def start(self, recover: bool = False) -> int:
        """Attach the workers (and, after a restart, rebuild from Redis); returns the epoch."""
        self._changed = asyncio.Event()
        for name in self.worker_names:
            await self._add_worker(name, ray.get_actor(name))
        self.sessions = SessionService(self.core, self.directory, self.workers, lambda: self.epoch,
                                       self._arrived, max_len=min(self._max_len.values()),
                                       session_ttl_s=self.session_ttl_s)
        self.sessions.set_limits(self.tenant_limits)
        self.sessions.between = self._between_phases
        self.sessions.between_hook = lambda worker_id, owner_id: publish_pending(self, worker_id, owner_id)
        if recover:
            await rebuild_after_restart(self)
            self.event("scheduler restarted (epoch %d): rebuilt %d owners (%d sessions) from Redis and the workers",
                       self.epoch, len(self.core.owners), len(self.sessions.book.sessions()))
        else:
            self.adopted = await adopt_spilled(self)
            if any(self.adopted.values()):
                self.event("adopted %(adopted)d sessions spilled by a previous service (dropped %(dropped)d "
                           "stale entries)", self.adopted)
        self._tasks = [asyncio.ensure_future(self._loop(w)) for w in self.workers]
        self._tasks.append(asyncio.ensure_future(self._expire_sessions()))
        if self.scaler.enabled:
            self._tasks.append(asyncio.ensure_future(self.scaler.run()))
        return self.epoch

    async def _add_worker(self, name: str, handle) -> None:
        client = WorkerClient(name=name, handle=handle)
        info = await client.info()
        self._max_len[name] = info.max_seq_len
        self.workers[name] = client
        self.core.add_worker(name, info.shape_prefix, info.capacity, info.max_owners)
        self._wake[name] = asyncio.Event()

    async def attach_worker(self, name: str, handle) -> None:
        """A worker started while serving (autoscaling): known to the core, with its own loop."""
        await self._add_worker(name, handle)
        self._tasks.append(asyncio.ensure_future(self._loop(name)))

    async def retire_worker(self, name: str) -> bool:
        """Between its phases: mark an emptied worker dead so its loop ends; False if owners remain."""
        async def job() -> bool:
            return self.core.retire(name)
        retired = await self._between_phases(name, job)
        self._wake[name].set()      # the loop sees the worker gone and ends
        return retired

    # -- arrivals ---------------------------------------------------------------------------
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

    # -- the loop ---------------------------------------------------------------------------
    async def _loop(self, worker_id: str) -> None:
        """Phases for one worker until it is lost or this scheduler is stale; a bug in one phase
        fails that phase's owners (with the error) and the loop goes on serving the others."""
        while not self.stale and self.core.workers[worker_id].alive:
            try:
                if await self._one_phase(worker_id):
                    break
            except Exception as exc:   # NOTE: an escaped exception would silently end this worker's loop
                logger.exception("scheduler loop for %s", worker_id)
                self._fail_owners(worker_id, f"scheduler error: {type(exc).__name__}: {exc}")
        for _, done in self._jobs.pop(worker_id, []):     # nobody will run them now
            if not done.done():
                done.set_exception(KeyError(f"worker {worker_id} is gone"))

    def _fail_owners(self, worker_id: str, message: str) -> None:
        for owner_id in self.core.fail_running(worker_id, message):
            self.sessions.on_tokens(owner_id, 0, time.time())
        self._notify()

    async def _one_phase(self, worker_id: str) -> bool:
        """Plan, run and settle one phase; True when the worker was lost (the loop ends)."""
        if self._jobs.get(worker_id):
            await self._run_jobs(worker_id)
            if not self.core.workers[worker_id].alive:
                return True
        plan = self.core.next_plan(worker_id, self.epoch)
        if plan is None:
            self._wake[worker_id].clear()
            if not self._jobs.get(worker_id):
                await self._wake[worker_id].wait()
                await self._gather(worker_id)
            return False
        t0 = time.perf_counter()
        try:
            result = await self.workers[worker_id].run_phase(plan)
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
        failure = phase_failure(exc)
        if failure.stale:
            self.stale = True
        else:
            self.core.fail(_plan_owners(plan), f"worker error: {failure.message}")
        self.core.abort_writes(plan)
        self._notify()

    async def _settle(self, worker_id, plan, result) -> None:
        receipts = self.core.receipts(result)
        try:
            verdicts = await self.keeper.commit(receipts)
        except DirectoryUnavailableError as exc:   # Redis stayed away: fail these owners, commit nothing
            verdicts = [exc] * len(receipts)
            self.core.fail([o for o, _ in receipts], str(exc))
        if any(isinstance(v, StaleEpochError) for v in verdicts):
            self.stale = True
        accepted = {o: isinstance(v, int) for (o, _), v in zip(receipts, verdicts)}
        now = time.time()
        new = self.core.settle(worker_id, plan, result, accepted, now=now)
        self.keeper.log_tokens(new)
        self.keeper.refusals(receipts, verdicts)
        self._count(plan, new, accepted)
        self._note_spills(worker_id, result.spilled)
        for owner_id in set(new) | set(result.progress) | set(result.failed):
            self.sessions.on_tokens(owner_id, len(new.get(owner_id, [])), now)
        for owner_id, version in result.kept:
            self.sessions.on_kept(owner_id, version)
        if result.error:
            logger.warning("worker %s: %s", worker_id, result.error)
        self._notify()

    def _note_spills(self, worker_id: str, spilled: list[str]) -> None:
        """A burst of spills (device slots full) is an operator's event, once per 10 s per worker."""
        now = time.monotonic()
        if len(spilled) >= SPILL_BURST and now - self._bursts.get(worker_id, -1e9) > 10.0:
            self._bursts[worker_id] = now
            self.event("worker %s spilled %d owners to the host tier in one phase (its %d device slots are full)",
                       worker_id, len(spilled), self.core.workers[worker_id].capacity)

    def _count(self, plan, new: dict, accepted: dict) -> None:
        c = self.counters
        c["rwttt_phases_total"] += 1
        c["rwttt_tokens_total"] += sum(len(t) for t in new.values())
        c["rwttt_commits_total"] += sum(accepted.values())
        c["rwttt_rejected_commits_total"] += sum(not v for v in accepted.values())
        for group in (*[g for r in plan.rounds for g in r], *plan.writes):
            c["rwttt_groups_total"] += 1
            self.group_sizes.observe(len(group))

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
                self.keeper.check()
                if await self.sessions.expire():
                    self._notify()
            except Exception:
                logger.exception("session expiry")

    # -- recovery (actors/recovery.py) ------------------------------------------------------
    async def _recover_worker(self, worker_id: str) -> None:
        await recover_worker(self, worker_id)

    async def worker_lost(self, worker_id: str) -> list[str]:
        """The service manager saw the worker die (maybe while idle): replay its owners now."""
        return await replay_lost(self, worker_id)

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
