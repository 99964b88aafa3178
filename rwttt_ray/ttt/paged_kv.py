"""PagedKV: the KV cache in fixed-size blocks, with a block table per device row (torch, no ray).

Per decoder layer K and V are `[num_blocks + 1, block_size, KV, hd]`; the last block is the
scratch block, where padding rows of a static-shape round write and where every unused table
entry points, so a row's KV costs its length, not the longest context. The block table
`[rows + 1, max_blocks]` lives on the device (row `rows` is the scratch row: all scratch).
Blocks are refcounted: a fork shares the parent's full blocks copy-on-write (a block is copied
only when a holder writes into a shared one) and copies nothing else.

Home blocks: when the pool holds `rows * max_blocks` blocks or more (as the capacity planner
sizes it), row r's i-th block is preferably block `r * max_blocks + i`. A row whose every block
is at home (`at_home`) is a contiguous run of the cache, so a batch of such rows reads its K and
V as one strided view (`read(..., contiguous=True)`), with no gather. Compaction copies the moved
row's blocks to its new home; a fork's shared blocks are not at home, so a batch holding a fork
reads through the block table.
"""
from __future__ import annotations

import torch


class KVFullError(RuntimeError):
    """No free KV block: the worker's token budget is spent."""


class PagedKV:
    def __init__(self, *, num_layers: int, kv_heads: int, head_dim: int, block_size: int, num_blocks: int,
                 rows: int, max_len: int, dtype: torch.dtype, device: str | torch.device = "cpu") -> None:
        self.block_size, self.num_blocks, self.rows = block_size, num_blocks, rows
        self.max_blocks = -(-max_len // block_size)
        self.scratch = num_blocks
        shape = (num_blocks + 1, block_size, kv_heads, head_dim)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self.table = torch.full((rows + 1, self.max_blocks), num_blocks, dtype=torch.long, device=device)
        self.blocks: list[list[int]] = [[] for _ in range(rows + 1)]     # host mirror of the table
        self._refs = [0] * num_blocks
        self.home = num_blocks >= rows * self.max_blocks        # every row has a run of blocks of its own
        self._homes = rows * self.max_blocks if self.home else 0
        self._free = set(range(self._homes))                    # free home blocks
        self._spare = list(range(num_blocks - 1, self._homes - 1, -1))   # free blocks that are nobody's home
        self._fresh = set(range(num_blocks))      # never written: zeroed at first use (0 * NaN is NaN)
        self._dirty: set[int] = set()             # rows whose host mirror is ahead of the device table

    # -- blocks --------------------------------------------------------------------------
    def num_free(self) -> int:
        return len(self._free) + len(self._spare)

    def _take(self, row: int, index: int) -> int:
        """A free block for `row`'s `index`-th: its home if free, else a spare, else any."""
        home = row * self.max_blocks + index
        if self.home and row < self.rows and home in self._free:
            self._free.discard(home)
            b = home
        elif self._spare:
            b = self._spare.pop()
        elif self._free:
            b = self._free.pop()
        else:
            raise KVFullError(f"all {self.num_blocks} KV blocks of {self.block_size} tokens are in use")
        self._refs[b] = 1
        if b in self._fresh:
            self._zero_fresh(b)
        return b

    def _zero_fresh(self, b: int) -> None:
        """Zero block b before its first use; for a home block, every fresh block of its row's
        run (a contiguous read spans the run, masked positions included: 0 * NaN is NaN)."""
        start, n = (b - b % self.max_blocks, self.max_blocks) if b < self._homes else (b, 1)
        fresh = [x for x in range(start, start + n) if x in self._fresh]
        self._fresh.difference_update(fresh)
        idx = torch.tensor(fresh, device=self.table.device)
        for t in (*self.k, *self.v):
            t.index_fill_(0, idx, 0)

    def _unref(self, b: int) -> None:
        self._refs[b] -= 1
        if self._refs[b] == 0:
            (self._free.add if b < self._homes else self._spare.append)(b)

    def _shared(self, row: int, length: int, written: int) -> list[int]:
        """Indexes of `row`'s shared blocks that positions [written, length) would write into."""
        held, bs = self.blocks[row], self.block_size
        return [i for i in range(written // bs, min(len(held), -(-length // bs))) if self._refs[held[i]] > 1]

    def ensure(self, row: int, length: int, written: int) -> None:
        """Give `row` blocks for positions [0, length); `written`: positions it holds already
        (a shared block at or after it is copied first, so this row's writes stay its own)."""
        if length > self.max_blocks * self.block_size:
            raise KVFullError(f"{length} tokens exceed the KV table's {self.max_blocks * self.block_size}")
        held = self.blocks[row]
        self._relocate(row, [(i, self._take(row, i)) for i in self._shared(row, length, written)])
        while len(held) * self.block_size < length:
            held.append(self._take(row, len(held)))
            self._dirty.add(row)

    def _relocate(self, row: int, moves: list[tuple[int, int]]) -> None:
        """For each (i, own): `row`'s i-th block becomes `own` (taken already), a copy of the old
        one; one copy per layer tensor."""
        if not moves:
            return
        held, device = self.blocks[row], self.table.device
        old = torch.tensor([held[i] for i, _ in moves], device=device)
        new = torch.tensor([own for _, own in moves], device=device)
        for t in (*self.k, *self.v):
            t.index_copy_(0, new, t.index_select(0, old))
        for i, own in moves:
            self._unref(held[i])
            held[i] = own
        self._dirty.add(row)

    def at_home(self, row: int) -> bool:
        """Whether each of the row's blocks is its home block (the row reads as a contiguous run)."""
        base = row * self.max_blocks
        return self.home and all(b == base + i for i, b in enumerate(self.blocks[row]))

    def fork(self, src: int, dst: int) -> None:
        """`dst` shares every block of `src` (copy-on-write at the next `ensure`)."""
        self.release(dst)
        for b in self.blocks[src]:
            self._refs[b] += 1
        self.blocks[dst] = list(self.blocks[src])
        self._dirty.add(dst)

    def release(self, row: int) -> None:
        for b in self.blocks[row]:
            self._unref(b)
        self.blocks[row] = []
        self._dirty.add(row)

    def move(self, src: int, dst: int) -> None:
        """Row `src`'s blocks become row `dst`'s (compaction); `dst` must be empty. Blocks that
        only this row holds are copied to `dst`'s home blocks where those are free."""
        self.blocks[dst], self.blocks[src] = self.blocks[src], []
        self._dirty.update((src, dst))
        if self.home:
            base = dst * self.max_blocks
            self._relocate(dst, [(i, self._take(dst, i)) for i, b in enumerate(self.blocks[dst])
                                 if b != base + i and self._refs[b] == 1 and base + i in self._free])

    def sync_table(self) -> torch.Tensor:
        """The device block table, its changed rows brought up to date with the host mirror (one copy)."""
        if self._dirty:
            rows = sorted(self._dirty)
            host = torch.full((len(rows), self.max_blocks), self.scratch, dtype=torch.long)
            for i, r in enumerate(rows):
                host[i, :len(self.blocks[r])] = torch.tensor(self.blocks[r], dtype=torch.long)
            self.table[torch.tensor(rows, device=self.table.device)] = host.to(self.table.device)
            self._dirty.clear()
        return self.table

    # -- positions ------------------------------------------------------------------------
    def slots(self, row: int, start: int, n: int) -> list[int]:
        """Flat cache slots (block * block_size + offset) of positions [start, start + n)."""
        bs, held = self.block_size, self.blocks[row]
        return [held[p // bs] * bs + p % bs for p in range(start, start + n)]

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor, slots: torch.Tensor) -> None:
        """k, v: [N, KV, hd] written at flat `slots` [N]."""
        self.k[layer].view(-1, *k.shape[1:]).index_copy_(0, slots, k)
        self.v[layer].view(-1, *v.shape[1:]).index_copy_(0, slots, v)

    def read(self, layer: int, table_rows: torch.Tensor, num_blocks: int,
             contiguous: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """K, V of `table_rows` [B] over their first `num_blocks` blocks: [B, KV, L, hd] each.
        `contiguous`: rows [0, B) all at home (see `at_home`), read as a strided view, no gather."""
        b, kv, hd = table_rows.shape[0], self.k[layer].shape[2], self.k[layer].shape[3]
        if contiguous:
            length, span = num_blocks * self.block_size, self.max_blocks * self.block_size

            def run(t: torch.Tensor) -> torch.Tensor:
                return t[:self._homes].view(self.rows, span, kv, hd)[:b, :length].transpose(1, 2)
            return run(self.k[layer]), run(self.v[layer])
        idx = self.table.index_select(0, table_rows)[:, :num_blocks].reshape(-1)
        keys = self.k[layer].index_select(0, idx).view(b, -1, kv, hd).transpose(1, 2)
        values = self.v[layer].index_select(0, idx).view(b, -1, kv, hd).transpose(1, 2)
        return keys, values

    def export(self, row: int, length: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Positions [0, length) of `row` as contiguous [KV, length, hd] per layer (copies)."""
        n = -(-length // self.block_size)
        idx = torch.tensor(self.blocks[row][:n], dtype=torch.long, device=self.table.device)

        def take(t: torch.Tensor) -> torch.Tensor:
            return t[idx].flatten(0, 1)[:length].transpose(0, 1).contiguous()
        return [take(t) for t in self.k], [take(t) for t in self.v]

    def load(self, row: int, ks: list[torch.Tensor], vs: list[torch.Tensor]) -> None:
        """Install [KV, L, hd] per layer at positions [0, L) of an empty row."""
        length = ks[0].shape[1] if ks else 0
        self.ensure(row, length, 0)
        if length:
            slots = torch.tensor(self.slots(row, 0, length), device=self.table.device)
            for i, (k, v) in enumerate(zip(ks, vs)):
                self.write(i, k.transpose(0, 1).to(self.k[i]), v.transpose(0, 1).to(self.v[i]), slots)
