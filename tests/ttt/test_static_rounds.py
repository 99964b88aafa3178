"""The static-shape decode path (StaticRounds + StaticDecoder) against the eager path and the
sequential reference: buckets 1..64 with padding, owners joining and leaving (row compaction),
forks sharing KV blocks copy-on-write, spill and reload, a WRITE reserve smaller than the group;
and a padding row never changes any state (the pools compared bit for bit)."""
from dataclasses import replace

import pytest
import torch

from rwttt_ray.core.types import Effect, Group, StepKind
from rwttt_ray.ttt.capacity import ModelShapes, plan_counts
from rwttt_ray.ttt.local import LocalLoop
from rwttt_ray.ttt.rounds import StaticRounds
from rwttt_ray.ttt.runner import GroupRunner
from rwttt_ray.ttt.sampling import Request
from tests.ttt.oracle import LOGIT_TOL, assert_matches_reference, make_requests


def _run(model, reqs, static, arrivals=None, **kw):
    loop = LocalLoop(model=model, record_logits=True, keep_state=True, worker_options=dict(static_rounds=static), **kw)
    out = loop.run(reqs, arrivals)
    return loop, out


def _assert_same(a, b):
    for o in a:
        assert a[o].tokens == b[o].tokens, o
        assert a[o].version == b[o].version, o
        worst = max(float((x - y).abs().max()) for x, y in zip(a[o].logits, b[o].logits))
        assert worst <= LOGIT_TOL, f"{o}: static vs eager logits differ by {worst}"
        for x, y in zip(a[o].deltas or [], b[o].deltas or []):
            torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("owners", [1, 2, 3, 5, 8, 13, 33, 64])
def test_static_path_equals_eager_path_for_every_bucket(model_c8, owners):
    reqs = make_requests(owners, prompt_lens=[3, 9, 14], gen_lens=[11, 6, 17])
    loop, got = _run(model_c8, reqs, True, max_states_per_worker=owners)
    _, want = _run(model_c8, reqs, False, max_states_per_worker=owners)
    assert loop.workers["w0"].static.rounds_run > 0          # the static path was taken
    _assert_same(got, want)
    if owners <= 13:                                         # and the oracle's (the larger runs: via eager)
        assert_matches_reference(model_c8, reqs, got)


@pytest.mark.parametrize("kv_blocks", [None, 12])
def test_static_path_matches_reference_with_joins_leaves_and_spill(model_c8, kv_blocks):
    """With KV for every row at full context (home blocks: attention reads a view) and with a
    pool of 12 blocks for 3 rows (no homes: attention gathers through the block table)."""
    reqs = make_requests(7, prompt_lens=[4, 11, 19], gen_lens=[25, 5, 21, 13])
    options = {}
    if kv_blocks is not None:
        plan = plan_counts(ModelShapes.of(model_c8), slots=3, write_reserve=3, block_size=16, max_tokens=64)
        options["capacity"] = replace(plan, kv_blocks=kv_blocks)
    loop = LocalLoop(model=model_c8, record_logits=True, keep_state=True, max_states_per_worker=3, quantum_steps=4,
                     worker_options=options)
    out = loop.run(reqs, [0, 0, 0, 0, 3, 7, 9])
    w = loop.workers["w0"]
    assert w.static.rounds_run > 0 and w.stats["spills"] > 0 and w.stats["reloads"] > 0
    runs = w.static.decoder.runs
    assert (runs["gather"] if kv_blocks else runs["view"]) > 0 and w.runner.seqs.kv.home is (kv_blocks is None)
    assert_matches_reference(model_c8, reqs, out, check_logits=False)   # spilled owners carry no logits


def test_write_reserve_smaller_than_the_group_defers_writes(model_c8):
    reqs = make_requests(6, prompt_lens=[8], gen_lens=[20])
    small = LocalLoop(model=model_c8, record_logits=True, keep_state=True, max_states_per_worker=6,
                      worker_options=dict(write_reserve=2))
    out_small = small.run(reqs)
    assert small.workers["w0"].runner.pool.reserve == 2
    assert_matches_reference(model_c8, reqs, out_small)


def _decode_group(runner, owners):
    tags = tuple(runner.tag(o, StepKind.DECODE, Effect.READ, runner.owners[o].writes) for o in owners)
    return Group(tags[0].key, tags, 0)


def _prefill(runner, owner):
    while runner.progress(owner).unfed > 1 or runner.progress(owner).write_pending:
        tag = runner.next_tag(owner, runner.owners[owner].writes)
        runner.run(Group(tag.key, (tag,), 0))
        if tag.effect is Effect.WRITE:
            runner.commit(owner)


def _state(runner):
    kv = runner.seqs.kv
    return ([t.clone() for t in (*kv.k, *kv.v)], [t.clone() for t in runner.seqs.buffers],
            [t[:runner.pool.rows].clone() for t in runner.pool.layers])


def test_padding_rows_change_no_state(model_c8):
    runner = GroupRunner(model_c8, max_owners=8, write_reserve=2)
    for i in range(6):
        runner.admit(Request(f"o{i}", tuple(range(30 + i, 40 + 2 * i)), 4))
        _prefill(runner, f"o{i}")
    static = StaticRounds(runner, graphs=False)
    members = ["o1", "o4"]                                   # rows 1 and 4 of 6, bucket 8: 6 padding rows
    before = _state(runner)
    held = {o: list(runner.seqs.kv.blocks[runner.seqs.owner_slot[o]]) for o in runner.owners}
    results = static.run([_decode_group(runner, members)], {})
    assert set(results[0].tokens) == set(members)
    after = _state(runner)
    kv, bs = runner.seqs.kv, runner.seqs.kv.block_size
    changed = {(runner.seqs.owner_slot[o], runner.progress(o).pos - 1) for o in members}   # (row, position)
    for o in runner.owners:                                  # every KV block: only members' new positions
        row = runner.seqs.owner_slot[o]
        for i, b in enumerate(held[o]):
            for layer in range(len(kv.k)):
                for p in range(i * bs, (i + 1) * bs):
                    same = torch.equal(before[0][layer][b, p - i * bs], after[0][layer][b, p - i * bs])
                    assert same or (row, p) in changed, (o, p)
    for t0, t1 in zip(before[1], after[1]):                  # buffers: only members' rows
        keep = [r for r in range(runner.seqs.capacity) if r not in {runner.seqs.owner_slot[o] for o in members}]
        assert torch.equal(t0[keep], t1[keep])
    for t0, t1 in zip(before[2], after[2]):                  # fast weights: a READ changes none
        assert torch.equal(t0, t1)


def test_fork_shares_kv_blocks_copy_on_write(model_c8):
    parent = Request("p", tuple(range(40, 61)), 9)           # 21 tokens: one full block, one partial
    alone = LocalLoop(model=model_c8, max_states_per_worker=3)
    want = alone.run([parent])["p"].tokens
    runner = GroupRunner(model_c8, max_owners=3)
    runner.admit(parent)
    _prefill(runner, "p")
    pos = runner.progress("p").pos
    child = Request("c", (*runner.owners["p"].stream, 7, 8, 9), 6)
    runner.fork("p", child)
    kv, rows = runner.seqs.kv, runner.seqs.owner_slot
    shared = kv.blocks[rows["p"]]
    assert kv.blocks[rows["c"]] == shared and all(kv._refs[b] == 2 for b in shared)
    runner.extend(child)
    _prefill(runner, "c")                                    # the child writes past the fork: copy-on-write
    assert kv.blocks[rows["c"]][0] == shared[0]              # the full block stays shared
    assert kv.blocks[rows["c"]][pos // kv.block_size] != shared[pos // kv.block_size]
    static = StaticRounds(runner, graphs=False)
    got = {"p": [], "c": []}
    while not (runner.progress("p").done and runner.progress("c").done):
        live = [o for o in ("p", "c") if not runner.progress(o).done and runner.progress(o).next_effect() is Effect.READ]
        for res in static.run([_decode_group(runner, live)], {}) if live else []:
            for o, t in res.tokens.items():
                got[o].append(t)
        for o in ("p", "c"):
            if runner.progress(o).write_pending:
                _prefill(runner, o)
    assert [runner.owners["p"].stream[pos]] + got["p"] == want[len(want) - len(got["p"]) - 1:]
