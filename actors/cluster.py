"""RwtttCluster: starts (or joins) Ray, Redis, the worker actors and the scheduler actor.

Everything it does is in its RwtttConfig (config.cluster: workers, autoscaling, address, Redis,
resources; config.batching and config.service go to the scheduler). Local by default:
`ray.init()` with the dashboard off, a private redis-server unless RWTTT_REDIS_URL (or
`redis_url`) is given. `address` (or RAY_ADDRESS, as under `ray job submit`) joins an existing
cluster. Used by the benchmark, the tests and the Serve app. Autoscaling is off by default (a
fixed `workers`); `max_workers` turns it on: the scheduler then starts workers (between
`min_workers` and `max_workers`) with the same options as these. `worker_resources` (one dict
per worker) and `scheduler_resources` pin actors to nodes.
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import uuid

import ray

from actors.directory import RedisDirectory
from actors.redis_server import EmbeddedRedis, resolve_redis_url
from actors.scheduler import SchedulerActor
from actors.worker import WorkerLauncher
from actors.worker_client import WorkerClient
from policies.autoscaling import AutoscalingPolicy, QueueDepthAutoscaler
from rwttt_ray.config import ClusterConfig, RwtttConfig
from rwttt_ray.core.request import Request

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")   # a local, loopback-only cluster


def init_ray(address: str | None = None, num_cpus: int | None = None, host: str = "127.0.0.1") -> None:
    """Join `address` (or RAY_ADDRESS), else start a local cluster whose Serve ports are private
    to it and bound to `host` (the serve host; see haproxy_env)."""
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, namespace="rwttt", log_to_driver=False)
    else:
        inherited = os.environ.get(HAPROXY_OWNER) not in (None, str(os.getpid()))   # another rwttt's
        for key, value in haproxy_env(host).items():   # inherited by the raylet, so by Serve's processes
            if key in ALWAYS_OURS or (inherited and key != "RAY_SERVE_ENABLE_HA_PROXY"):
                os.environ[key] = value
            else:
                os.environ.setdefault(key, value)
        os.environ[HAPROXY_OWNER] = str(os.getpid())
        ray.init(num_cpus=num_cpus or max(2, os.cpu_count() or 2), include_dashboard=False, namespace="rwttt",
                 log_to_driver=False, runtime_env={"env_vars": {"RAY_USAGE_STATS_ENABLED": "0"}})


HAPROXY_OWNER = "RWTTT_HAPROXY_OWNER"     # the pid whose local cluster the HAProxy settings are for
HAPROXY_REAL = "RWTTT_HAPROXY_REAL"       # the haproxy binary our shim execs
ALWAYS_OURS = ("RAY_SERVE_HAPROXY_BINARY_PATH",)    # the shim of this cluster (a user's binary: HAPROXY_REAL)


def haproxy_env(host: str = "127.0.0.1") -> dict[str, str]:
    """A local cluster's Serve puts HAProxy (C, shipped with ray[serve]) in front of the ingress
    replicas instead of the Python proxy actor: about a third less CPU per streamed token on a
    small machine. Its files go to a private folder; every port Serve opens (HAProxy's stats and
    metrics, the fallback proxy's, the replicas' ranges) is in a block reserved for this process
    (actors.local_ports), so two local clusters (two `rwttt serve`, a test run and the server it
    starts) share none; HAProxy's stats and metrics bind `host` through a shim (Serve's template
    binds them on every interface). Settings inherited from another rwttt process are replaced,
    a user's own are kept. RAY_SERVE_ENABLE_HA_PROXY=0 in the environment keeps the Python proxy."""
    from actors.local_ports import haproxy_shim, real_haproxy, serve_ports

    folder = tempfile.mkdtemp(prefix="rwttt-haproxy-")
    atexit.register(shutil.rmtree, folder, True)
    env = {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": f"{folder}/haproxy.cfg",
           "RAY_SERVE_HAPROXY_SOCKET_PATH": f"{folder}/admin.sock", "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": folder,
           "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": f"{folder}/server-state",
           "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": f"{folder}/metrics.sock", **serve_ports(host),
           # one node, nothing in front: the 30 s minimum drain of a deleted app (meant for load
           # balancers before HAProxy) only delays `serve.delete` and Ctrl-C; turns drain by --grace-s
           "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "2"}
    user = os.environ.get("RAY_SERVE_HAPROXY_BINARY_PATH") if HAPROXY_OWNER not in os.environ else None
    real = os.environ.get(HAPROXY_REAL) or user or real_haproxy()
    if real:                              # else Serve reports the missing binary itself
        env[HAPROXY_REAL] = real
        env["RAY_SERVE_HAPROXY_BINARY_PATH"] = haproxy_shim(folder, host, real)
    return env


class RwtttCluster:
    def __init__(self, *, config: RwtttConfig, record_logits: bool = False, namespace: str | None = None) -> None:
        """`record_logits`: workers keep every token's logits (the benchmark's gates); `namespace`:
        the Redis namespace (a fixed one, a service's name, lets a new cluster adopt spilled sessions)."""
        config.check_environment()
        c = config.cluster
        num_workers = c.start_workers
        self.autoscaler = _autoscaler(c)
        init_ray(c.address)
        self.config = config
        self.redis_url, self._redis = resolve_redis_url(c.redis_url)
        RedisDirectory(self.redis_url).ping()     # fail fast, naming the URL, before any actor starts
        # NOTE: a fixed namespace (a service's name) lets a new cluster adopt the sessions an old one spilled
        self.namespace = namespace or f"rwttt-{uuid.uuid4().hex[:8]}"
        model_settings = config.model.load_model().settings   # chunk and TTT flag for the scheduler
        self.chunk, self.ttt = model_settings.chunk, model_settings.enabled
        threads = c.threads_per_worker or max(1, int((os.cpu_count() or 2) // max(1, num_workers)))
        self.launcher = WorkerLauncher(config=config, redis_url=self.redis_url, namespace=self.namespace,
                                       threads=threads, record_logits=record_logits, cpus=c.worker_cpus)
        self.worker_names = [f"{self.namespace}-worker-{i}" for i in range(num_workers)]
        per_worker = list(c.worker_resources)
        self.workers = {name: self.launcher.launch(name, per_worker[i] if i < len(per_worker) else None)
                        for i, name in enumerate(self.worker_names)}
        ray.get([WorkerClient(name=n, handle=w).ping() for n, w in self.workers.items()])
        self.scheduler = self._new_scheduler(recover=False)

    @property
    def private_redis(self) -> bool:
        """The directory is the redis-server this cluster started (it ends with the cluster)."""
        return isinstance(self._redis, EmbeddedRedis)

    def _new_scheduler(self, recover: bool):
        sched = SchedulerActor.options(name=f"{self.namespace}-scheduler-{uuid.uuid4().hex[:4]}",
                                       resources=dict(self.config.cluster.scheduler_resources)).remote(
            config=self.config, chunk=self.chunk, ttt=self.ttt, redis_url=self.redis_url, namespace=self.namespace,
            worker_names=self.worker_names, launcher=self.launcher, autoscaler=self.autoscaler)
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
    def worker(self, name: str):
        """A worker's handle, also one the autoscaler started."""
        return self.workers.get(name) or ray.get_actor(name)

    def sync_workers(self) -> list[str]:
        """Refresh the worker list from the scheduler (the autoscaler adds and drains workers)."""
        alive = ray.get(self.scheduler.live_workers.remote())
        self.workers = {name: self.worker(name) for name in alive}
        self.worker_names = list(alive)
        return self.worker_names

    def kill_worker(self, name: str) -> None:
        WorkerClient(name=name, handle=self.worker(name)).kill()

    def restart_scheduler(self):
        """Kill the scheduler and start a new one (new epoch) that rebuilds from Redis."""
        if self.autoscaler is not None:
            self.sync_workers()
        old = self.scheduler
        ray.kill(old, no_restart=True)
        self.scheduler = self._new_scheduler(recover=True)
        return old

    def replace_scheduler(self):
        """The scheduler died: a new one (a new epoch) rebuilds from Redis and the live workers."""
        self.workers = {n: h for n in self.worker_names if (h := self._live_worker(n)) is not None}
        self.worker_names = list(self.workers)
        self.scheduler = self._new_scheduler(recover=True)
        return self.scheduler

    def _live_worker(self, name: str):
        try:
            handle = self.worker(name)
        except ValueError:      # a dead actor's name is free again
            return None
        return handle if _alive(WorkerClient(name=name, handle=handle)) else None

    def replace_worker(self, name: str) -> str:
        """A worker died: the scheduler replays its owners on the live workers at once (with none
        left, they wait), then a new worker restores the capacity and takes the owners that
        waited; returns the new name."""
        ray.get(self.scheduler.worker_lost.remote(name))
        new = f"{self.namespace}-worker-{uuid.uuid4().hex[:6]}"
        handle = self.launcher.launch(new)
        ray.get(WorkerClient(name=new, handle=handle).ping())
        self.workers.pop(name, None)
        self.workers[new] = handle
        self.worker_names = list(self.workers)
        ray.get(self.scheduler.attach_worker.remote(new, handle))
        ray.get(self.scheduler.worker_lost.remote(name))        # the owners that waited for it
        return new

    def deltas(self, owner_id: str, worker: str) -> list | None:
        return ray.get(WorkerClient(name=worker, handle=self.worker(worker)).deltas(owner_id))

    def stats(self) -> dict:
        return ray.get(self.scheduler.stats.remote())

    def shutdown(self) -> None:
        if self.autoscaler is not None:
            try:
                self.sync_workers()
            except Exception:
                pass
        for handle in (self.scheduler, *self.workers.values()):
            try:
                ray.kill(handle, no_restart=True)
            except Exception:
                pass
        if isinstance(self._redis, EmbeddedRedis):
            self._redis.stop()


def _alive(worker: WorkerClient, timeout_s: float = 60.0) -> bool:
    """The actor answers (a phase in flight delays the answer, it does not make it dead)."""
    try:
        ray.get(worker.ping(), timeout=timeout_s)
    except ray.exceptions.RayActorError:
        return False
    except ray.exceptions.GetTimeoutError:
        pass
    return True


def _autoscaler(c: ClusterConfig) -> AutoscalingPolicy | None:
    """The queue-depth autoscaler when `max_workers` is given (else None: a fixed worker count;
    ClusterConfig has checked the counts)."""
    if c.max_workers is None:
        return None
    return QueueDepthAutoscaler(c.min_workers or 1, c.max_workers, **c.autoscale)
