"""WRITE semantics: every WRITE changes its owner's state and only its owner's, only at commit;
a failed WRITE group rolls back every member; naive shared batching diverges (why the contract exists)."""
import torch

from rwttt_ray.bench.gates import max_logit_diff, token_match
from rwttt_ray.bench.modes import from_outcomes
from rwttt_ray.ttt.baselines import naive_engine
from rwttt_ray.ttt.engine import Engine
from tests.ttt.oracle import assert_matches_reference, make_requests


def _snapshot(runner):
    return {o: runner.pool.export(o) for o in runner.owners}


def test_every_write_changes_only_its_owner(model_c8):
    eng = Engine(model_c8, max_owners=4, keep_state=True)
    commits = []
    real_commit = eng.runner.commit

    def spy(owner_id):
        before = _snapshot(eng.runner)
        real_commit(owner_id)
        after = _snapshot(eng.runner)
        commits.append(owner_id)
        changed = before[owner_id] is None or any(not torch.equal(a, b) for a, b in zip(before[owner_id], after[owner_id]))
        assert changed, f"WRITE of {owner_id} left its state unchanged"
        for other in before:
            if other != owner_id and before[other] is not None:
                assert all(torch.equal(a, b) for a, b in zip(before[other], after[other]))

    eng.runner.commit = spy
    eng.run(make_requests(4, prompt_lens=[10, 19], gen_lens=[20]))
    assert len(commits) >= 4


def test_failed_write_group_rolls_back_every_member_then_recovers(model_c8):
    reqs = make_requests(4, prompt_lens=[8], gen_lens=[12])   # aligned: WRITE groups of 4
    eng = Engine(model_c8, max_owners=4, record_logits=True, keep_state=True)
    calls = {"n": 0}

    def fault(owner_id):
        calls["n"] += 1
        if calls["n"] == 3:              # mid-group: after two candidates were written
            raise RuntimeError("injected WRITE failure")

    eng.runner.write_fault = fault
    out = eng.run(reqs)
    assert eng.stats.writes_rolled_back == 4
    assert all(eng.runner.pool.num_free() == eng.runner.pool.capacity for _ in [0])   # nothing leaked
    assert_matches_reference(model_c8, reqs, out)


def test_naive_shared_batching_diverges(model_c8):
    reqs = make_requests(4, prompt_lens=[16, 9], gen_lens=[24])
    eng = Engine(model_c8, max_owners=4, record_logits=True)
    good = from_outcomes("rwttt", eng.run(reqs), 1.0, 0)
    naive = from_outcomes("naive", naive_engine(model_c8, max_owners=4, record_logits=True).run(reqs), 1.0, 0)
    assert max_logit_diff(good, naive) > 1e-2
    same, total = token_match(naive, good)
    assert max_logit_diff(good, naive) > 1e-2 and total == 4
