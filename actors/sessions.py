"""SessionService: tenants, sessions and turns on top of the scheduler (used by SchedulerActor).

A one-shot completion is an owner that ends with its request; a session is an owner that
outlives requests: each turn extends its stream, its fast weights keep learning, it can be
forked (copy-on-write) and rolled back to a version kept at the end of an earlier turn.
Every call names a tenant; another tenant's owner is reported exactly like a missing one.
"""
from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import replace

from actors.directory import DirectoryEntry, RedisDirectory
from rwttt_ray.core.metrics import LATENCY_BUCKETS_S, Histogram
from rwttt_ray.core.request import Request
from rwttt_ray.core.scheduler import SchedulerCore
from rwttt_ray.core.tenancy import (BusyError, DrainingError, NotFoundError, TenancyError, TenantBook, TenantLimits,
                                   VersionConflictError)


def new_owner_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_urlsafe(16)}"


class SessionService:
    def __init__(self, core: SchedulerCore, directory: RedisDirectory, workers: dict, epoch_fn, wake_fn) -> None:
        self.core, self.directory, self.workers = core, directory, workers
        self.epoch, self.wake = epoch_fn, wake_fn
        self.tenants = TenantBook()
        self.sessions: dict[str, dict] = {}       # owner -> {"kept": [versions], "created": t}
        self.done: dict[str, dict] = {}           # finished one-shot results not yet fully read
        self._pulse: asyncio.Future = asyncio.get_running_loop().create_future()   # set at each change
        self.ttft = Histogram(LATENCY_BUCKETS_S)
        self.token_latency = Histogram(LATENCY_BUCKETS_S)
        self.started: dict[str, float] = {}
        self.closed: set[str] = set()             # owners whose current turn has ended
        self.draining = False                     # set by a graceful shutdown: no new turns

    def set_limits(self, limits: dict[str, dict]) -> None:
        for tenant, lim in limits.items():
            self.tenants.set_limits(tenant, TenantLimits(**lim))

    # -- sessions -----------------------------------------------------------------------------
    def open(self, tenant: str) -> str:
        if self.draining:
            raise DrainingError("the server is shutting down; no new sessions")
        owner_id = new_owner_id("sess")
        self.tenants.admit(tenant, owner_id, session=True)
        self.sessions[owner_id] = {"kept": [], "created": time.time()}
        return owner_id

    def _idle(self, owner_id: str) -> None:
        rec = self.core.owners.get(owner_id)
        if rec is not None and not rec.finished:
            raise BusyError(f"session {owner_id} is generating; one request at a time per session")

    async def complete(self, tenant: str, owner_id: str | None, prompt: list[int], max_new_tokens: int,
                       temperature: float = 0.0, top_p: float = 1.0, seed: int = 0,
                       stop_ids: tuple[int, ...] = (), expected_version: int | None = None) -> str:
        """Start a turn: one-shot (owner_id None) or on a session; returns the owner id."""
        if self.draining:
            raise DrainingError("the server is shutting down; retry on another replica or later")
        if owner_id is None:
            owner_id = new_owner_id("cmpl")
            self.tenants.admit(tenant, owner_id, session=False)
        else:
            self.tenants.check_owner(tenant, owner_id)
            self._idle(owner_id)
            self.tenants.admit(tenant, owner_id, session=True)
        rec = self.core.owners.get(owner_id)
        version = self.core.ledger.committed(owner_id) if rec else 0
        if expected_version is not None and expected_version != version:
            raise VersionConflictError(f"session {owner_id} is at version {version}, not {expected_version}", version)
        history = list(rec.request.prompt) + rec.tokens if rec else []
        req = Request(owner_id, tuple(history + list(prompt)), max_new_tokens, temperature, top_p, seed, tuple(stop_ids))
        if rec is None:
            await self._admit_new(tenant, req)
        else:
            self._extend(rec, req)
        self.tenants.started(owner_id)
        self.closed.discard(owner_id)
        self.started[owner_id] = time.time()
        return owner_id

    async def _admit_new(self, tenant: str, req: Request) -> None:
        worker_id = self.core.choose_worker(req.owner_id)
        self.directory.register(DirectoryEntry(owner_id=req.owner_id, worker_id=worker_id, epoch=self.epoch(),
                                               tenant_id=tenant), request=req.to_dict())
        self.core.admit(req, worker_id, tenant_id=tenant)
        try:
            await self.workers[worker_id].admit.remote(req)
        except Exception:
            self.core.forget(req.owner_id)
            self.directory.remove(req.owner_id, self.epoch())
            raise
        self.wake(worker_id)

    def _extend(self, rec, req: Request) -> None:
        self.directory.start_turn(req.owner_id, self.epoch(), req.to_dict())
        self.workers[rec.worker_id].extend.remote(req)     # sent before any phase that plans it
        rec.request, rec.tokens, rec.token_times, rec.error = req, [], [], None
        rec.progress = replace(rec.progress, num_prompt=len(req.prompt), stream_len=len(req.prompt),
                               max_new_tokens=req.max_new_tokens, done=False)
        self.wake(rec.worker_id)

    # -- progress -------------------------------------------------------------------------------
    def on_tokens(self, owner_id: str, n: int, now: float) -> None:
        rec = self.core.owners.get(owner_id)
        if rec is None:
            return
        self.tenants.count_tokens(owner_id, n)
        if n and len(rec.tokens) == n and owner_id in self.started:
            self.ttft.observe(now - self.started[owner_id])
        times = rec.token_times
        for a, b in zip(times[-n - 1:], times[-n:]):
            self.token_latency.observe(b - a)
        if rec.finished and owner_id not in self.closed:
            self._finished(owner_id)

    def _finished(self, owner_id: str, keep: bool = True) -> None:
        rec = self.core.owners[owner_id]
        self.closed.add(owner_id)
        self.tenants.stopped(owner_id)
        if owner_id in self.sessions and keep:
            version = self.core.ledger.committed(owner_id)
            self.workers[rec.worker_id].keep.remote(owner_id, version)
            kept = self.sessions[owner_id]["kept"]
            if version not in kept:
                kept.append(version)
        elif owner_id not in self.sessions:
            self.done[owner_id] = self.result(owner_id)

    def result(self, owner_id: str) -> dict:
        if owner_id in self.done:
            return self.done[owner_id]
        rec = self.core.owners[owner_id]
        gen = rec.tokens
        reason = "stop" if gen and gen[-1] in rec.request.stop_ids else "length"
        return {"tokens": list(gen), "finished": rec.finished, "error": rec.error, "finish_reason": reason,
                "version": self.core.ledger.committed(owner_id), "prompt_tokens": rec.progress.num_prompt}

    async def next_tokens(self, tenant: str, owner_id: str, cursor: int, timeout_s: float = 30.0) -> dict:
        """Long-poll: returns as soon as tokens past `cursor` exist or the turn ends."""
        self.tenants.check_owner(tenant, owner_id)
        deadline = time.monotonic() + timeout_s
        while not (news := await self.next_tokens_many({owner_id: (tenant, cursor)}, deadline - time.monotonic())):
            if time.monotonic() >= deadline:
                return dict(self.result(owner_id), tokens=[])
        return news[owner_id]

    async def next_tokens_many(self, wants: dict[str, tuple[str, int]], timeout_s: float = 30.0) -> dict[str, dict]:
        """Long-poll for many owners in one call (an ingress replica's token feed), `wants`:
        owner -> (tenant, cursor). Returns the news of every owner that has some as soon as one
        has, else after the next settle of any phase (the caller then asks again, with owners
        it has learnt of since), else at the timeout. An owner that is gone (or another
        tenant's) comes back finished, with an error."""
        deadline = time.monotonic() + timeout_s
        for attempt in range(2):
            news = {}
            for owner_id, (tenant, cursor) in wants.items():
                try:
                    self.tenants.check_owner(tenant, owner_id)
                except TenancyError as exc:
                    news[owner_id] = {"tokens": [], "finished": True, "error": str(exc), "finish_reason": "error"}
                    continue
                if (res := self._news(owner_id, cursor)) is not None:
                    news[owner_id] = await self._deliver(owner_id, res, cursor)
            if news or attempt or not await self._pulse_within(deadline):
                return news
        return {}

    def _news(self, owner_id: str, cursor: int) -> dict | None:
        res = self.result(owner_id)
        return res if len(res["tokens"]) > cursor or res["finished"] else None

    async def _pulse_within(self, deadline: float) -> bool:
        """Wait for the next change to any owner's tokens; False at the deadline."""
        try:
            await asyncio.wait_for(asyncio.shield(self._pulse), max(0.0, deadline - time.monotonic()))
            return True
        except asyncio.TimeoutError:
            return False

    def pulse(self) -> None:
        """Wake every long-poll (once per settled phase): a fresh future for the next change."""
        if not self._pulse.done():
            self._pulse.set_result(None)
        self._pulse = asyncio.get_running_loop().create_future()

    async def _deliver(self, owner_id: str, res: dict, cursor: int) -> dict:
        """The news past `cursor`; a one-shot owner whose end is read is released."""
        res = dict(res, tokens=res["tokens"][cursor:])
        if res["finished"] and owner_id in self.done:
            self.done.pop(owner_id)
            await self.release(owner_id)
        return res

    # -- session operations -----------------------------------------------------------------------
    def info(self, tenant: str, owner_id: str) -> dict:
        self.tenants.check_owner(tenant, owner_id)
        rec = self.core.owners.get(owner_id)
        entry = self.directory.get(owner_id) if rec else None
        return {"id": owner_id, "object": "session", "version": self.core.ledger.committed(owner_id) if rec else 0,
                "tokens_seen": rec.progress.pos if rec else 0, "generating": bool(rec and not rec.finished),
                "worker": rec.worker_id if rec else None, "tier": entry.tier.value if entry else None,
                "kept_versions": list(self.sessions.get(owner_id, {}).get("kept", [])),
                "created": int(self.sessions.get(owner_id, {}).get("created", 0))}

    async def fork(self, tenant: str, owner_id: str) -> str:
        self.tenants.check_owner(tenant, owner_id)
        self._idle(owner_id)
        rec = self.core.owners.get(owner_id)
        child = self.open(tenant)
        if rec is None:
            return child
        version = self.core.ledger.committed(owner_id)
        req = replace(rec.request, owner_id=child)
        self.directory.register(DirectoryEntry(owner_id=child, worker_id=rec.worker_id, epoch=self.epoch(),
                                               tenant_id=tenant, version=version), request=req.to_dict())
        await self.workers[rec.worker_id].fork.remote(owner_id, req)
        new = self.core.admit(req, rec.worker_id, version=version, tokens=list(rec.tokens), progress=rec.progress,
                              tenant_id=tenant)
        new.resident = True
        await self.workers[rec.worker_id].keep.remote(child, version)
        self.sessions[child]["kept"] = [version]
        return child

    async def rollback(self, tenant: str, owner_id: str, version: int) -> dict:
        self.tenants.check_owner(tenant, owner_id)
        self._idle(owner_id)
        kept = self.sessions.get(owner_id, {}).get("kept", [])
        if version not in kept:
            raise NotFoundError(f"session {owner_id} kept no state at version {version} (kept: {kept})")
        rec = self.core.owners[owner_id]
        req, generated, progress = await self.workers[rec.worker_id].restore_kept.remote(owner_id, version)
        self.directory.start_turn(owner_id, self.epoch(), req.to_dict(), version=version)
        self.core.ledger.reset(owner_id, version)
        rec.request, rec.tokens, rec.progress, rec.resident = req, list(generated), progress, True
        self.sessions[owner_id]["kept"] = [v for v in kept if v <= version]
        return self.info(tenant, owner_id)

    async def delete(self, tenant: str, owner_id: str) -> None:
        self.tenants.check_owner(tenant, owner_id)
        self._idle(owner_id)
        await self.release(owner_id)
        self.sessions.pop(owner_id, None)

    async def cancel(self, tenant: str, owner_id: str) -> None:
        """The client went away mid-stream: a one-shot owner is released; a session stops this
        turn where its last phase ended (a consistent committed state) and stays usable."""
        self.tenants.check_owner(tenant, owner_id)
        rec = self.core.owners.get(owner_id)
        if rec is None:
            return
        if owner_id not in self.sessions:
            self.done.pop(owner_id, None)
            await self.release(owner_id)
        elif not rec.finished:
            rec.error = "cancelled"
            self._finished(owner_id, keep=False)   # a mid-turn state is not a rollback point

    def stop_all(self, reason: str) -> list[str]:
        """End every running turn now with `reason` (its streams end with that error); a session
        keeps its last committed state, which is not kept as a rollback point."""
        stopped = [o for o, rec in self.core.owners.items() if not rec.finished]
        for owner_id in stopped:
            self.core.owners[owner_id].error = reason
            self._finished(owner_id, keep=False)
        self.pulse()
        return stopped

    async def release(self, owner_id: str) -> None:
        rec = self.core.owners.pop(owner_id, None)
        if rec is not None:
            self.core.ledger.remove(owner_id)
            self.core.workers[rec.worker_id].planner.withdraw(owner_id)
            await self.workers[rec.worker_id].release.remote(owner_id)
            self.directory.remove(owner_id, self.epoch())
        self.tenants.forget(owner_id)
        self.started.pop(owner_id, None)
        self.closed.discard(owner_id)
        self.done.pop(owner_id, None)
