"""SequencePool: per-owner KV cache (paged) and TTT chunk buffer, on compact device rows.

Each resident owner holds one device row; rows stay compact (0..n-1: a release moves the last
row into the hole), so a static-shape round over rows [0, bucket) covers every resident and the
fast-weight READ is one `bmm` over a slot view. Row `capacity` is the scratch row where padding
rows write. The KV cache is a `PagedKV` (blocks + a block table per row). Per TTT layer the row
holds the chunk buffer of the tokens since the last WRITE boundary (< C rows, or exactly C while
a WRITE is pending): the MLP-input rows x, their gated hidden rows h = act(x Wg^T) * (x Wu^T)
(kept so a WRITE need not recompute gate/up), and target rows s when the target is `input_embed`.
"""
from __future__ import annotations

import torch

from rwttt_ray.ttt.paged_kv import KVFullError, PagedKV

__all__ = ["SequencePool", "SequencePoolFullError", "KVFullError"]


class SequencePoolFullError(RuntimeError):
    """No free sequence slot."""


class SequencePool:
    def __init__(self, num_layers: int, kv_heads: int, head_dim: int, max_len: int, num_ttt: int,
                 chunk: int, d_model: int, d_ff: int, capacity: int, dtype: torch.dtype,
                 device: str | torch.device = "cpu", keep_targets: bool = False, *, block_size: int = 16,
                 num_blocks: int | None = None) -> None:
        blocks = num_blocks if num_blocks is not None else capacity * -(-max_len // block_size)
        self.kv = PagedKV(num_layers=num_layers, kv_heads=kv_heads, head_dim=head_dim, block_size=block_size,
                          num_blocks=blocks, rows=capacity, max_len=max_len, dtype=dtype, device=device)
        buf = (capacity + 1, chunk, d_model)
        self.xbuf = [torch.empty(buf, dtype=dtype, device=device) for _ in range(num_ttt)]
        self.hbuf = [torch.empty((capacity + 1, chunk, d_ff), dtype=dtype, device=device) for _ in range(num_ttt)]
        self.sbuf = [torch.empty(buf, dtype=dtype, device=device) for _ in range(num_ttt)] if keep_targets else None
        self.capacity, self.max_len, self.scratch = capacity, max_len, capacity
        self._fresh = set(range(capacity + 1))    # rows whose buffer memory was never written
        self._clean(self.scratch)
        self.owner_slot: dict[str, int] = {}      # owner -> device row
        self.row_owner: list[str] = []            # device row -> owner (rows 0..n-1)

    @property
    def buffers(self) -> tuple[torch.Tensor, ...]:
        return (*self.xbuf, *self.hbuf, *(self.sbuf or []))

    def _clean(self, row: int) -> None:
        """Zero a row's buffers at its first use: garbage in fresh memory must never be read."""
        if row in self._fresh:
            self._fresh.discard(row)
            for t in self.buffers:
                t[row].zero_()

    def num_free(self) -> int:
        return self.capacity - len(self.row_owner)

    def allocate(self, owner_id: str) -> int:
        if owner_id in self.owner_slot:
            return self.owner_slot[owner_id]
        if not self.num_free():
            raise SequencePoolFullError(f"all {self.capacity} sequence slots are in use")
        row = len(self.row_owner)
        self.owner_slot[owner_id] = row
        self.row_owner.append(owner_id)
        self._clean(row)
        return row

    def release(self, owner_id: str) -> tuple[int, int] | None:
        """Free the owner's row; the last row moves into the hole: returns (from, to) if one moved."""
        row = self.owner_slot.pop(owner_id, None)
        if row is None:
            return None
        self.kv.release(row)
        last = len(self.row_owner) - 1
        moved = self.row_owner.pop()
        if row == last:
            return None
        self.row_owner[row] = moved
        self.owner_slot[moved] = row
        self.kv.move(last, row)
        for t in self.buffers:
            t[row].copy_(t[last])
        return last, row

    def ensure(self, owner_id: str, length: int, written: int) -> None:
        """KV blocks for the owner's positions [0, length); `written`: the positions it holds."""
        self.kv.ensure(self.owner_slot[owner_id], length, written)

    def copy_slot(self, src_owner: str, dst_owner: str, length: int, fill: int) -> None:
        """Fork: the child shares the parent's KV blocks (copy-on-write) and copies `fill` buffer rows."""
        a, b = self.owner_slot[src_owner], self.allocate(dst_owner)
        self.kv.fork(a, b)
        for t in self.buffers:
            t[b, :fill] = t[a, :fill]

    def export(self, owner_id: str, length: int, fill: int) -> dict[str, list[torch.Tensor]]:
        s = self.owner_slot[owner_id]
        k, v = self.kv.export(s, length)
        return {"k": k, "v": v, "x": [t[s, :fill].clone() for t in self.xbuf],
                "h": [t[s, :fill].clone() for t in self.hbuf],
                "s": [t[s, :fill].clone() for t in self.sbuf] if self.sbuf else []}

    def load(self, owner_id: str, data: dict[str, list[torch.Tensor]]) -> None:
        s = self.allocate(owner_id)
        self.kv.release(s)
        self.kv.load(s, data["k"], data["v"])
        for t, d in zip(self.buffers, (*data["x"], *data["h"], *data["s"])):
            t[s, : d.shape[0]] = d.to(t.device, t.dtype)
