"""ServiceManager: one named actor per service that owns the cluster (Redis, workers, scheduler).

Every ingress replica gets it with get_if_exists, so however many replicas start, one cluster
serves them. Its tokenizer facts (vocab, context limit) are what the ingress needs, no model.
It heals the cluster: a watcher thread pings the scheduler and the workers without blocking
(a ping still out is asked again later, so a long phase is not a death); a dead scheduler is
replaced by one that takes a new epoch and rebuilds from Redis, a dead worker by a new worker
onto which its owners are replayed. Ingress replicas ask `scheduler()` again when theirs died.
A manager found under the service's name but started with other arguments (an earlier deploy's
config) is shut down and replaced by get_manager, never silently reused.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import threading
import time

import ray

from actors.cluster import RwtttCluster
from actors.worker_client import WorkerClient
from rwttt_ray.core.events import EventLog
from rwttt_ray.config import RwtttConfig


logger = logging.getLogger("ray.serve")
WATCH_S = 0.5


@ray.remote(num_cpus=0, max_restarts=0, max_concurrency=4)
class ServiceManager:
    def __init__(self, *, config: RwtttConfig, namespace: str | None = None) -> None:
        self._fingerprint = config_fingerprint(config, namespace)
        self.cluster = RwtttCluster(config=config, namespace=namespace)
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.log = EventLog()                 # its own events and the schedulers' (for the console)
        self._sched_seq = 0                   # the last scheduler event copied into the log
        self.log_lock = threading.Lock()
        threading.Thread(target=self._watch, daemon=True).start()

    def scheduler(self):
        with self.lock:
            return self.cluster.scheduler

    def events(self, since: int = 0) -> tuple[int, list[str]]:
        """The service's events numbered after `since` (the watcher's and the scheduler's, in the
        order seen): (the last number, the lines). `rwttt serve` prints them as they come."""
        self._pull()                     # not under self.lock: a replacement in progress holds it
        return self.log.since(since)

    def _pull(self) -> None:
        """Copy the scheduler's new events into the log."""
        with self.log_lock:
            try:
                seq, lines = ray.get(self.cluster.scheduler.events_since.remote(self._sched_seq), timeout=5)
            except Exception:            # a dead or busy scheduler: its lines come later (or died with it)
                return
            self._sched_seq = seq
            for line in lines:
                self.log.add(line)

    def _watch(self) -> None:
        pings: dict[str, ray.ObjectRef] = {}
        while not self.stopped.wait(WATCH_S):
            with self.lock:
                if self.stopped.is_set():
                    return
                actors = {"scheduler": self.cluster.scheduler} if self.cluster.autoscaler is not None else \
                    {"scheduler": self.cluster.scheduler, **self.cluster.workers}
                for name, handle in actors.items():
                    pings.setdefault(name, self.cluster.scheduler.ping.remote() if name == "scheduler"
                                     else WorkerClient(name=name, handle=handle).ping())
                for name, ref in list(pings.items()):
                    state = _ping_state(ref)
                    if state != "out" or name not in actors:
                        del pings[name]              # answered (or gone): asked again next round
                    if state == "dead" and name in actors:
                        self._heal(name)

    def _heal(self, name: str) -> None:
        try:
            if name == "scheduler":
                self.cluster.replace_scheduler()
                with self.log_lock:
                    self._sched_seq = 0
                line = f"scheduler lost: a new one (epoch {ray.get(self.cluster.scheduler.ping.remote())}) rebuilt from Redis"
            else:
                new = self.cluster.replace_worker(name)
                self._pull()             # the scheduler's lines about the loss come first
                line = f"worker {name} lost: replaced by {new}, its owners replayed"
        except Exception as exc:       # next round tries again
            line = f"healing {name} failed: {type(exc).__name__}: {exc}"
        logger.info("rwttt-ray: %s", line)
        with self.log_lock:
            self.log.add(line)

    def ping(self) -> bool:
        return True

    def fingerprint(self) -> str:
        """config_fingerprint of the arguments this manager was started with."""
        return self._fingerprint

    def drain(self, grace_s: float = 20.0) -> dict:
        """Graceful shutdown, first half: sessions spilled to the shared store (see SchedulerActor.drain);
        `private_store`: that store is the private redis-server, which ends with this service."""
        summary = ray.get(self.cluster.scheduler.drain.remote(grace_s))
        return dict(summary, private_store=self.cluster.private_redis)

    def shutdown(self, grace_s: float | None = None) -> dict:
        """Stop the cluster; with `grace_s`, drain first and return what the drain did."""
        self.stopped.set()
        with self.lock:
            try:
                summary = self.drain(grace_s) if grace_s is not None else {}
            finally:
                self.cluster.shutdown()
        return summary


def _ping_state(ref: ray.ObjectRef) -> str:
    """'out' (no answer yet: maybe a long phase), 'alive' or 'dead' (the actor died)."""
    ready, _ = ray.wait([ref], timeout=0)
    if not ready:
        return "out"
    try:
        ray.get(ready[0])
        return "alive"
    except ray.exceptions.RayActorError:
        return "dead"
    except Exception:
        return "alive"


def config_fingerprint(*args) -> str:
    """A digest of a manager's constructor arguments, the same in every process (dataclasses as
    dicts, keys sorted, sets sorted)."""
    def plain(o):
        if dataclasses.is_dataclass(o) and not isinstance(o, type):
            return dataclasses.asdict(o)
        return sorted(map(repr, o)) if isinstance(o, (set, frozenset)) else repr(o)
    return hashlib.sha256(json.dumps(args, sort_keys=True, default=plain).encode()).hexdigest()[:16]


def get_manager(name: str, config: RwtttConfig, timeout_s: float = 120.0):
    """The service's manager (started if none runs). One that runs another config is shut down
    and killed, and a new one started; one being replaced by another replica is waited for."""
    kw = {"config": config, "namespace": f"rwttt-{name}"}
    want, deadline = config_fingerprint(config, kw["namespace"]), time.monotonic() + timeout_s
    while True:
        manager = ServiceManager.options(name=name, get_if_exists=True, lifetime="detached").remote(**kw)
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
