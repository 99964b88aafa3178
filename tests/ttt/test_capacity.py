"""The capacity planner (rwttt_ray.ttt.capacity): pure arithmetic, checked at Qwen3-4B shapes."""
import pytest

from rwttt_ray.ttt.capacity import (GIB, CapacityError, ModelShapes, blocks_for, budget_from, plan_capacity,
                                    plan_counts, workspace_estimate)

QWEN = ModelShapes.qwen3_4b()
MODEL_BYTES = int(8.05e9)
STREAM = 4096 + 512


def plan(budget: int, tokens: int = STREAM, max_slots: int = 64, reserve: int = 8, **kw):
    return plan_capacity(QWEN, budget_bytes=budget, model_bytes=MODEL_BYTES, write_reserve=reserve,
                         max_slots=max_slots, target_tokens=tokens, **kw)


def test_qwen3_4b_sizes_exactly():
    assert QWEN.fast_slot_bytes == 6 * 9728 * 2560 * 4 == 597_688_320
    assert round(QWEN.fast_slot_bytes / GIB, 3) == 0.557
    assert QWEN.kv_bytes_per_token == 36 * 2 * 8 * 128 * 2 == 147_456
    assert QWEN.kv_block_bytes(16) == 16 * 147_456
    assert QWEN.buffer_slot_bytes == 6 * 128 * (2560 + 9728) * 2
    kept = ModelShapes(**{**QWEN.__dict__, "keep_targets": True})
    assert kept.buffer_slot_bytes == 6 * 128 * (2 * 2560 + 9728) * 2
    assert ModelShapes.qwen3_4b(dtype_bytes=4).fast_slot_bytes == QWEN.fast_slot_bytes  # fp32 always
    assert blocks_for(0, 16) == 0 and blocks_for(1, 16) == 1 and blocks_for(16, 16) == 1 and blocks_for(17, 16) == 2


def test_budget_sweep_fits_and_is_monotone():
    for tokens in (STREAM, 16896):
        prev, fitted = None, 0
        for budget in [GIB // 4 + i * (140 * GIB - GIB // 4) // 400 for i in range(401)]:
            try:
                p = plan(budget, tokens=tokens)
            except CapacityError:
                assert prev is None  # once one owner fits, a larger budget never stops fitting
                continue
            fitted += 1
            assert p.total_bytes <= p.budget_bytes == budget
            assert min(p.slots, p.write_reserve, p.kv_blocks, p.fast_bytes, p.kv_bytes) >= 0
            assert 1 <= p.slots <= 64 and p.write_reserve <= p.slots and p.owners_at(tokens) == p.slots
            assert prev is None or (p.slots, p.kv_blocks) >= (prev.slots, prev.kv_blocks), (prev, p)
            assert prev is None or p.owners_at(STREAM) >= prev.owners_at(STREAM)
            prev = p
        assert fitted > 350 and prev.slots == (64 if tokens == STREAM else prev.slots) >= 30


def test_small_budgets_clamp_the_write_reserve():
    lo = plan(int(11 * GIB))                      # room for a few owners only
    assert 1 <= lo.slots < 8 and lo.write_reserve == lo.slots
    assert lo.total_bytes <= lo.budget_bytes


def test_80gb_at_0_9_holds_the_papers_8_streams():
    budget = budget_from(total_device_bytes=80 * GIB, gpu_memory_utilization=0.9, memory_budget_gib=None)
    ws = workspace_estimate(QWEN, max_batch=256)
    p = plan(budget, workspace_bytes=ws)
    assert p.total_bytes <= budget == int(72 * GIB)
    assert p.slots == 49 and p.write_reserve == 8
    assert p.owners_at(STREAM) >= 8 and p.owners_at(STREAM) == p.slots
    assert p.max_tokens_per_owner() == p.kv_blocks * 16 > 64 * STREAM // 2
    line = p.describe(STREAM)
    print(line)
    assert line.startswith("capacity: 49 slots, 8 write reserve, ") and "owners at 4608 tokens" in line
    assert "of budget 72.00 GiB" in line


def test_old_count_defaults_do_not_fit_80gb():
    old = plan_counts(QWEN, slots=64, write_reserve=64, block_size=16, max_tokens=STREAM)
    assert old.fast_bytes == 128 * QWEN.fast_slot_bytes > 76e9 and old.total_bytes > 76e9
    assert old.budget_bytes == old.total_bytes and old.kv_blocks == 64 * 288
    new = plan_counts(QWEN, slots=64, write_reserve=8, block_size=16, max_tokens=STREAM)
    assert new.fast_bytes == 72 * QWEN.fast_slot_bytes
    assert new.fast_bytes / GIB == pytest.approx(64 * 0.557 + 8 * 0.557, rel=1e-3)
    assert plan_counts(QWEN, slots=4, write_reserve=64, block_size=16, max_tokens=16).write_reserve == 4


def test_too_small_a_budget_says_gib():
    with pytest.raises(CapacityError, match=r"budget of 8\.00 GiB cannot hold the model \(7\.50 GiB\).*GiB"):
        plan(8 * GIB)
    with pytest.raises(ValueError):
        plan(80 * GIB, tokens=0)


def test_workspace_estimate_rounds_to_mib():
    ws = workspace_estimate(QWEN, max_batch=256)
    assert ws % 2 ** 20 == 0 and ws >= 256 * (151936 * 4 + 8 * 9728 * 2) + 256 * 2 ** 20


def test_budget_from_precedence_and_validation():
    total = 80 * GIB
    assert budget_from(total_device_bytes=total, gpu_memory_utilization=None, memory_budget_gib=None) is None
    assert budget_from(total_device_bytes=total, gpu_memory_utilization=0.5, memory_budget_gib=None) == 40 * GIB
    assert budget_from(total_device_bytes=total, gpu_memory_utilization=0.5, memory_budget_gib=10) == 10 * GIB
    assert budget_from(total_device_bytes=total, gpu_memory_utilization=1.0, memory_budget_gib=None) == total
    for util, gib in ((0.0, None), (1.5, None), (-0.1, None), (None, 0), (None, -1.0), (0.5, 0)):
        with pytest.raises(ValueError):
            budget_from(total_device_bytes=total, gpu_memory_utilization=util, memory_budget_gib=gib)


def test_shapes_of_the_default_model(model):
    s = ModelShapes.of(model)
    assert (s.num_layers, s.kv_heads, s.head_dim, s.d_model, s.d_ff) == (6, 2, 64, 256, 768)
    assert (s.num_ttt, s.chunk, s.dtype_bytes, s.keep_targets) == (1, 32, 4, False)
    assert s.vocab == model.hf.config.vocab_size
    off = ModelShapes.of(model.with_settings(model.settings.with_overrides(enabled=False, target="input_embed")))
    assert off.num_ttt == 0 and off.fast_slot_bytes == 0 and off.keep_targets


def test_owners_per_gpu_at_the_papers_lengths_with_the_host_tier():
    """An 80 GB device at 0.9 holds 49 owners of 4096 + 512 tokens; each spilled one costs its
    fp32 fast weights (6 x 99.6 MB), chunk buffers and KV (4608 x 144 KiB), about 1.29 GB, so
    --swap-space 32 GiB adds 26: 75 owners per GPU, over the 64 the issue asks for."""
    from rwttt_ray.ttt.capacity import host_bytes_per_owner, host_owners

    per_owner = host_bytes_per_owner(QWEN, STREAM)
    assert QWEN.fast_slot_bytes == 6 * 9728 * 2560 * 4 and QWEN.kv_bytes_per_token == 36 * 2 * 8 * 128 * 2
    assert 1.28e9 < per_owner < 1.30e9
    budget = budget_from(total_device_bytes=80 * GIB, gpu_memory_utilization=0.9, memory_budget_gib=None)
    p = plan(budget, workspace_bytes=workspace_estimate(QWEN, max_batch=256))
    host = host_owners(32 * GIB, per_owner)
    assert (p.slots, host) == (49, 26) and p.slots + host >= 64
    assert "and 26 more in the --swap-space host tier" in p.describe(STREAM, host)
    assert host_owners(None, per_owner) is None and host_owners(0, per_owner) == 0
