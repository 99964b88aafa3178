"""ServiceManager: one named actor per service that owns the cluster (Redis, workers, scheduler).

Every ingress replica gets it with get_if_exists, so however many replicas start, one cluster
serves them. Its tokenizer facts (vocab, context limit) are what the ingress needs, no model.
A manager found under the service's name but started with other arguments (an earlier deploy's
config) is shut down and replaced by get_manager, never silently reused.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time

import ray

from actors.cluster import RwtttCluster
from rwttt_ray.config import RwtttConfig


@ray.remote(num_cpus=0, max_restarts=0)
class ServiceManager:
    def __init__(self, config: RwtttConfig, num_workers: int, redis_url: str | None, tenant_limits: dict,
                 max_rounds: int, namespace: str | None = None) -> None:
        self._fingerprint = config_fingerprint(config, num_workers, redis_url, tenant_limits, max_rounds, namespace)
        self.cluster = RwtttCluster(config, num_workers=num_workers, redis_url=redis_url, max_rounds=max_rounds,
                                    tenant_limits=tenant_limits, namespace=namespace)

    def scheduler(self):
        return self.cluster.scheduler

    def ping(self) -> bool:
        return True

    def fingerprint(self) -> str:
        """config_fingerprint of the arguments this manager was started with."""
        return self._fingerprint

    def drain(self, grace_s: float = 20.0) -> dict:
        """Graceful shutdown, first half: sessions spilled to the shared store (see SchedulerActor.drain)."""
        return ray.get(self.cluster.scheduler.drain.remote(grace_s))

    def shutdown(self, grace_s: float | None = None) -> dict:
        """Stop the cluster; with `grace_s`, drain first and return what the drain did."""
        summary = self.drain(grace_s) if grace_s is not None else {}
        self.cluster.shutdown()
        return summary


def config_fingerprint(*args) -> str:
    """A digest of a manager's constructor arguments, the same in every process (dataclasses as
    dicts, keys sorted, sets sorted)."""
    def plain(o):
        if dataclasses.is_dataclass(o) and not isinstance(o, type):
            return dataclasses.asdict(o)
        return sorted(map(repr, o)) if isinstance(o, (set, frozenset)) else repr(o)
    return hashlib.sha256(json.dumps(args, sort_keys=True, default=plain).encode()).hexdigest()[:16]


def get_manager(name: str, config: RwtttConfig, num_workers: int, redis_url: str | None, tenant_limits: dict,
                max_rounds: int = 64, timeout_s: float = 120.0):
    """The service's manager (started if none runs). One that runs other arguments is shut down
    and killed, and a new one started; one being replaced by another replica is waited for."""
    args = (config, num_workers, redis_url, tenant_limits, max_rounds, f"rwttt-{name}")
    want, deadline = config_fingerprint(*args), time.monotonic() + timeout_s
    while True:
        manager = ServiceManager.options(name=name, get_if_exists=True, lifetime="detached").remote(*args)
        try:
            if ray.get(manager.fingerprint.remote()) == want:
                return manager
            logging.getLogger("ray.serve").warning("rwttt-ray: service %r runs another configuration: "
                                                   "replacing its manager", name)
            try:
                ray.get(manager.shutdown.remote(), timeout=30)     # its workers, scheduler and Redis
            finally:
                ray.kill(manager, no_restart=True)
        except ray.exceptions.RayActorError as exc:       # died: killed by a replacer (retry) or failed to start
            if exc.actor_init_failed or time.monotonic() > deadline:
                raise
        except ray.exceptions.GetTimeoutError:            # a stuck shutdown: the kill above stops it
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"service {name!r}: no manager with this configuration in {timeout_s:g}s")
        time.sleep(0.2)                                   # the dead manager's name is freed
