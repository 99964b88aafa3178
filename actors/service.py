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
                 max_rounds: int) -> None:
        self.cluster = RwtttCluster(config, num_workers=num_workers, redis_url=redis_url, max_rounds=max_rounds,
                                    tenant_limits=tenant_limits)

    def scheduler(self):
        return self.cluster.scheduler

    def ping(self) -> bool:
        return True

    def shutdown(self) -> None:
        self.cluster.shutdown()


def get_manager(name: str, config: RwtttConfig, num_workers: int, redis_url: str | None, tenant_limits: dict,
                max_rounds: int = 64):
    return ServiceManager.options(name=name, get_if_exists=True, lifetime="detached").remote(
        config, num_workers, redis_url, tenant_limits, max_rounds)
