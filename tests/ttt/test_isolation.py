"""One request cannot hurt another: a step that raises for one owner (in its group's forward, its
sampling, or its WRITE) fails that owner alone; the group re-runs without it and every other owner
ends with the sequential reference's tokens, logits and state (SchedulerCore + WorkerCore)."""
import pytest

from rwttt_ray.ttt.reference import SequentialReference
from tests.ttt.oracle import assert_matches_reference, make_requests
from tests.ttt.test_phases import loop_of, serve


def poison(victim, after=0):
    calls = {"n": 0}

    def fault(owner_id):
        if owner_id == victim:
            calls["n"] += 1
            if calls["n"] > after:
                raise RuntimeError(f"poisoned {owner_id}")
    return fault


@pytest.mark.parametrize("where", ["read", "write", "sample"])
def test_a_failing_owner_fails_alone(model_c8, where, monkeypatch):
    reqs = make_requests(4, prompt_lens=[6, 11], gen_lens=[14])
    victim = reqs[1].owner_id
    loop = loop_of(model_c8)
    runner = loop.workers["w0"].runner
    if where == "read":
        runner.read_fault = poison(victim, after=3)
    elif where == "write":
        runner.write_fault = poison(victim)
    else:
        real = runner._stop_reason
        monkeypatch.setattr(runner, "_stop_reason", lambda st, tok: (_ for _ in ()).throw(ValueError("bad sampler"))
                            if st.request.owner_id == victim and len(st.generated) == 4 else real(st, tok))
    out = serve(loop, reqs)
    got = out[victim]
    assert got.error and "worker error" in got.error and victim not in loop.core.owners   # finished, released
    others = [r for r in reqs if r.owner_id != victim]
    assert_matches_reference(model_c8, others, {o: v for o, v in out.items() if o != victim})
    want = SequentialReference(model_c8).run(reqs[1]).tokens
    assert got.tokens == want[:len(got.tokens)] and len(got.tokens) < len(want)   # what it had, no more
