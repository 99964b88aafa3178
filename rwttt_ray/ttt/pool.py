"""FastWeightPool: a worker's preallocated fp32 fast-weight slots, indexed by device row.

Per TTT layer one tensor `[rows + reserve, F, D]` of dW^T slots. Slot r (r < rows) holds the
committed delta of the owner on device row r (zero until its first WRITE), so a static round
over rows [0, bucket) READs with one `bmm` over `layer[:bucket]`. The `reserve` slots after
the rows hold WRITE candidates: a WRITE writes its candidate into a free reserve slot (the
committed row only read), `commit` copies it onto the row, `rollback` frees it. The reserve is
the largest WRITE group, not the slot count; a WRITE that finds no free reserve slot waits.
"""
from __future__ import annotations

import torch

from rwttt_ray.ttt.kernels import write_candidate_


class PoolFullError(RuntimeError):
    """No free candidate slot: the WRITE waits for the ledger to publish earlier ones."""


class FastWeightPool:
    def __init__(self, num_layers: int, d_ff: int, d_model: int, rows: int, reserve: int,
                 device: str | torch.device = "cpu") -> None:
        self.rows, self.reserve = rows, reserve
        self.layers = [torch.zeros(rows + reserve, d_ff, d_model, dtype=torch.float32, device=device)
                       for _ in range(num_layers)]
        self._free = list(range(rows + reserve - 1, rows - 1, -1))   # pop() yields the lowest slot
        self.owner_slot: dict[str, int] = {}          # owner -> device row
        self._held: set[int] = set()                  # rows holding a committed (nonzero) delta
        self._candidates: dict[str, int] = {}

    # -- rows -----------------------------------------------------------------------------
    def num_free(self) -> int:
        """Free candidate slots."""
        return len(self._free)

    def attach(self, owner_id: str, row: int) -> None:
        """The owner on device row `row`, with a zero delta."""
        self.owner_slot[owner_id] = row
        self._zero(row)

    def _zero(self, row: int) -> None:
        if row in self._held:
            self._held.discard(row)
            for layer in self.layers:
                layer[row].zero_()

    def slot_of(self, owner_id: str) -> int | None:
        """The owner's committed slot, or None while its delta is zero."""
        row = self.owner_slot.get(owner_id)
        return row if row in self._held else None

    def move(self, src: int, dst: int) -> None:
        """Compaction: row `src`'s delta moves to row `dst` (whose owner left)."""
        self._zero(dst)
        if src in self._held:
            for layer in self.layers:
                layer[dst].copy_(layer[src])
            self._held.add(dst)
            self._zero(src)
        for o, r in self.owner_slot.items():
            if r == src:
                self.owner_slot[o] = dst

    # -- WRITE: candidate, commit, rollback ------------------------------------------------
    def begin_candidate(self, owner_id: str) -> int:
        """Reserve the slot the owner's dirty candidate is written into."""
        if owner_id in self._candidates:
            raise RuntimeError(f"owner {owner_id} already has a dirty candidate")
        if not self._free:
            raise PoolFullError(f"all {self.reserve} WRITE candidate slots are in use")
        self._candidates[owner_id] = self._free.pop()
        return self._candidates[owner_id]

    def write_candidate(self, owner_id: str, layer: int, h: torch.Tensor, v: torch.Tensor, lr: float) -> None:
        """candidate = committed delta + lr * h^T v for one layer (h [C, F], v [C, D])."""
        write_candidate_(self.layers[layer], self._candidates[owner_id], self.slot_of(owner_id), h, v, lr)

    def commit(self, owner_id: str) -> None:
        cand, row = self._candidates.pop(owner_id), self.owner_slot[owner_id]
        for layer in self.layers:
            layer[row].copy_(layer[cand])
        self._held.add(row)
        self._free.append(cand)

    def rollback(self, owner_id: str) -> None:
        cand = self._candidates.pop(owner_id, None)
        if cand is not None:
            self._free.append(cand)

    def has_candidate(self, owner_id: str) -> bool:
        return owner_id in self._candidates

    def pin(self, key: str) -> int:
        """A reserve slot held for good under `key`, zeroed (the naive baseline's shared weight)."""
        slot = self._free.pop(0)
        for layer in self.layers:
            layer[slot].zero_()
        self.owner_slot[key] = slot
        self._held.add(slot)
        return slot

    # -- lifecycle ----------------------------------------------------------------------
    def fork(self, parent_id: str, child_id: str) -> None:
        """The child (already attached) starts from the parent's committed delta (a copy)."""
        src, dst = self.slot_of(parent_id), self.owner_slot[child_id]
        if src is not None:
            for layer in self.layers:
                layer[dst].copy_(layer[src])
            self._held.add(dst)

    def drop(self, owner_id: str) -> None:
        self.rollback(owner_id)
        row = self.owner_slot.pop(owner_id, None)
        if row is not None:
            self._zero(row)

    def export(self, owner_id: str) -> list[torch.Tensor] | None:
        """The owner's committed delta per layer (copies), or None when it is still zero."""
        slot = self.slot_of(owner_id)
        return None if slot is None else [layer[slot].clone() for layer in self.layers]

    def load(self, owner_id: str, deltas: list[torch.Tensor] | None) -> None:
        """Install a committed delta (from export) as the attached owner's state."""
        row = self.owner_slot[owner_id]
        self._zero(row)
        if deltas is None:
            return
        for layer, d in zip(self.layers, deltas):
            layer[row].copy_(d)
        self._held.add(row)
