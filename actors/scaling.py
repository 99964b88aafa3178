"""WorkerScaler: the scheduler actor's autoscaling loop, the Ray side of policies/autoscaling.py.

Every `interval_s` (off the per-token path) it reads a pure observation from SchedulerCore and
asks the policy. +1: start a worker through the cluster's WorkerLauncher (same options as the
others: a GPU each on CUDA, so Ray's autoscaler can add a node), attach it, and move owners
waiting on crowded workers to it. -1: drain a worker: it takes no new owners, every owner
migrates away between its phases (state through the object store, no request lost), then it is
retired on its own loop and killed.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from actors.worker import WorkerLauncher
from actors.worker_client import WorkerClient
from policies.autoscaling import AutoscalingPolicy, ScaleDecision
from rwttt_ray.core.scheduler import SchedulerCore

logger = logging.getLogger(__name__)
DRAIN_ATTEMPTS = 20


class ScalingHost(Protocol):
    """What the scaler needs of the scheduler actor."""

    core: SchedulerCore
    stale: bool
    workers: dict[str, WorkerClient]

    async def attach_worker(self, name: str, handle: Any) -> None: ...

    async def migrate(self, owner_id: str, dst: str) -> None: ...

    async def retire_worker(self, name: str) -> bool: ...


class WorkerScaler:
    def __init__(self, host: ScalingHost, policy: AutoscalingPolicy | None, launcher: WorkerLauncher | None,
                 interval_s: float = 0.5) -> None:
        self.host, self.policy, self.launcher, self.interval_s = host, policy, launcher, interval_s
        self.events: list[dict] = []        # what it did, in order (stats)
        self.num_pending = 0                # workers starting or draining

    @property
    def enabled(self) -> bool:
        """Autoscaling runs only with a policy and a way to start workers (drain works always)."""
        return self.policy is not None and self.launcher is not None

    async def run(self) -> None:
        """The periodic loop; one scaling action at a time. A failed action is logged, not fatal."""
        while not self.host.stale:
            await asyncio.sleep(self.interval_s)
            try:
                await self.tick()
            except Exception:
                logger.exception("autoscaling step")

    async def tick(self) -> ScaleDecision:
        assert self.policy is not None
        decision = self.policy.decide(self.host.core.scale_observation(self.num_pending))
        if decision.delta > 0:
            await self.scale_up()
        elif decision.delta < 0 and decision.worker_id is not None:
            await self.drain(decision.worker_id)
        return decision

    def _new_name(self) -> str:
        assert self.launcher is not None
        taken = set(self.host.core.workers)
        index = len(taken)
        while f"{self.launcher.namespace}-worker-{index}" in taken:
            index += 1
        return f"{self.launcher.namespace}-worker-{index}"

    async def scale_up(self) -> str:
        name = self._new_name()
        assert self.launcher is not None
        self.num_pending += 1
        try:
            await self.host.attach_worker(name, self.launcher.launch(name))
        finally:
            self.num_pending -= 1
        moved = self.host.core.rebalance_moves(name)
        await asyncio.gather(*(self._move(o, name) for o in moved))
        self.events.append({"event": "up", "worker": name, "moved": moved})
        return name

    async def drain(self, name: str) -> list[str]:
        """Move every owner off `name`, retire it, kill its actor; the owners it moved."""
        core, moved = self.host.core, []
        if not core.workers[name].alive or core.workers[name].draining:
            raise ValueError(f"worker {name} is not serving (dead or already draining)")
        core.set_draining(name)
        self.num_pending += 1
        try:
            for _ in range(DRAIN_ATTEMPTS):     # owners may arrive meanwhile (a fork on a draining parent)
                targets = core.drain_targets(name)
                if not targets and await self.host.retire_worker(name):
                    break
                done = await asyncio.gather(*(self._move(o, dst) for o, dst in targets.items()))
                moved += [o for o, ok in zip(targets, done) if ok]
            else:
                core.set_draining(name, False)     # could not empty it: keep serving there
                raise RuntimeError(f"worker {name} could not be drained")
            self._kill(name)
        finally:
            self.num_pending -= 1
        self.events.append({"event": "down", "worker": name, "moved": moved})
        return moved

    async def _move(self, owner_id: str, dst: str) -> bool:
        try:
            await self.host.migrate(owner_id, dst)
            return True
        except Exception:       # e.g. released meanwhile; the next attempt re-reads the owners
            if owner_id in self.host.core.owners:
                logger.exception("moving %s to %s", owner_id, dst)
            return False

    def _kill(self, name: str) -> None:
        worker = self.host.workers.pop(name, None)
        if worker is not None:
            worker.kill()
