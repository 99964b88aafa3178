"""RwtttCluster: starts (or joins) Ray, Redis, the worker actors and the scheduler actor.

Local by default: `ray.init()` with the dashboard off, a private redis-server unless
RWTTT_REDIS_URL (or `redis_url`) is given. `address` (or RAY_ADDRESS, as under `ray job
submit`) joins an existing cluster. Used by the benchmark, the tests and the Serve app.
"""
from __future__ import annotations

import os
import uuid

import ray

from actors.directory import RedisDirectory
from actors.redis_server import EmbeddedRedis, resolve_redis_url
from actors.scheduler import SchedulerActor
from actors.worker import WorkerActor
from rwttt_ray.config import RwtttConfig
from rwttt_ray.core.request import Request

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")   # a local, loopback-only cluster


def init_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, namespace="rwttt", log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus or max(2, os.cpu_count() or 2), include_dashboard=False, namespace="rwttt",
                 log_to_driver=False, runtime_env={"env_vars": {"RAY_USAGE_STATS_ENABLED": "0"}})


class RwtttCluster:
    def __init__(self, config: RwtttConfig, num_workers: int = 1, address: str | None = None,
                 redis_url: str | None = None, max_rounds: int = 64, quantum_steps: int | None = None,
                 worker_cpus: float = 1.0, threads_per_worker: int | None = None, record_logits: bool = False,
                 tenant_limits: dict | None = None) -> None:
        self.tenant_limits = tenant_limits or {}
        init_ray(address)
        self.config = config
        self.redis_url, self._redis = resolve_redis_url(redis_url)
        RedisDirectory(self.redis_url).ping()     # fail fast, naming the URL, before any actor starts
        self.namespace = f"rwttt-{uuid.uuid4().hex[:8]}"
        model_settings = config.load_model().settings   # chunk and TTT flag for the scheduler
        self.chunk, self.ttt = model_settings.chunk, model_settings.enabled
        self.max_rounds, self.quantum_steps = max_rounds, quantum_steps
        threads = threads_per_worker or max(1, int((os.cpu_count() or 2) // max(1, num_workers)))
        gpu = config.device.startswith("cuda")
        self.worker_names = [f"{self.namespace}-worker-{i}" for i in range(num_workers)]
        self.workers = {name: WorkerActor.options(name=name, num_cpus=0 if gpu else worker_cpus,
                                                  num_gpus=1 if gpu else 0).remote(
            name, config, self.redis_url, self.namespace, threads, record_logits) for name in self.worker_names}
        ray.get([w.ping.remote() for w in self.workers.values()])
        self.scheduler = self._new_scheduler(recover=False)

    def _new_scheduler(self, recover: bool):
        sched = SchedulerActor.options(name=f"{self.namespace}-scheduler-{uuid.uuid4().hex[:4]}").remote(
            self.config, self.chunk, self.ttt, self.redis_url, self.namespace, self.worker_names,
            self.max_rounds, self.quantum_steps, self.tenant_limits)
        ray.get(sched.start.remote(recover))
        return sched

    # -- running --------------------------------------------------------------------------
    def submit(self, requests: list[Request]) -> list[str]:
        return ray.get([self.scheduler.submit.remote(r) for r in requests])

    def wait(self, owner_ids: list[str], timeout_s: float = 600.0) -> dict[str, dict]:
        return ray.get(self.scheduler.wait.remote(owner_ids, timeout_s))

    def run(self, requests: list[Request], timeout_s: float = 600.0) -> dict[str, dict]:
        """Submit, wait, release: one-shot requests whose owners end with them."""
        ids = self.submit(requests)
        out = self.wait(ids, timeout_s)
        self.release(ids)
        return out

    def release(self, owner_ids: list[str]) -> None:
        ray.get([self.scheduler.release.remote(o) for o in owner_ids])

    # -- operations and faults ------------------------------------------------------------
    def kill_worker(self, name: str) -> None:
        ray.kill(self.workers[name], no_restart=True)

    def restart_scheduler(self):
        """Kill the scheduler and start a new one (new epoch) that rebuilds from Redis."""
        old = self.scheduler
        ray.kill(old, no_restart=True)
        self.scheduler = self._new_scheduler(recover=True)
        return old

    def deltas(self, owner_id: str, worker: str) -> list | None:
        return ray.get(self.workers[worker].deltas.remote(owner_id))

    def stats(self) -> dict:
        return ray.get(self.scheduler.stats.remote())

    def shutdown(self) -> None:
        for handle in (self.scheduler, *self.workers.values()):
            try:
                ray.kill(handle, no_restart=True)
            except Exception:
                pass
        if isinstance(self._redis, EmbeddedRedis):
            self._redis.stop()
