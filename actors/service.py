"""ServiceManager: one named actor per service that owns the cluster (Redis, workers, scheduler).

Every ingress replica gets it with get_if_exists, so however many replicas start, one cluster
serves them. Its tokenizer facts (vocab, context limit) are what the ingress needs, no model.
"""
from __future__ import annotations

import ray

from actors.cluster import RwtttCluster
from rwttt_ray.config import RwtttConfig


@ray.remote(num_cpus=0, max_restarts=0)
class ServiceManager:
    def __init__(self, config: RwtttConfig, num_workers: int, redis_url: str | None, tenant_limits: dict,
                 max_rounds: int, namespace: str | None = None) -> None:
        self.cluster = RwtttCluster(config, num_workers=num_workers, redis_url=redis_url, max_rounds=max_rounds,
                                    tenant_limits=tenant_limits, namespace=namespace)

    def scheduler(self):
        return self.cluster.scheduler

    def ping(self) -> bool:
        return True

    def drain(self, grace_s: float = 20.0) -> dict:
        """Graceful shutdown, first half: sessions spilled to the shared store (see SchedulerActor.drain)."""
        return ray.get(self.cluster.scheduler.drain.remote(grace_s))

    def shutdown(self, grace_s: float | None = None) -> dict:
        """Stop the cluster; with `grace_s`, drain first and return what the drain did."""
        summary = self.drain(grace_s) if grace_s is not None else {}
        self.cluster.shutdown()
        return summary


def get_manager(name: str, config: RwtttConfig, num_workers: int, redis_url: str | None, tenant_limits: dict,
                max_rounds: int = 64):
    return ServiceManager.options(name=name, get_if_exists=True, lifetime="detached").remote(
        config, num_workers, redis_url, tenant_limits, max_rounds, f"rwttt-{name}")
