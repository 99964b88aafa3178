"""PagedKV's home blocks: a row takes its own run of blocks when the pool has one per row,
compaction copies a moved row home, a fork's shared blocks are not at home, and the contiguous
read of rows at home equals the gather through the block table."""
import torch

from rwttt_ray.ttt.paged_kv import PagedKV


def _kv(num_blocks: int, rows: int = 3) -> PagedKV:
    return PagedKV(num_layers=2, kv_heads=2, head_dim=4, block_size=4, num_blocks=num_blocks, rows=rows, max_len=16,
                   dtype=torch.float32)


def _fill(kv: PagedKV, row: int, length: int, seed: int) -> None:
    kv.ensure(row, length, 0)
    slots = torch.tensor(kv.slots(row, 0, length))
    g = torch.Generator().manual_seed(seed)
    for layer in range(2):
        kv.write(layer, torch.randn(length, 2, 4, generator=g), torch.randn(length, 2, 4, generator=g), slots)


def _rows(kv: PagedKV, rows: int, length: int) -> list[torch.Tensor]:
    kv.sync_table()
    blocks = -(-length // kv.block_size)
    return [t[..., :length, :] for t in kv.read(0, torch.arange(rows), blocks)]


def test_rows_take_their_home_blocks_and_read_as_a_view():
    kv = _kv(num_blocks=3 * 4 + 2)
    assert kv.home
    for row, length in enumerate((5, 16, 9)):
        _fill(kv, row, length, seed=row)
        assert kv.at_home(row) and kv.blocks[row][0] == row * kv.max_blocks
    kv.sync_table()
    gathered, viewed = kv.read(1, torch.arange(3), 4), kv.read(1, torch.arange(3), 4, contiguous=True)
    for a, b in zip(gathered, viewed):
        assert torch.equal(a, b)


def test_compaction_copies_the_moved_row_home_and_a_fork_is_not_at_home():
    kv = _kv(num_blocks=3 * 4)
    _fill(kv, 0, 7, seed=0)
    _fill(kv, 2, 11, seed=2)
    before = _rows(kv, 3, 11)[0][2].clone()
    kv.release(0)
    kv.move(2, 0)                                     # the last row fills the hole
    assert kv.at_home(0) and kv.blocks[2] == []
    assert torch.equal(_rows(kv, 1, 11)[0][0], before)
    kv.fork(0, 1)                                     # shares row 0's blocks
    assert not kv.at_home(1) and kv.at_home(0)
    kv.ensure(1, 12, 11)                              # the write into the shared last block copies it home
    assert kv.blocks[1][2] == 1 * kv.max_blocks + 2 and kv.blocks[1][0] == kv.blocks[0][0]


def test_a_pool_smaller_than_a_run_per_row_has_no_homes():
    kv = _kv(num_blocks=5)
    _fill(kv, 1, 9, seed=1)
    assert not kv.home and not kv.at_home(1) and kv.num_free() == 2
