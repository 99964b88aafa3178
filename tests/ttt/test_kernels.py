"""Each kernel against a float64 loop reference, over owner mixes (Punica style)."""
import pytest
import torch
import torch.nn.functional as F

from rwttt_ray.ttt.kernels import chunk_values, gated_hidden, read_delta_, write_candidate_
from rwttt_ray.ttt.pool import FastWeightPool, PoolFullError

D, FF, S = 16, 24, 12
MIXES = {
    "distinct": [0, 1, 2, 3, 4, 5],
    "contiguous": [3, 4, 5, 6, 7, 8],
    "identical": [2, 2, 2, 2, 2, 2],
    "skewed": [7, 7, 7, 7, 1, 9],
    "some_never_written": [5, None, 2, None, None, 11],
}


def _loop_read(out, h, pool, slots):
    ref = out.double().clone()
    for b, s in enumerate(slots):
        if s is not None:
            for t in range(h.shape[1]):
                ref[b, t] += h[b, t].double() @ pool[s].double()
    return ref


@pytest.mark.parametrize("mix", MIXES)
@pytest.mark.parametrize("tokens", [1, 5])
def test_read_delta_matches_loop(mix, tokens):
    g = torch.Generator().manual_seed(0)
    slots = MIXES[mix]
    pool = torch.randn(S, FF, D, generator=g)
    h, out = torch.randn(len(slots), tokens, FF, generator=g), torch.randn(len(slots), tokens, D, generator=g)
    expected = _loop_read(out, h, pool, slots)
    rows = [b for b, s in enumerate(slots) if s is not None]
    read_delta_(out, h, pool, rows, [slots[b] for b in rows])
    torch.testing.assert_close(out.double(), expected, atol=1e-5, rtol=1e-5)


def test_read_delta_leaves_pool_untouched():
    pool = torch.randn(S, FF, D)
    before = pool.clone()
    read_delta_(torch.zeros(2, 1, D), torch.randn(2, 1, FF), pool, [0, 1], [4, 9])
    assert torch.equal(pool, before)


def test_chunk_values_matches_loop():
    g = torch.Generator().manual_seed(1)
    s, conv, proj = torch.randn(3, 7, D, generator=g), torch.randn(D, 1, 5, generator=g), torch.randn(D, D, generator=g)
    ref = torch.zeros(3, 7, D, dtype=torch.float64)
    for gi in range(3):
        for t in range(7):
            for j in range(-2, 3):
                if 0 <= t + j < 7:   # zero-padded inside the chunk only
                    ref[gi, t] += conv[:, 0, j + 2].double() * s[gi, t + j].double()
    torch.testing.assert_close(chunk_values(s, conv, None).double(), ref, atol=1e-5, rtol=1e-5)
    ref = ref @ proj.double()   # projection used as stored, no transpose
    torch.testing.assert_close(chunk_values(s, conv, proj).double(), ref, atol=1e-4, rtol=1e-5)


def test_gated_hidden():
    x, gw, uw = torch.randn(4, D), torch.randn(FF, D), torch.randn(FF, D)
    torch.testing.assert_close(gated_hidden(x, gw, uw, F.silu), F.silu(x @ gw.T) * (x @ uw.T))


@pytest.mark.parametrize("has_base", [False, True])
def test_write_candidate_matches_loop(has_base):
    g = torch.Generator().manual_seed(2)
    pool = torch.randn(S, FF, D, generator=g)
    h, v = torch.randn(8, FF, generator=g), torch.randn(8, D, generator=g)
    base = pool[3].double().clone() if has_base else torch.zeros(FF, D, dtype=torch.float64)
    expected = base + 0.3 * sum(torch.outer(h[t].double(), v[t].double()) for t in range(8))
    before = pool.clone()
    write_candidate_(pool, 6, 3 if has_base else None, h, v, 0.3)
    torch.testing.assert_close(pool[6].double(), expected, atol=1e-5, rtol=1e-5)
    keep = [i for i in range(S) if i != 6]
    assert torch.equal(pool[keep], before[keep])   # the committed base slot is only read


def test_pool_candidate_commit_rollback_fork():
    pool = FastWeightPool(1, FF, D, rows=3, reserve=2)
    pool.attach("a", 0)
    h, v = torch.randn(5, FF), torch.randn(5, D)
    pool.begin_candidate("a")
    pool.write_candidate("a", 0, h, v, 1.0)
    assert pool.slot_of("a") is None            # dirty: invisible until commit
    assert pool.layers[0][0].abs().sum() == 0   # the row holds the committed (zero) delta
    pool.commit("a")
    assert pool.slot_of("a") == 0               # published onto the owner's row
    first = pool.export("a")[0]
    torch.testing.assert_close(first, h.T @ v)
    pool.attach("b", 1)
    pool.fork("a", "b")                          # the child starts from the parent's delta
    torch.testing.assert_close(pool.export("b")[0], first)
    pool.begin_candidate("b")
    pool.write_candidate("b", 0, h, v, 1.0)
    pool.commit("b")
    torch.testing.assert_close(pool.export("a")[0], first)       # parent unchanged
    torch.testing.assert_close(pool.export("b")[0], 2 * first)
    pool.begin_candidate("a")
    pool.rollback("a")
    torch.testing.assert_close(pool.export("a")[0], first)
    pool.drop("a")
    pool.move(1, 0)                              # compaction: b's row moves into the hole
    assert pool.slot_of("b") == 0 and pool.layers[0][1].abs().sum() == 0
    torch.testing.assert_close(pool.export("b")[0], 2 * first)
    pool.drop("b")
    assert pool.num_free() == 2 and not any(layer[:pool.rows].abs().sum() for layer in pool.layers)


def test_pool_full():
    pool = FastWeightPool(1, FF, D, rows=2, reserve=1)
    pool.attach("a", 0)
    pool.attach("b", 1)
    pool.begin_candidate("a")
    with pytest.raises(PoolFullError):
        pool.begin_candidate("b")
