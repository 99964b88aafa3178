"""Recovery of a lost worker, for SchedulerActor: its owners are replayed on live workers.

The core decides (SchedulerCore.can_replay, worker_lost: every owner rolled back to its
committed version and re-pointed at a live worker); this shell sends the admits, moves the
directory entries and wakes the loops. With no live worker left, running turns fail (retry) and
the rest wait, stranded, until a new worker is up and the service manager calls again.
"""
from __future__ import annotations

from actors.directory import Tier

NO_WORKER_LEFT = "the worker was lost and no live worker is left to replay on (a new one is starting): retry shortly"


async def recover_worker(sched, worker_id: str) -> None:
    """Replay the lost worker's owners elsewhere from their token logs. The admits are sent
    before this coroutine yields, so Ray runs them before any phase that plans those owners."""
    core = sched.core
    if not core.can_replay(worker_id):
        if worker_id in sched.stranded:
            return                       # told already: its owners wait
        core.worker_dead(worker_id)
        sched._fail_owners(worker_id, NO_WORKER_LEFT)
        sched.stranded.add(worker_id)
        sched.event("worker %s lost with no live worker left: its %d owners wait for a new one",
                    worker_id, len(core.owners_on(worker_id)))
        return
    sched.stranded.discard(worker_id)
    moved = core.worker_lost(worker_id)
    sched.event("worker %s lost: replaying its %d owners from their token logs", worker_id, len(moved))
    sched.sessions.book.replaying(moved)
    refs = [sched.workers[core.owners[o].worker_id].admit(
        core.owners[o].request, core.owners[o].tokens, core.owners[o].progress) for o in moved]
    for owner_id, ref in zip(moved, refs):
        dst = core.owners[owner_id].worker_id
        await ref
        sched.directory.move(owner_id, sched.epoch, dst, -1, Tier.DEVICE)
        sched._wake[dst].set()
    sched._notify()


async def replay_lost(sched, worker_id: str) -> list[str]:
    """The service manager saw the worker die (maybe while idle): replay its owners now, between
    its loop's phases (or at once, if its loop is over: owners that waited for a new worker);
    returns them."""
    if worker_id in sched.stranded:
        owners = sched.core.owners_on(worker_id)
        await recover_worker(sched, worker_id)
        return owners
    if worker_id not in sched.core.workers or not sched.core.workers[worker_id].alive:
        return []

    async def job() -> list[str]:
        owners = sched.core.owners_on(worker_id)
        await recover_worker(sched, worker_id)
        return owners
    try:
        return await sched._between_phases(worker_id, job)
    except KeyError:       # its loop found the death first (a phase failed) and replayed them
        return []
