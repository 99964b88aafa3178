"""A worker sized by a byte budget: it allocates no more than its plan, its context is what its
KV blocks hold (a longer request is refused by name before anything is allocated), and the
fast-weight pool's WRITE reserve is the plan's (the largest WRITE group), not the slot count."""
import pytest

from rwttt_ray.ttt.capacity import ModelShapes, model_bytes_of, plan_capacity, plan_counts
from rwttt_ray.ttt.sampling import Request
from rwttt_ray.ttt.worker_core import WorkerCore


def _allocated(worker) -> int:
    r = worker.runner
    tensors = (*r.seqs.kv.k, *r.seqs.kv.v, *r.seqs.buffers, *r.pool.layers)
    return sum(t.numel() * t.element_size() for t in tensors)


def test_a_budget_sizes_the_worker_and_caps_its_context(model_c8):
    shapes, weights = ModelShapes.of(model_c8), model_bytes_of(model_c8)
    budget = plan_counts(shapes, slots=3, write_reserve=2, block_size=16, max_tokens=64, model_bytes=weights).total_bytes
    plan = plan_capacity(shapes, budget_bytes=budget, model_bytes=weights, block_size=16, write_reserve=2,
                         max_slots=8, target_tokens=64)
    assert plan.slots == 3 and plan.write_reserve == 2
    worker = WorkerCore(model_c8, "w0", capacity=plan)
    r = worker.runner
    assert worker.max_states_per_worker == 3 and r.pool.reserve == 2 and r.seqs.kv.num_blocks == plan.kv_blocks
    assert weights + _allocated(worker) <= plan.budget_bytes
    assert r.max_seq_len == plan.max_tokens_per_owner() < model_c8.max_seq_len
    with pytest.raises(ValueError, match="context limit"):
        worker.admit(Request("long", tuple(range(3, 3 + r.max_seq_len)), 4))
    assert r.seqs.num_free() == 3 and r.seqs.kv.num_free() == plan.kv_blocks    # nothing was taken


def test_the_count_sized_default_reserves_the_largest_write_group(model_c8):
    worker = WorkerCore(model_c8, "w0", max_states_per_worker=6, write_reserve=2)
    assert worker.runner.pool.reserve == 2 and worker.runner.pool.rows == 6


def test_the_host_tier_bounds_the_owners_a_worker_takes(model_c8):
    """max_owners = slots + what --swap-space holds at the full context, and the estimate per
    owner is never below what a spilled owner at the full context really costs."""
    from dataclasses import replace

    from rwttt_ray.ttt.capacity import host_bytes_per_owner
    from rwttt_ray.ttt.local import LocalLoop

    small = replace(model_c8, context_limit=96)
    per_owner = host_bytes_per_owner(ModelShapes.of(small), small.max_seq_len)
    loop = LocalLoop(model=small, max_states_per_worker=2,
                     worker_options=dict(swap_space=2.5 * per_owner / 2**30))
    worker = loop.workers["w0"]
    assert worker.max_owners == 2 + 2 and loop.core.workers["w0"].max_owners == 4
    assert WorkerCore(small, "w1", max_states_per_worker=2).max_owners is None      # no --swap-space: no limit
    full = Request("full", tuple(range(3, 3 + small.max_seq_len - 4)), 4, keep_at_end=True)   # held, like a session
    assert loop.run([full])["full"].tokens
    worker.spill("full")
    held = len(worker.export_owner("full"))                   # what its state is as bytes
    assert 0.9 * per_owner < held <= per_owner
