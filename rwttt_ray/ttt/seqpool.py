"""SequencePool: per-owner KV cache and TTT chunk buffer, in preallocated slots.

Slot s holds, per decoder layer, K and V [KV, L, hd] for positions 0..pos-1, and per TTT layer
the chunk buffer of the tokens since the last WRITE boundary (< C rows, or exactly C while a
WRITE is pending): the MLP-input rows x, their gated hidden rows h = act(x Wg^T) * (x Wu^T)
(kept so a WRITE need not recompute gate/up), and target rows s when the target is `input_embed`.
"""
from __future__ import annotations

import torch


class SequencePoolFullError(RuntimeError):
    """No free sequence slot."""


class SequencePool:
    def __init__(self, num_layers: int, kv_heads: int, head_dim: int, max_len: int, num_ttt: int,
                 chunk: int, d_model: int, d_ff: int, capacity: int, dtype: torch.dtype,
                 device: str | torch.device = "cpu", keep_targets: bool = False) -> None:
        shape = (capacity, kv_heads, max_len, head_dim)
        self.k = [torch.empty(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self.v = [torch.empty(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        buf = (capacity, chunk, d_model)
        self.xbuf = [torch.empty(buf, dtype=dtype, device=device) for _ in range(num_ttt)]
        self.hbuf = [torch.empty((capacity, chunk, d_ff), dtype=dtype, device=device) for _ in range(num_ttt)]
        self.sbuf = [torch.empty(buf, dtype=dtype, device=device) for _ in range(num_ttt)] if keep_targets else None
        self.capacity, self.max_len = capacity, max_len
        self._free = list(range(capacity - 1, -1, -1))
        self._fresh = set(range(capacity))        # slots whose memory was never written
        self.owner_slot: dict[str, int] = {}

    def _clean(self, slot: int) -> None:
        """Zero a slot at its first use. A group reads every row's KV up to the group's longest
        position: a shorter row's extra positions get softmax weight 0, but 0 * NaN is NaN, so
        garbage in fresh memory would poison its output (a rare, allocation-dependent wrong
        token). Later owners of the slot find the finite values of earlier ones."""
        if slot in self._fresh:
            self._fresh.discard(slot)
            for t in (*self.k, *self.v, *self.xbuf, *self.hbuf, *(self.sbuf or [])):
                t[slot].zero_()

    def num_free(self) -> int:
        return len(self._free)

    def allocate(self, owner_id: str) -> int:
        if owner_id in self.owner_slot:
            return self.owner_slot[owner_id]
        if not self._free:
            raise SequencePoolFullError(f"all {self.capacity} sequence slots are in use")
        self.owner_slot[owner_id] = slot = self._free.pop()
        self._clean(slot)
        return slot

    def release(self, owner_id: str) -> None:
        slot = self.owner_slot.pop(owner_id, None)
        if slot is not None:
            self._free.append(slot)
            self._free.sort(reverse=True)

    def copy_slot(self, src_owner: str, dst_owner: str, length: int, fill: int) -> None:
        """Copy KV positions [0, length) and `fill` buffer rows (used by fork)."""
        a, b = self.owner_slot[src_owner], self.allocate(dst_owner)
        for t in (*self.k, *self.v):
            t[b, :, :length] = t[a, :, :length]
        for t in (*self.xbuf, *self.hbuf, *(self.sbuf or [])):
            t[b, :fill] = t[a, :fill]

    def export(self, owner_id: str, length: int, fill: int) -> dict[str, list[torch.Tensor]]:
        s = self.owner_slot[owner_id]
        return {"k": [t[s, :, :length].clone() for t in self.k], "v": [t[s, :, :length].clone() for t in self.v],
                "x": [t[s, :fill].clone() for t in self.xbuf], "h": [t[s, :fill].clone() for t in self.hbuf],
                "s": [t[s, :fill].clone() for t in self.sbuf] if self.sbuf else []}

    def load(self, owner_id: str, data: dict[str, list[torch.Tensor]]) -> None:
        s = self.allocate(owner_id)
        for t, d in zip((*self.k, *self.v), (*data["k"], *data["v"])):
            t[s, :, : d.shape[1]] = d.to(t.device, t.dtype)
        for t, d in zip((*self.xbuf, *self.hbuf, *(self.sbuf or [])), (*data["x"], *data["h"], *data["s"])):
            t[s, : d.shape[0]] = d.to(t.device, t.dtype)
