"""HostTier: a worker's owners between device slots and the host tier (torch, no ray).

WorkerCore's half that moves state: spill an owner's committed state to the host tier (within
--swap-space; as tensors, pinned and copied on a side stream on CUDA: ttt/host_state.py), reload it, export it to or import it from another worker (migration), free
slots for a phase's planned residents, and say how many owners the worker can hold at all
(its slots plus what the host tier takes at the full context), which the scheduler's admission
reads. It works on the WorkerCore's runner, host tier, waiting owners and stats.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import torch

from rwttt_ray.ttt import state_io
from rwttt_ray.ttt.capacity import host_tier_owners
from rwttt_ray.ttt.host_state import HostState, blob_of, nbytes_of, snapshot_of, tensor_bytes, to_host

if TYPE_CHECKING:
    from rwttt_ray.ttt.runner import GroupRunner

__all__ = ["HostTier", "HostTierFullError"]


class HostTierFullError(RuntimeError):
    """The host tier is at its --swap-space limit: no owner can be spilled."""


class HostTier:
    """Mixed into WorkerCore, which sets these attributes."""

    worker_id: str
    max_states_per_worker: int
    runner: GroupRunner
    host: OrderedDict[str, bytes | HostState]   # spilled (HostState) or imported (bytes) owners
    _copy_stream: Any = None
    swap_space: float | None               # the host tier's limit in GiB (None: none)
    swap_bytes: int | None                 # ... in bytes
    waiting: dict[str, tuple]
    stats: dict[str, float]

    def _materialize(self, owner_id: str) -> None:
        raise NotImplementedError

    @property
    def host_owners(self) -> int | None:
        """Owners the host tier (--swap-space) takes at the full context (None: no limit)."""
        return host_tier_owners(self.runner.model, self.swap_space, self.runner.max_seq_len)

    @property
    def max_owners(self) -> int | None:
        """Owners this worker can hold: its device slots plus the host tier's (None: no limit)."""
        host = self.host_owners
        return None if host is None else self.max_states_per_worker + host

    @property
    def copy_stream(self) -> Any:
        """The CUDA stream spills copy on (None off CUDA), made at first use."""
        if self._copy_stream is None and self.runner.seqs.kv.table.device.type == "cuda":
            self._copy_stream = torch.cuda.Stream()
        return self._copy_stream

    def host_bytes(self) -> int:
        """Bytes the host tier holds."""
        return sum(nbytes_of(e) for e in self.host.values())

    def export_owner(self, owner_id: str) -> bytes:
        """The owner's committed state as bytes; it leaves this worker."""
        entry = self.host.pop(owner_id, None)
        if entry is None:
            entry = state_io.dumps(self.runner.snapshot(owner_id))
            self.runner.release(owner_id)
        return blob_of(entry)

    def import_owner(self, blob: bytes) -> str:
        """Take over an owner's state (migration); it lands in the host tier if no slot is free."""
        owner_id = state_io.read_header(blob)["owner_id"]
        if self.runner.seqs.num_free() > 0:
            self.runner.restore(state_io.loads(blob))
        else:
            self.host[owner_id] = blob
        return owner_id

    def spill(self, owner_id: str) -> None:
        """The owner's committed state to the host tier (on CUDA its copy overlaps what follows)."""
        t0 = time.perf_counter()
        snap = self.runner.snapshot(owner_id)
        size = tensor_bytes(snap)
        if self.swap_bytes is not None and self.host_bytes() + size > self.swap_bytes:
            raise HostTierFullError(f"worker {self.worker_id}: the host tier ({self.swap_bytes / 2**30:g} GiB, "
                                    f"--swap-space) cannot take {owner_id}'s {size / 2**20:.1f} MiB")
        self.host[owner_id] = to_host(snap, self.copy_stream)
        self.runner.release(owner_id)
        self.stats["spills"] += 1
        self.stats["spill_s"] += time.perf_counter() - t0

    def reload(self, owner_id: str) -> None:
        t0 = time.perf_counter()
        self.runner.restore(snapshot_of(self.host.pop(owner_id)))
        self.stats["reloads"] += 1
        self.stats["reload_s"] += time.perf_counter() - t0

    def _make_room(self, n: int, keep: tuple[str, ...]) -> list[str]:
        """Spill owners outside `keep` (never one with a dirty candidate) until n slots are free."""
        spilled = []
        for owner_id in list(self.runner.owners):
            if self.runner.seqs.num_free() >= n:
                break
            if owner_id not in keep and not self.runner.pool.has_candidate(owner_id):
                self.spill(owner_id)
                spilled.append(owner_id)
        if self.runner.seqs.num_free() < n:
            raise RuntimeError(f"worker {self.worker_id}: cannot free {n} device slots for the planned residents")
        return spilled

    def _ensure_residents(self, residents: tuple[str, ...]) -> list[str]:
        missing = [o for o in residents if o in self.host or o in self.waiting]
        spilled = self._make_room(len(missing), keep=residents) if missing else []
        for owner_id in missing:
            if owner_id in self.host:
                self.reload(owner_id)
            else:
                self._materialize(owner_id)
        return spilled
