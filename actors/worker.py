"""WorkerActor: a Ray actor shell over WorkerCore (model + pools + phase execution).

One call runs a whole phase (many rounds). It heartbeats into the directory so the scheduler
and operators can see it is alive. Tensors never leave it except as owner-state bytes
(migration through Ray's object store). `WorkerLauncher` starts one with the cluster's options
(the cluster's own workers and those an autoscaling scheduler adds).
"""
from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field

import ray
import torch

from actors.directory import RedisDirectory
from actors.state_directory import StateDirectory
from actors.worker_client import Admission, AdoptedState, Handover, HeldOwner, WorkerInfo
from rwttt_ray.config import RwtttConfig
from rwttt_ray.core.phase import PhasePlan, PhaseResult
from rwttt_ray.core.progress import OwnerProgress
from rwttt_ray.core.request import Request
from rwttt_ray.ttt import state_io
from rwttt_ray.ttt.capacity import plan_worker
from rwttt_ray.ttt.worker_core import WorkerCore

HEARTBEAT_S = 1.0
logger = logging.getLogger(__name__)


@ray.remote(max_restarts=0)
class WorkerActor:
    def __init__(self, *, worker_id: str, config: RwtttConfig, redis_url: str, namespace: str,
                 threads: int | None = None, record_logits: bool = False) -> None:
        torch.set_num_threads(threads or max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
        self.worker_id = worker_id
        model = config.model.load_model()
        b = config.batching
        plan = plan_worker(model, device=config.model.device, max_group_size=b.max_group_size, **b.memory())
        self.core = WorkerCore(model, worker_id, record_logits=record_logits, capacity=plan,
                               graphs=not config.model.enforce_eager, swap_space=b.swap_space)
        logger.info("worker %s: %s", worker_id, plan.describe(self.core.runner.max_seq_len, self.core.host_owners))
        self.directory: StateDirectory = RedisDirectory(redis_url, namespace)
        self._stop = threading.Event()
        threading.Thread(target=self._heartbeat, daemon=True).start()

    def _heartbeat(self) -> None:
        while not self._stop.is_set():
            try:
                self.directory.heartbeat(self.worker_id, 5 * HEARTBEAT_S)
            except Exception:   # Redis away: the scheduler sees the missing heartbeat
                pass
            self._stop.wait(HEARTBEAT_S)

    def info(self) -> WorkerInfo:
        return WorkerInfo(worker_id=self.worker_id, shape_prefix=self.core.shape_prefix,
                          capacity=self.core.max_states_per_worker, pid=os.getpid(), threads=torch.get_num_threads(),
                          max_seq_len=self.core.runner.max_seq_len, max_owners=self.core.max_owners)

    def admit(self, req: Request, tokens: list[int] | None = None, target: OwnerProgress | None = None) -> None:
        self.core.admit(req, tokens, target)

    def extend(self, req: Request) -> None:
        self.core.extend(req)

    def fork(self, parent_id: str, child: Request) -> None:
        self.core.fork(parent_id, child)

    def keep(self, owner_id: str, version: int) -> None:
        self.core.keep(owner_id, version)

    def restore_kept(self, owner_id: str, version: int) -> tuple:
        return self.core.restore_kept(owner_id, version)

    def run_phase(self, plan: PhasePlan) -> PhaseResult:
        res = self.core.run_phase(plan)
        for owner_id, why in res.failed.items():
            st = self.core.runner.owners.get(owner_id)
            logger.warning("worker %s: owner %s (request %s) failed alone: %s", self.worker_id, owner_id,
                           st.request.request_id or "-" if st else "-", why)
        return res

    def export_owner(self, owner_id: str) -> bytes:
        return self.core.export_owner(owner_id)

    def spill_to_store(self, owner_id: str, version: int, epoch: int) -> str:
        """Move the owner's committed state to the shared store (payload, then directory entry)."""
        return self.directory.spill(owner_id, epoch, version, self.core.export_owner(owner_id))

    def adopt_from_store(self, payload_key: str) -> AdoptedState:
        """Take over a state a previous service spilled (read here, not through the scheduler)."""
        blob = self.directory.get_payload(payload_key)
        if blob is None:
            raise KeyError(f"spilled state {payload_key!r} is missing from the store")
        owner_id = self.core.import_owner(blob)
        header = state_io.read_header(blob)
        return AdoptedState(request=header["request"], tokens=list(header["generated"]),
                            progress=self.core.progress_of(owner_id))

    def import_owner(self, blob: bytes) -> str:
        return self.core.import_owner(blob)

    def handover(self, owner_id: str) -> Handover:
        """Everything of the owner, for another worker's `accept` (it leaves this one): its
        committed state, or, if it never got a slot here, what admitted it; plus kept versions."""
        kept = {v: blob for (o, v), blob in self.core.kept.items() if o == owner_id}
        self.core.drop_kept(owner_id)
        if owner_id in self.core.waiting:
            req, generated, target = self.core.waiting.pop(owner_id)
            return Handover(kept=kept, admission=Admission(request=req, tokens=generated, progress=target))
        return Handover(kept=kept, state=self.core.export_owner(owner_id))

    def accept(self, handover: Handover) -> bool:
        """Take over an owner from `handover`; True when it came as state (else re-admitted)."""
        if (adm := handover.admission) is not None:
            self.core.admit(adm.request, adm.tokens, adm.progress)
            owner_id = adm.request.owner_id
        else:
            owner_id = self.core.import_owner(handover.state)
        for version, blob in handover.kept.items():
            self.core.kept[(owner_id, version)] = blob
        return handover.state is not None

    def release(self, owner_id: str) -> None:
        self.core.release(owner_id)

    def owners(self) -> dict[str, HeldOwner]:
        """Each owner's progress, generated tokens and whether a dirty candidate is pending."""
        out = {}
        for o in list(self.core.runner.owners) + list(self.core.host) + list(self.core.waiting):
            gen = self.core.runner.owners[o].generated if o in self.core.runner.owners else None
            out[o] = HeldOwner(progress=self.core.progress_of(o), tokens=gen,
                               candidate=self.core.runner.pool.has_candidate(o),
                               kept=sorted(v for owner, v in self.core.kept if owner == o))
        return out

    def deltas(self, owner_id: str) -> list | None:
        d = self.core.deltas(owner_id)
        return None if d is None else [_host(t) for t in d]

    def logits(self, owner_id: str) -> list:
        """Recorded logits, or [] when incomplete: a spill keeps state, not the logits before it."""
        st = self.core.runner.owners.get(owner_id)
        if st is None or len(st.logits) != len(st.generated):
            return []
        return [_host(t) for t in st.logits]

    def stats(self) -> dict:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return dict(self.core.stats, resident=len(self.core.runner.owners), host=len(self.core.host),
                    peak_rss_bytes=peak)

    def reconcile(self, commits: list[str], rollbacks: list[str]) -> None:
        """A restarted scheduler publishes or discards candidates left by its predecessor."""
        for o in commits:
            self.core.runner.commit(o)
        for o in rollbacks:
            self.core.runner.rollback(o)

    def ping(self) -> str:
        return self.worker_id

    def stop(self) -> None:
        self._stop.set()


@dataclass(frozen=True, kw_only=True)
class WorkerLauncher:
    """Starts WorkerActors with one cluster's options: a GPU each when the config's device is
    CUDA (so Ray's autoscaler can add GPU nodes), else `cpus`; `resources` pins to nodes."""

    config: RwtttConfig
    redis_url: str
    namespace: str
    threads: int | None = None
    record_logits: bool = False
    cpus: float = 1.0
    resources: dict = field(default_factory=dict)      # custom resources of every worker

    def launch(self, name: str, resources: dict | None = None):
        """A new named worker (a handle; it may still be loading its model)."""
        gpu = self.config.model.device.startswith("cuda")
        return WorkerActor.options(name=name, num_cpus=0 if gpu else self.cpus, num_gpus=1 if gpu else 0,
                                   resources={**self.resources, **(resources or {})}).remote(
            worker_id=name, config=self.config, redis_url=self.redis_url, namespace=self.namespace,
            threads=self.threads, record_logits=self.record_logits)


def _host(t):
    """A tensor as a host fp32 array (CUDA and bf16 tensors have no .numpy())."""
    return t.detach().float().cpu().numpy()
