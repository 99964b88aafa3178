"""SchedulerCore + WorkerCore without Ray (the in-process serving loop, `ttt.local`): phases,
spill/reload, migration, replay after a lost worker, all against the sequential reference."""
import pytest

from rwttt_ray.core.phase import PhasePlan
from rwttt_ray.ttt.local import LocalLoop
from rwttt_ray.ttt.worker_core import StaleEpochRefused
from tests.ttt.oracle import assert_matches_reference, make_requests


def loop_of(model, workers=1, max_states_per_worker=64, quantum=None, rounds_per_call=64, align=None):
    return LocalLoop(model=model, workers=workers, max_states_per_worker=max_states_per_worker, quantum_steps=quantum,
                     rounds_per_call=rounds_per_call, align_rounds=align, record_logits=True, keep_state=True)


def serve(loop, reqs):
    for r in reqs:
        loop.submit(r)
    loop.run([], max_ticks=10_000)
    return loop.outcomes()


def test_phases_match_reference_two_workers(model_c8):
    reqs = make_requests(6, prompt_lens=[5, 13, 20], gen_lens=[17, 9])
    loop = loop_of(model_c8, workers=2)
    out = serve(loop, reqs)
    assert {o.worker_id for o in out.values()} == {"w0", "w1"}
    assert_matches_reference(model_c8, reqs, out)
    assert loop.stats.phases < sum(len(r.prompt) + r.max_new_tokens for r in reqs) / 4   # many rounds per call
    assert not loop.core.owners and not any(w.owns(r.owner_id) for w in loop.workers.values() for r in reqs)


@pytest.mark.parametrize("align", [0, None])
def test_owners_arriving_apart_fall_into_step(model_c8, align):
    """Owners admitted a phase apart: with alignment (default C/2) the early ones sit out a few
    rounds at a boundary and from then on all WRITE in one group per chunk (fewer, longer
    phases); without it every chunk takes two phases. Outputs equal the reference either way."""
    reqs = make_requests(4, prompt_lens=[8], gen_lens=[40])
    loop = loop_of(model_c8, align=align)
    for r in reqs[:2]:
        loop.submit(r)
    loop.tick()                                          # the first two are a chunk ahead
    for r in reqs[2:]:
        loop.submit(r)
    writes = []
    while phases := loop.tick():
        writes += [sorted(len(g) for g in plan.writes) for _, plan, _ in phases]
    assert_matches_reference(model_c8, reqs, loop.outcomes())
    if align is None:
        assert writes.count([4]) >= 3 and len(writes) <= 8
    else:
        assert [4] not in writes and len(writes) > 8


def test_more_owners_than_slots_spill_and_reload(model_c8):
    reqs = make_requests(7, prompt_lens=[6, 11], gen_lens=[19, 12])
    loop = loop_of(model_c8, max_states_per_worker=3, quantum=3, rounds_per_call=4)
    out = serve(loop, reqs)
    w = loop.workers["w0"]
    assert w.stats["spills"] > 0 and w.stats["reloads"] > 0
    assert_matches_reference(model_c8, reqs, out, check_logits=False)   # logits stay on the worker


def test_forced_migration_mid_generation(model_c8):
    reqs = make_requests(3, prompt_lens=[9, 14], gen_lens=[22])
    loop = loop_of(model_c8, workers=2, rounds_per_call=5)
    for r in reqs:
        loop.submit(r)
    loop.tick()
    while loop.core.workers["w0"].commits:               # until w0 has no WRITE waiting to be published
        assert loop.tick()
    moved = [o for o, rec in loop.core.owners.items() if rec.worker_id == "w0" and rec.tokens and not rec.finished]
    for o in moved:
        loop.migrate(o, "w1")
    assert moved and all(loop.core.owners[o].worker_id == "w1" and loop.workers["w1"].owns(o) for o in moved)
    out = serve(loop, [])
    assert_matches_reference(model_c8, reqs, out, logits_tail=True)    # logits do not travel with the state
    assert all(out[o].worker_id == "w1" for o in moved)


def test_lost_worker_owners_replay_elsewhere(model_c8):
    reqs = make_requests(4, prompt_lens=[7, 12], gen_lens=[25])
    loop = loop_of(model_c8, workers=2, rounds_per_call=6)
    for r in reqs:
        loop.submit(r)
    for _ in range(4):
        loop.tick()
    assert loop.kill("w0")
    out = serve(loop, [])
    assert all(o.worker_id == "w1" for o in out.values())
    assert_matches_reference(model_c8, reqs, out, logits_tail=True)


def test_stale_epoch_plan_is_refused(model_c8):
    loop = loop_of(model_c8)
    loop.submit(make_requests(1, prompt_lens=[5], gen_lens=[3])[0])
    loop.epoch = 5
    assert loop.tick()
    with pytest.raises(StaleEpochRefused):
        loop.workers["w0"].run_phase(PhasePlan(epoch=4))


def test_owner_released_while_its_write_phase_runs(model_c8):
    """A client that hangs up mid-phase: settling skips the released owner (no commit for it,
    no crash) and every other owner still ends with its reference outputs."""
    reqs = make_requests(3, prompt_lens=[8], gen_lens=[12])
    loop = loop_of(model_c8)
    for r in reqs:
        loop.submit(r)
    plan = loop.plan("w0")
    assert plan.writes                                   # prompts of one chunk: the phase ends in a WRITE
    res = loop.workers["w0"].run_phase(plan)
    gone = reqs[0].owner_id
    loop.core.forget(gone)                               # released while the phase was in flight
    loop.workers["w0"].release(gone)
    assert [o for o, _ in loop.core.receipts(res)] == [r.owner_id for r in reqs[1:]]
    loop.settle("w0", plan, res)
    assert gone not in loop.core.owners and gone not in loop.core.workers["w0"].commits
    out = serve(loop, [])
    assert gone not in out
    assert_matches_reference(model_c8, reqs[1:], out)
