"""WRITE semantics: every WRITE changes its owner's state and only its owner's, only at commit;
a failed WRITE group rolls back every member; naive shared batching diverges (why the contract exists)."""
import torch

from rwttt_ray.bench.gates import max_logit_diff, token_match
from rwttt_ray.bench.modes import from_outcomes
from rwttt_ray.ttt.baselines import naive_loop
from rwttt_ray.ttt.local import LocalLoop
from tests.ttt.oracle import assert_matches_reference, make_requests


def _snapshot(runner):
    return {o: runner.pool.export(o) for o in runner.owners}


def test_every_write_changes_only_its_owner(model_c8):
    loop = LocalLoop(model=model_c8, max_states_per_worker=4, keep_state=True)
    runner = loop.workers["w0"].runner
    commits = []
    real_commit = runner.commit

    def spy(owner_id):
        before = _snapshot(runner)
        real_commit(owner_id)
        after = _snapshot(runner)
        commits.append(owner_id)
        changed = before[owner_id] is None or any(not torch.equal(a, b) for a, b in zip(before[owner_id], after[owner_id]))
        assert changed, f"WRITE of {owner_id} left its state unchanged"
        for other in before:
            if other != owner_id and before[other] is not None:
                assert all(torch.equal(a, b) for a, b in zip(before[other], after[other]))

    runner.commit = spy
    out = loop.run(make_requests(4, prompt_lens=[10, 19], gen_lens=[20]))
    assert len(commits) >= 4 and len(commits) == sum(o.version for o in out.values())


def test_failed_write_group_rolls_back_every_member_then_recovers(model_c8):
    """The kernel raises mid-group (after two candidates were written): every member's candidate
    rolls back, the members re-run alone and commit, and all end as the reference."""
    reqs = make_requests(4, prompt_lens=[8], gen_lens=[12])   # aligned: WRITE groups of 4
    loop = LocalLoop(model=model_c8, max_states_per_worker=4, record_logits=True, keep_state=True)
    runner = loop.workers["w0"].runner
    calls, rolled_back = {"n": 0}, []

    def fault(owner_id):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("injected WRITE failure")

    real_rollback = runner.pool.rollback

    def spy(owner_id):
        if runner.pool.has_candidate(owner_id):          # (releasing an owner calls it too)
            rolled_back.append(owner_id)
        real_rollback(owner_id)

    runner.write_fault, runner.pool.rollback = fault, spy
    out = loop.run(reqs)
    assert sorted(rolled_back) == sorted(r.owner_id for r in reqs)
    assert loop.stats.writes_rolled_back == 0          # each re-ran alone, and its receipt was accepted
    assert runner.pool.num_free() == runner.pool.reserve    # nothing leaked
    assert_matches_reference(model_c8, reqs, out)


def test_naive_shared_batching_diverges(model_c8):
    reqs = make_requests(4, prompt_lens=[16, 9], gen_lens=[24])
    good = from_outcomes("rwttt", LocalLoop(model=model_c8, max_states_per_worker=4, record_logits=True).run(reqs), 1.0, 0)
    naive = from_outcomes("naive", naive_loop(model_c8, max_states_per_worker=4, record_logits=True).run(reqs), 1.0, 0)
    assert max_logit_diff(good, naive) > 1e-2
    same, total = token_match(naive, good)
    assert max_logit_diff(good, naive) > 1e-2 and total == 4
    assert naive.versions == good.versions                # its WRITEs are committed as usual, into one weight
