"""Adoption: a scheduler takes over state it did not create: after a restart (rebuild from Redis and
the live workers), and in a new service, the sessions a previous one spilled to the shared store.

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
from rwttt_ray.core.progress import OwnerProgress
from rwttt_ray.core.request import Request


async def adopt_spilled(scheduler) -> dict[str, int]:
    """Run once in `SchedulerActor.start` before any phase; returns counts of what it did."""
    held: set[str] = set()
    for worker in scheduler.workers.values():
        held |= set(await worker.owners())
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
    info = await scheduler.workers[worker_id].adopt_from_store(entry.payload_key)
    core.admit(Request.from_dict(info.request), worker_id, version=entry.version, tokens=info.tokens,
               progress=info.progress)
    scheduler.directory.move(owner_id, scheduler.epoch, worker_id, -1, Tier.HOST, expected_version=entry.version)
    sessions = scheduler.sessions
    sessions.tenants.admit(entry.tenant_id, owner_id, session=True)
    sessions.book.open(owner_id, entry.tenant_id, time.time())
    sessions.book.idle_at(owner_id, entry.version)
    await scheduler.workers[worker_id].keep(owner_id, entry.version)


async def rebuild_after_restart(scheduler) -> None:
    """After a restart: ledger from the directory, progress and tokens from the workers, tenants
    and sessions from both (so streams read on, and sessions take their next turn)."""
    held = {}
    for name, worker in scheduler.workers.items():
        for o, info in (await worker.owners()).items():
            held[o] = (name, info)
    for entry in scheduler.directory.entries():
        req = Request.from_dict(scheduler.directory.request_of(entry.owner_id))
        name, info = held.get(entry.owner_id, (entry.worker_id, None))
        tokens = info.tokens if info and info.tokens is not None else scheduler.directory.tokens(entry.owner_id)
        progress: OwnerProgress = info.progress if info else None
        scheduler.core.admit(req, name, version=entry.version, tokens=tokens, progress=progress,
                             tenant_id=entry.tenant_id)
        if info and info.candidate:   # the old scheduler died mid-commit: follow the directory
            publish = entry.version == progress.writes + 1
            await scheduler.workers[name].reconcile([entry.owner_id] if publish else [],
                                                    [] if publish else [entry.owner_id])
            if publish:
                scheduler.core.adopt_write(entry.owner_id)
        scheduler.sessions.restore(entry.owner_id, entry.tenant_id, info.kept if info else [])
