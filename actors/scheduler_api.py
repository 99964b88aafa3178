"""ServiceAPI: the SchedulerActor's methods that the ingress and operators call: tenants,
sessions and streaming (SessionService underneath), health, stats, events and metrics.
A base class of SchedulerActor (Ray exposes inherited methods), so the actor's own module keeps
the loop, the commits and the recovery.
"""
from __future__ import annotations

import os

from actors.directory import DirectoryUnavailableError
from actors.scheduler_metrics import render_metrics


class ServiceAPI:
    async def events_since(self, seq: int) -> tuple[int, list[str]]:
        """The operator's events numbered after `seq` (see EventLog)."""
        return self.events.since(seq)

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
