"""WorkerClient: the scheduler side's one way to call a worker actor (one method per side effect).

Every `.remote()` call of the scheduler side on a worker goes through a WorkerClient method, with
typed arguments and results (like Ray Serve's ActorReplicaWrapper around a replica's handle). Each
method returns what its callers await: the call's ObjectRef, sent at once, so the order in which
calls are sent (e.g. an admit before the phase that plans it) is the order Ray runs them. A ref can
be passed on to another worker (a handover goes worker to worker through the object store).

The typed messages that cross between a worker and the scheduler (WorkerInfo, Handover,
HeldOwner, AdoptedState) live here too, and `phase_failure` judges a failed phase by the type of
the worker's exception (never by its text).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import ray
from ray.exceptions import RayTaskError

from rwttt_ray.core.phase import PhasePlan, PhaseResult
from rwttt_ray.core.progress import OwnerProgress
from rwttt_ray.core.request import Request
from rwttt_ray.ttt.worker_core import StaleEpochRefused

if TYPE_CHECKING:
    from ray import ObjectRef
    from ray.actor import ActorHandle


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """What a worker tells the scheduler once, when it attaches."""
    worker_id: str
    shape_prefix: str
    capacity: int            # device slots (its pool)
    pid: int
    threads: int
    max_seq_len: int         # context limit
    max_owners: int | None = None   # owners it holds: slots + what its host tier takes (None: no limit)


@dataclass(frozen=True, slots=True)
class Admission:
    """What admitted an owner that never got a slot: replayed as an admit elsewhere."""
    request: Request
    tokens: list[int] | None = None
    progress: OwnerProgress | None = None


@dataclass(frozen=True, slots=True)
class Handover:
    """Everything of one owner leaving a worker, for another's `accept`: its committed state
    (`state`), or, if it never got a slot, what admitted it; plus its kept versions."""
    kept: dict[int, bytes] = field(default_factory=dict)
    state: bytes | None = None
    admission: Admission | None = None

    def __post_init__(self) -> None:
        if (self.state is None) == (self.admission is None):
            raise ValueError("a handover carries a state or an admission, exactly one")


@dataclass(frozen=True, slots=True)
class HeldOwner:
    """An owner a worker holds, as a restarted scheduler reads it back."""
    progress: OwnerProgress
    tokens: list[int] | None          # generated tokens; None when not resident
    candidate: bool                   # a dirty WRITE candidate waits for the ledger's verdict
    kept: list[int] = field(default_factory=list)    # kept versions (rollback points)


@dataclass(frozen=True, slots=True)
class AdoptedState:
    """An owner a worker imported from the shared store (spilled by a previous service)."""
    request: dict[str, Any]           # Request.to_dict()
    tokens: list[int]
    progress: OwnerProgress


@dataclass(frozen=True, slots=True)
class PhaseFailure:
    """A failed phase, judged: `stale` when a newer scheduler's epoch refused it."""
    stale: bool
    message: str


def remote_cause(exc: BaseException) -> BaseException:
    """The worker's own exception inside a RayTaskError (else `exc` itself)."""
    cause = exc.cause if isinstance(exc, RayTaskError) else None
    return cause if isinstance(cause, BaseException) else exc


def phase_failure(exc: BaseException) -> PhaseFailure:
    """Judge a phase the worker failed, by the type of its exception."""
    cause = remote_cause(exc)
    return PhaseFailure(stale=isinstance(cause, StaleEpochRefused), message=f"{type(cause).__name__}: {cause}")


class WorkerClient:
    """One worker actor, as the scheduler side calls it. `handle` is the Ray actor handle."""

    def __init__(self, *, name: str, handle: ActorHandle) -> None:
        self.name, self.handle = name, handle

    def __repr__(self) -> str:
        return f"WorkerClient({self.name!r})"

    # -- attach and liveness -----------------------------------------------------------------
    def info(self) -> ObjectRef[WorkerInfo]:
        """Its shape, capacity and context limit (asked once, when it attaches)."""
        return self.handle.info.remote()

    def ping(self) -> ObjectRef[str]:
        """Its name, once it answers (a phase in flight delays the answer)."""
        return self.handle.ping.remote()

    def stats(self) -> ObjectRef[dict[str, int]]:
        """Its counters (spills, reloads, resident, host, peak_rss_bytes, ...) for /metrics."""
        return self.handle.stats.remote()

    def kill(self) -> None:
        """Stop the actor now (a drained worker)."""
        ray.kill(self.handle, no_restart=True)

    # -- owners ------------------------------------------------------------------------------
    def admit(self, req: Request, tokens: list[int] | None = None,
              progress: OwnerProgress | None = None) -> ObjectRef[None]:
        """A new owner (or one replayed from its token log, up to `progress`)."""
        return self.handle.admit.remote(req, tokens, progress)

    def extend(self, req: Request) -> ObjectRef[None]:
        """A session's next turn: its stream grows by the turn's prompt."""
        return self.handle.extend.remote(req)

    def fork(self, parent_id: str, child: Request) -> ObjectRef[None]:
        """Copy-on-write: the child starts from the parent's committed state."""
        return self.handle.fork.remote(parent_id, child)

    def keep(self, owner_id: str, version: int) -> ObjectRef[None]:
        """Keep the owner's state at `version` as a rollback point."""
        return self.handle.keep.remote(owner_id, version)

    def restore_kept(self, owner_id: str, version: int) -> ObjectRef[tuple[Request, list[int], OwnerProgress]]:
        """Go back to the state kept at `version`: (its request, generated tokens, progress)."""
        return self.handle.restore_kept.remote(owner_id, version)

    def release(self, owner_id: str) -> ObjectRef[None]:
        """Drop the owner and its kept states."""
        return self.handle.release.remote(owner_id)

    def owners(self) -> ObjectRef[dict[str, HeldOwner]]:
        """Every owner it holds (a restarted scheduler rebuilds from these)."""
        return self.handle.owners.remote()

    def deltas(self, owner_id: str) -> ObjectRef[list | None]:
        """The owner's fast-weight deltas as host arrays (None before its first WRITE)."""
        return self.handle.deltas.remote(owner_id)

    # -- phases and verdicts -------------------------------------------------------------------
    def run_phase(self, plan: PhasePlan) -> ObjectRef[PhaseResult]:
        """One phase (many rounds) in one call; refused with StaleEpochRefused for an old epoch."""
        return self.handle.run_phase.remote(plan)

    def reconcile(self, commits: list[str], rollbacks: list[str]) -> ObjectRef[None]:
        """The ledger's verdict on pending WRITE candidates: publish `commits`, discard `rollbacks`."""
        return self.handle.reconcile.remote(commits, rollbacks)

    # -- moving state ------------------------------------------------------------------------
    def handover(self, owner_id: str) -> ObjectRef[Handover]:
        """The owner leaves this worker; pass the ref on to the other worker's `accept`."""
        return self.handle.handover.remote(owner_id)

    def accept(self, handover: ObjectRef[Handover] | Handover) -> ObjectRef[bool]:
        """Take over an owner from another worker's `handover` (True when it came as state)."""
        return self.handle.accept.remote(handover)

    def spill_to_store(self, owner_id: str, version: int, epoch: int) -> ObjectRef[str]:
        """Write the committed state to the shared store, then point the directory at it; its key."""
        return self.handle.spill_to_store.remote(owner_id, version, epoch)

    def adopt_from_store(self, payload_key: str) -> ObjectRef[AdoptedState]:
        """Import a state a previous service spilled (read by the worker, not the scheduler)."""
        return self.handle.adopt_from_store.remote(payload_key)
