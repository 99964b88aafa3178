"""HostState: one spilled owner in the host tier, as tensors in host memory (torch, no ray).

A spill keeps the owner's snapshot as tensors, not bytes: no serialisation or checksum on the
way out or back (bytes are made only when the state leaves the worker: export, keep). On CUDA
the device-to-host copy goes into pinned memory on a side stream, so it overlaps the compute
that follows, and `ready` marks its end; the snapshot's device tensors are copies already, so
the rows they came from may be reused at once. A reload waits for `ready` and copies back.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from rwttt_ray.ttt import state_io
from rwttt_ray.ttt.state_io import OwnerSnapshot

__all__ = ["HostState", "to_host", "snapshot_of", "blob_of", "nbytes_of", "tensor_bytes"]


@dataclass
class HostState:
    snap: OwnerSnapshot                # tensors in host memory (pinned on CUDA)
    nbytes: int
    ready: Any = None                  # torch.cuda.Event recorded after the copies (CUDA only)

    def wait(self) -> OwnerSnapshot:
        if self.ready is not None:
            self.ready.synchronize()
            self.ready = None
        return self.snap


def to_host(snap: OwnerSnapshot, stream: Any = None) -> HostState:
    """The snapshot in host memory: on CUDA (`stream`: the copy stream) pinned copies made on
    that stream without blocking the host; on CPU its tensors as they are (copies already)."""
    nbytes = tensor_bytes(snap)
    if stream is None:
        return HostState(snap, nbytes)
    stream.wait_stream(torch.cuda.current_stream())
    host = {}
    with torch.cuda.stream(stream):
        for name, t in snap.tensors.items():
            h = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
            h.copy_(t, non_blocking=True)
            t.record_stream(stream)          # the allocator keeps t until the copy is done
            host[name] = h
        ready = torch.cuda.Event()
        ready.record(stream)
    return HostState(replace(snap, tensors=host), nbytes, ready)


def tensor_bytes(snap: OwnerSnapshot) -> int:
    """Bytes of the snapshot's tensors (what it costs the host tier)."""
    return sum(t.numel() * t.element_size() for t in snap.tensors.values())


def snapshot_of(entry: bytes | HostState) -> OwnerSnapshot:
    return entry.wait() if isinstance(entry, HostState) else state_io.loads(entry)


def blob_of(entry: bytes | HostState) -> bytes:
    return state_io.dumps(entry.wait()) if isinstance(entry, HostState) else entry


def nbytes_of(entry: bytes | HostState) -> int:
    return entry.nbytes if isinstance(entry, HostState) else len(entry)
