"""ServiceAPI: the SchedulerActor's methods that the ingress and operators call: tenants,
sessions and streaming (SessionService underneath), one-shot requests (submit, wait, poll),
operations (migrate, drain), health, stats, events and metrics. A base class of SchedulerActor
(Ray exposes inherited methods), so the actor's own module keeps the loop, the commits and the
recovery.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time

from actors.directory import DirectoryUnavailableError
from actors.operations import drain_service, migrate_owner
from actors.scheduler_metrics import render_metrics
from rwttt_ray.core.request import Request

logger = logging.getLogger("actors.scheduler")


class ServiceAPI:
    async def events_since(self, seq: int) -> tuple[int, list[str]]:
        """The operator's events numbered after `seq` (see EventLog)."""
        return self.events.since(seq)

    async def live_workers(self) -> list[str]:
        """The workers this scheduler counts alive (the autoscaler adds and drains them)."""
        return [w for w, r in self.core.workers.items() if r.alive]

    async def stats(self) -> dict:
        return {"epoch": self.epoch, "pid": os.getpid(), "calls": self.calls, "call_s": self.call_s,
                "compute_s": self.compute_s,
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

    async def renew(self, owner_ids: list[str], lease_s: float) -> None:
        self.sessions.renew(owner_ids, lease_s)

    async def metrics(self) -> str:
        return await render_metrics(self)

    # -- one-shot requests (benchmarks, tests) ---------------------------------------------
    async def submit(self, req: Request, tenant_id: str = "") -> str:
        """A one-shot request outside any tenant's books (benchmarks, `wait`/`poll`)."""
        await self.sessions.admit(tenant_id, req)
        return req.owner_id

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

    async def release(self, owner_id: str) -> None:
        await self.sessions.release(owner_id)

    # -- operations -------------------------------------------------------------------------
    async def ping(self) -> int:
        return self.epoch

    async def migrate(self, owner_id: str, dst: str) -> None:
        """Move an owner's committed state to another worker, between two of its source's phases."""
        await migrate_owner(self, owner_id, dst)

    async def drain_worker(self, name: str) -> list[str]:
        """Operations: move every owner off a worker (between its phases), then stop it."""
        return await self.scaler.drain(name)

    async def drain(self, grace_s: float = 20.0) -> dict:
        """Graceful shutdown (actors/operations.py): running turns finish, sessions spill to the store."""
        self.event("draining (grace %gs): no new turns", grace_s)
        summary = await drain_service(self, grace_s)
        self.event("drained: %(stopped)d running turns stopped, %(spilled)d sessions spilled to the store", summary)
        return summary

    def event(self, fmt: str, *args) -> None:
        """An operator's event: logged at INFO and kept for the serve console (`events`); `args`
        are %-format arguments, or one mapping for %(name)s."""
        line = fmt % (args[0] if len(args) == 1 and isinstance(args[0], dict) else args)
        logger.info("rwttt-ray: %s", line)
        self.events.add(line)
