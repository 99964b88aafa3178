"""FastWeightPool: a worker's preallocated fp32 fast-weight slots and the owner -> slot map.

An owner has no slot until its first WRITE (its delta is zero, the model equals W0). A WRITE
reserves a fresh slot and writes the candidate there (base slot only read); `commit` publishes
it and releases the old slot; `rollback` frees it. Slots are refcounted, so `fork` is
copy-on-write: the child shares the parent's slot until either one commits a WRITE.
"""
from __future__ import annotations

import torch

from rwttt_ray.ttt.kernels import write_candidate_


class PoolFullError(RuntimeError):
    """No free fast-weight slot: spill an owner or admit fewer."""


class FastWeightPool:
    """Per TTT layer a tensor [capacity, F, D] of dW^T slots, fp32."""

    def __init__(self, num_layers: int, d_ff: int, d_model: int, capacity: int,
                 device: str | torch.device = "cpu") -> None:
        self.capacity = capacity
        self.layers = [torch.empty(capacity, d_ff, d_model, dtype=torch.float32, device=device)
                       for _ in range(num_layers)]
        self._refs = [0] * capacity
        self._free = list(range(capacity - 1, -1, -1))  # pop() yields the lowest slot
        self.owner_slot: dict[str, int] = {}
        self._candidates: dict[str, int] = {}

    # -- slots ---------------------------------------------------------------------------
    def num_free(self) -> int:
        return len(self._free)

    def _take(self) -> int:
        if not self._free:
            raise PoolFullError(f"all {self.capacity} fast-weight slots are in use")
        slot = self._free.pop()
        self._refs[slot] = 1
        return slot

    def _release(self, slot: int) -> None:
        self._refs[slot] -= 1
        if self._refs[slot] == 0:
            self._free.append(slot)
            self._free.sort(reverse=True)

    def slot_of(self, owner_id: str) -> int | None:
        return self.owner_slot.get(owner_id)

    # -- WRITE: candidate, commit, rollback ------------------------------------------------
    def begin_candidate(self, owner_id: str) -> int:
        """Reserve the slot the owner's dirty candidate is written into."""
        if owner_id in self._candidates:
            raise RuntimeError(f"owner {owner_id} already has a dirty candidate")
        self._candidates[owner_id] = self._take()
        return self._candidates[owner_id]

    def write_candidate(self, owner_id: str, layer: int, h: torch.Tensor, v: torch.Tensor, lr: float) -> None:
        """candidate = committed delta + lr * h^T v for one layer (h [C, F], v [C, D])."""
        write_candidate_(self.layers[layer], self._candidates[owner_id], self.slot_of(owner_id), h, v, lr)

    def commit(self, owner_id: str) -> None:
        cand = self._candidates.pop(owner_id)
        old = self.owner_slot.get(owner_id)
        self.owner_slot[owner_id] = cand
        if old is not None:
            self._release(old)

    def rollback(self, owner_id: str) -> None:
        cand = self._candidates.pop(owner_id, None)
        if cand is not None:
            self._release(cand)

    def has_candidate(self, owner_id: str) -> bool:
        return owner_id in self._candidates

    # -- lifecycle ----------------------------------------------------------------------
    def fork(self, parent_id: str, child_id: str) -> None:
        """Copy-on-write: the child shares the parent's committed slot."""
        slot = self.owner_slot.get(parent_id)
        if slot is not None:
            self._refs[slot] += 1
            self.owner_slot[child_id] = slot

    def drop(self, owner_id: str) -> None:
        self.rollback(owner_id)
        slot = self.owner_slot.pop(owner_id, None)
        if slot is not None:
            self._release(slot)

    def export(self, owner_id: str) -> list[torch.Tensor] | None:
        """The owner's committed delta per layer (copies), or None when it is still zero."""
        slot = self.owner_slot.get(owner_id)
        return None if slot is None else [layer[slot].clone() for layer in self.layers]

    def load(self, owner_id: str, deltas: list[torch.Tensor] | None) -> None:
        """Install a committed delta (from export) as the owner's state."""
        self.drop(owner_id)
        if deltas is None:
            return
        slot = self._take()
        for layer, d in zip(self.layers, deltas):
            layer[slot].copy_(d)
        self.owner_slot[owner_id] = slot
