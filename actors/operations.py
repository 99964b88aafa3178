"""Operations on a running SchedulerActor that move committed state: migrate an owner between
workers, and the graceful drain that spills every session to the shared store.

Each runs as a job between two of the source worker's phases (`_between_phases`), after telling
the worker the ledger's verdict on the owner's last WRITE, so what moves is a committed state.
"""
from __future__ import annotations

import asyncio
import time

from actors.directory import Tier


async def migrate_owner(sched, owner_id: str, dst: str) -> None:
    """Hand the owner's state from its worker to `dst` through the object store."""
    src = sched.core.owners[owner_id].worker_id
    if src == dst:
        return

    async def job() -> None:
        if sched.core.owners.get(owner_id) is None or sched.core.owners[owner_id].worker_id != src:
            raise KeyError(f"owner {owner_id} left worker {src} before it could migrate")
        await publish_pending(sched, src, owner_id)
        handover = sched.workers[src].handover(owner_id)    # object store, worker to worker
        await sched.workers[dst].accept(handover)
        sched.core.move(owner_id, dst)
        sched.directory.move(owner_id, sched.epoch, dst, -1, Tier.DEVICE,
                             expected_version=sched.core.ledger.committed(owner_id))
        sched._wake[dst].set()
    await sched._between_phases(src, job)


async def drain_service(sched, grace_s: float) -> dict:
    """Refuse new turns, let running ones finish for most of `grace_s`, stop the rest, then spill
    every session's committed state to the shared store (payload first, then the directory
    entry), so nothing committed is lost with the workers."""
    sched.sessions.draining = True
    deadline = time.monotonic() + 0.75 * grace_s
    while sched.sessions.book.busy(sched.core.owners) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    stopped = sched.sessions.stop_all("the server is shutting down")
    for owner_id in stopped:           # a cut session turn goes back to its last kept state
        if sched.sessions.book.is_session(owner_id):
            await sched.sessions.cut_turn(owner_id)
    keys = [await spill_to_store(sched, o) for o in sched.sessions.book.sessions() if o in sched.core.owners]
    return {"spilled": len(keys), "stopped": len(stopped), "payload_keys": keys}


async def spill_to_store(sched, owner_id: str) -> str:
    worker_id = sched.core.owners[owner_id].worker_id

    async def job() -> str:
        await publish_pending(sched, worker_id, owner_id)
        version = sched.core.ledger.committed(owner_id)
        key = await sched.workers[worker_id].spill_to_store(owner_id, version, sched.epoch)
        sched.core.mark_spilled(owner_id)
        return key
    return await sched._between_phases(worker_id, job)


async def publish_pending(sched, worker_id: str, owner_id: str) -> None:
    """Tell the worker the ledger's verdict on the owner's last WRITE before its state moves."""
    publish, discard = sched.core.take_verdicts(worker_id, owner_id)
    if publish or discard:
        await sched.workers[worker_id].reconcile(publish, discard)
