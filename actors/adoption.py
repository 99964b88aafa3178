"""Adoption: a new service takes over the sessions a previous one spilled to the shared store.

A graceful drain leaves every session as a directory entry of tier STORE whose payload holds its
whole committed state (request, version, KV cache, chunk buffer, dW). A scheduler that starts on
the same Redis namespace (same `service_name`) imports each such payload into one of its workers
(the worker reads it from Redis itself: no state passes through the scheduler), re-registers the
session for its tenant at its committed version, and keeps that version as a rollback point.
Entries nobody holds and nobody spilled (one-shot requests of a service that died) are removed.
"""
from __future__ import annotations

import time

from actors.directory import DirectoryEntry, Tier
from rwttt_ray.core.request import Request


async def adopt_spilled(scheduler) -> dict[str, int]:
    """Run once in `SchedulerActor.start` before any phase; returns counts of what it did."""
    held: set[str] = set()
    for handle in scheduler.workers.values():
        held |= set(await handle.owners.remote())
    adopted = dropped = 0
    for entry in scheduler.directory.entries():
        if entry.owner_id in held or entry.owner_id in scheduler.core.owners:
            continue
        if entry.tier is Tier.STORE and entry.payload_key:
            await _adopt(scheduler, entry)
            adopted += 1
        else:
            scheduler.directory.remove(entry.owner_id, scheduler.epoch)
            dropped += 1
    return {"adopted": adopted, "dropped": dropped}


async def _adopt(scheduler, entry: DirectoryEntry) -> None:
    owner_id, core = entry.owner_id, scheduler.core
    worker_id = core.choose_worker(owner_id)
    info = await scheduler.workers[worker_id].adopt_from_store.remote(entry.payload_key)
    core.admit(Request.from_dict(info["request"]), worker_id, version=entry.version, tokens=info["tokens"],
               progress=info["progress"])
    scheduler.directory.move(owner_id, scheduler.epoch, worker_id, -1, Tier.HOST, expected_version=entry.version)
    sessions = scheduler.sessions
    sessions.tenants.admit(entry.tenant_id, owner_id, session=True)
    sessions.sessions[owner_id] = {"kept": [entry.version], "created": time.time()}
    sessions.closed.add(owner_id)
    await scheduler.workers[worker_id].keep.remote(owner_id, entry.version)
