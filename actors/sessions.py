"""SessionService: tenants, sessions and turns on top of the scheduler (used by SchedulerActor).

A one-shot completion is an owner that ends with its request; a session is an owner that
outlives requests: each turn extends its stream, its fast weights keep learning, it can be
forked (copy-on-write) and rolled back to a version kept at the end of an earlier turn.
A turn is over ("closed") once its last token is out and, for a session, once the worker has
kept its end state (reported with the phase result): only then is it listed as kept and can
the next turn start. Every call names a tenant; another tenant's owner is reported exactly like
a missing one. Token delivery (the long-polls) is TokenNews (actors/news.py); each owner's
turn state is one SessionRecord, with its rules pure in SessionBook (rwttt_ray/core/session.py).
"""
from __future__ import annotations

import logging
import secrets
import time
from dataclasses import replace

from actors.directory import DirectoryEntry
from actors.state_directory import StateDirectory
from actors.worker_client import WorkerClient
from actors.news import TokenNews
from rwttt_ray.core.request import Request
from rwttt_ray.core.scheduler import SchedulerCore
from rwttt_ray.core.session import SessionBook
from rwttt_ray.core.tenancy import (CANCELLED, OUT_OF_BUDGET, BusyError, ContextLengthError, DrainingError,
                                   NotFoundError, TenantBook, TenantLimits, UnavailableError, VersionConflictError)


logger = logging.getLogger(__name__)


def new_owner_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_urlsafe(16)}"


class SessionService(TokenNews):
    def __init__(self, core: SchedulerCore, directory: StateDirectory, workers: dict[str, WorkerClient], epoch_fn, wake_fn,
                 max_len: int = 1 << 30, session_ttl_s: float = 3600.0) -> None:
        super().__init__(SessionBook(session_ttl_s))
        self.core, self.directory, self.workers = core, directory, workers
        self.epoch, self.wake, self.max_len = epoch_fn, wake_fn, max_len
        self.tenants = TenantBook()
        self.draining = False                     # set by a graceful shutdown: no new turns
        self.between = None                       # (worker, job) -> job's result, run between its phases
        self.between_hook = None                  # (worker, owner): settle the owner's last WRITE first

    def set_limits(self, limits: dict[str, dict]) -> None:
        for tenant, lim in limits.items():
            self.tenants.set_limits(tenant, TenantLimits(**lim))

    # -- sessions -----------------------------------------------------------------------------
    def open(self, tenant: str, ttl_s: float | None = None) -> str:
        if self.draining:
            raise DrainingError("the server is shutting down; no new sessions")
        owner_id = new_owner_id("sess")
        self.tenants.admit(tenant, owner_id, session=True)
        self.book.open(owner_id, tenant, time.time(), ttl_s)
        return owner_id

    def _idle(self, owner_id: str) -> None:
        if self.book.is_busy(owner_id, owner_id in self.core.owners):
            raise BusyError(f"session {owner_id} is generating; one request at a time per session")

    async def complete(self, tenant: str, owner_id: str | None, prompt: list[int], max_new_tokens: int | None,
                       expected_version: int | None = None, lease_s: float | None = None, **fields) -> dict:
        """Start a turn: one-shot (owner_id None) or on a session. `max_new_tokens` None: the rest
        of the context. With `lease_s`, the reader must `renew` the turn's lease within that time
        or the turn is cancelled (its reader is gone). Returns the owner id and the stream's last
        tokens (the text's context)."""
        if self.draining:
            raise DrainingError("the server is shutting down; retry on another replica or later")
        if owner_id is not None:
            self.tenants.check_owner(tenant, owner_id)
            self._idle(owner_id)
        rec = self.core.owners.get(owner_id) if owner_id else None
        if rec is not None and not self.core.workers[rec.worker_id].alive:
            raise UnavailableError(f"session {owner_id}'s worker was lost; it is replayed on a new worker "
                                   "as soon as one is up: retry shortly")
        version = self.core.ledger.committed(owner_id) if rec else 0
        if expected_version is not None and expected_version != version:
            raise VersionConflictError(f"session {owner_id} is at version {version}, not {expected_version}", version)
        stream = (list(rec.request.prompt) + rec.tokens if rec else []) + list(prompt)
        room = self.max_len - len(stream)
        if room < 1 or (max_new_tokens or 0) > room:
            raise ContextLengthError(f"the session's stream would reach {len(stream) + (max_new_tokens or 1)} "
                                     f"tokens, over the context limit {self.max_len}")
        if rec is None:
            self.core.check_admission()      # before the tenant counts it: a 429 leaves nothing behind
        if owner_id is None:
            owner_id = new_owner_id("cmpl")
            self.tenants.admit(tenant, owner_id, session=False)
        else:
            self.tenants.admit(tenant, owner_id, session=True)
        req = Request(owner_id, tuple(stream), max_new_tokens or room, keep_at_end=self.book.is_session(owner_id),
                      **fields)
        if rec is None:
            await self.admit(tenant, req)
        else:
            self._extend(rec, req)
        self.tenants.started(owner_id)
        self.book.start_turn(owner_id, tenant, time.time(), None if lease_s is None else time.monotonic() + lease_s)
        logger.info("request %s: tenant %s, owner %s on %s, %d stream tokens, up to %d new", req.request_id or "-",
                    tenant, owner_id, self.core.owners[owner_id].worker_id, len(stream), req.max_new_tokens)
        return {"owner_id": owner_id, "context": stream[-8:], "max_new_tokens": req.max_new_tokens}

    async def admit(self, tenant: str, req: Request) -> str:
        """The one admission of a new owner (SchedulerActor.submit too): placed, registered in the
        directory, known to the core (it counts for placement at once), then admitted on its
        worker; undone if the worker refuses it."""
        worker_id = self.core.admission_worker(req.owner_id)
        self.directory.register(DirectoryEntry(owner_id=req.owner_id, worker_id=worker_id, epoch=self.epoch(),
                                               tenant_id=tenant), request=req.to_dict())
        self.core.admit(req, worker_id, tenant_id=tenant)
        try:
            await self.workers[worker_id].admit(req)
        except Exception:
            self.core.forget(req.owner_id)
            self.directory.remove(req.owner_id, self.epoch())
            raise
        self.wake(worker_id)
        return worker_id

    def _extend(self, rec, req: Request) -> None:
        self.directory.start_turn(req.owner_id, self.epoch(), req.to_dict())
        self.workers[rec.worker_id].extend(req)     # sent before any phase that plans it
        self.core.start_turn(req)
        self.wake(rec.worker_id)

    # -- the end of a turn --------------------------------------------------------------------------
    def on_tokens(self, owner_id: str, n: int, now: float) -> None:
        rec = self.core.owners.get(owner_id)
        if rec is None:
            return
        self.tenants.count_tokens(owner_id, n)
        self.observe(rec, owner_id, n, now)
        if not rec.finished and self.tenants.over_budget(owner_id):
            self.core.finish_requests([owner_id], OUT_OF_BUDGET)   # not planned again; the reply ends "length"
        if self.book.closes_on_tokens(owner_id, rec.finished, rec.error is not None):
            self._close(owner_id)        # a session's good turn closes when its end state is kept

    def restore(self, owner_id: str, tenant: str, kept: list[int]) -> None:
        """After a scheduler restart: the rebuilt owner's tenant, its session (with the versions
        its worker still keeps) and its turn, running or over (an unread one-shot end is kept)."""
        rec = self.core.owners[owner_id]
        self.tenants.restore(tenant, owner_id, rec.request.keep_at_end)
        self.book.restore(owner_id, tenant, session=rec.request.keep_at_end, kept=kept, running=not rec.finished,
                          now=time.time())
        if rec.finished:
            self._close(owner_id)
        else:
            self.tenants.started(owner_id)

    def on_kept(self, owner_id: str, version: int | None) -> None:
        """The worker kept the session's end-of-turn state at `version` (None: keeping failed)."""
        if self.book.on_kept(owner_id, version, held=owner_id in self.core.owners):
            self._close(owner_id)

    def _close(self, owner_id: str) -> None:
        record = self.book.close(owner_id, time.time())
        self.tenants.stopped(owner_id)
        if not record.session:
            record.result = self.result(owner_id)

    # -- session operations -----------------------------------------------------------------------
    def info(self, tenant: str, owner_id: str, include_tokens: bool = False) -> dict:
        self.tenants.check_owner(tenant, owner_id)
        rec, session = self.core.owners.get(owner_id), self.book.session(owner_id)
        entry = self.directory.get(owner_id) if rec else None
        out = {"id": owner_id, "object": "session", "version": self.core.ledger.committed(owner_id) if rec else 0,
               "tokens_seen": rec.progress.pos if rec else 0,
               "generating": self.book.is_busy(owner_id, rec is not None), "worker": rec.worker_id if rec else None,
               "tier": entry.tier.value if entry else None, "kept_versions": list(session.kept) if session else [],
               "created": int(session.created) if session else 0, "ttl_s": session.ttl_s if session else None,
               "expires_at": int(session.expires_at()) if session else None}
        if include_tokens:
            out["token_ids"] = list(rec.request.prompt) + list(rec.tokens) if rec else []
        return out

    def list(self, tenant: str) -> list[dict]:
        return [self.info(tenant, s.owner_id) for s in self.book.of_tenant(tenant)]

    async def fork(self, tenant: str, owner_id: str) -> str:
        self.tenants.check_owner(tenant, owner_id)
        self._idle(owner_id)
        rec = self.core.owners.get(owner_id)
        if rec is not None:
            self.core.check_room(rec.worker_id)
        child = self.open(tenant, self.book.session(owner_id).ttl_s)
        if rec is None:
            return child
        version = self.core.ledger.committed(owner_id)
        req = replace(rec.request, owner_id=child)
        self.directory.register(DirectoryEntry(owner_id=child, worker_id=rec.worker_id, epoch=self.epoch(),
                                               tenant_id=tenant, version=version), request=req.to_dict())
        await self.workers[rec.worker_id].fork(owner_id, req)
        self.core.fork(owner_id, req, tenant_id=tenant)
        await self.workers[rec.worker_id].keep(child, version)
        self.book.idle_at(child, version)
        return child

    async def rollback(self, tenant: str, owner_id: str, version: int) -> dict:
        self.tenants.check_owner(tenant, owner_id)
        self._idle(owner_id)
        session = self.book.session(owner_id)
        if session is None or version not in session.kept:
            raise NotFoundError(f"session {owner_id} kept no state at version {version} "
                                f"(kept: {session.kept if session else []})")
        await self._restore(owner_id, version)
        session.forget_after(version)
        return self.info(tenant, owner_id)

    async def _restore(self, owner_id: str, version: int) -> None:
        rec = self.core.owners[owner_id]
        req, generated, progress = await self.workers[rec.worker_id].restore_kept(owner_id, version)
        self.directory.start_turn(owner_id, self.epoch(), req.to_dict(), version=version)
        self.core.reset_to(owner_id, version, req, generated, progress)

    async def delete(self, tenant: str, owner_id: str) -> None:
        self.tenants.check_owner(tenant, owner_id)
        self._idle(owner_id)
        await self.release(owner_id)

    async def expire(self, now: float | None = None) -> list[str]:
        """Release every session idle past its ttl, cancel every turn whose lease ran out;
        returns the owners released or cancelled."""
        gone = self.book.expired(time.time() if now is None else now, self.core.owners)
        for owner_id in gone:
            await self.release(owner_id)
        lapsed = self.book.lapsed(time.monotonic())
        for owner_id in lapsed:
            await self.cancel(self.tenants.owner_tenant.get(owner_id, ""), owner_id)
        return gone + lapsed

    def renew(self, owner_ids: list[str], lease_s: float) -> None:
        """The reader of these turns is alive: their leases run `lease_s` more seconds."""
        self.book.renew(owner_ids, time.monotonic() + lease_s)

    async def cancel(self, tenant: str, owner_id: str) -> None:
        """The client went away mid-stream (or its stop came): a one-shot owner is released; a
        session stops this turn where its last phase ended and stays usable. Cancelling an
        owner that is finished, released or not the tenant's is a no-op."""
        if self.tenants.owner_tenant.get(owner_id) != tenant or owner_id not in self.core.owners:
            return
        if not self.book.is_session(owner_id):
            await self.release(owner_id)
        elif not self.book.is_closed(owner_id):
            await self.cut_turn(owner_id)

    async def cut_turn(self, owner_id: str) -> None:
        """A session turn cut before its end (client gone, drain) leaves no trace: between two of
        its worker's phases the session goes back to its last kept state (before any, to empty),
        so the next turn, a fork or a rollback starts from what the client last saw complete.
        Until then the session is busy (409)."""
        rec, session = self.core.owners.get(owner_id), self.book.session(owner_id)
        if rec is None or session is None:
            return
        self.core.finish_requests([owner_id], CANCELLED)      # not planned again
        kept = self.book.begin_cut(owner_id)

        async def job() -> None:
            await self.between_hook(rec.worker_id, owner_id)
            if kept is not None:
                await self._restore(owner_id, kept)
            else:
                await self._drop_state(owner_id)
        try:
            await self.between(rec.worker_id, job)
        finally:
            if owner_id in self.core.owners:
                self._close(owner_id)
            else:
                self.book.end_cut(owner_id)
                self.tenants.stopped(owner_id)

    async def _drop_state(self, owner_id: str) -> None:
        rec = self.core.release(owner_id)
        if rec is not None:
            await self.workers[rec.worker_id].release(owner_id)
            self.directory.remove(owner_id, self.epoch())

    def stop_all(self, reason: str) -> list[str]:
        """End every running turn now with `reason` (its streams end with that error); a session
        keeps its last committed state, which is not kept as a rollback point."""
        stopped = self.book.busy(self.core.owners)
        self.core.fail(stopped, reason)
        for owner_id in stopped:
            self._close(owner_id)
        self.pulse()
        return stopped

    async def release(self, owner_id: str) -> None:
        await self._drop_state(owner_id)
        self.tenants.forget(owner_id)
        self.book.remove(owner_id)
        self.forget(owner_id)
