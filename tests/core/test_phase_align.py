"""plan_phase's alignment: owners at a WRITE boundary sit out rounds so owners that arrived
apart WRITE together, within the align budget, never holding back a prompt's WRITE."""
from rwttt_ray.core.phase import keep_waiting, plan_phase, rounds_to_boundary
from rwttt_ray.core.planner import BatchPlanner
from rwttt_ray.core.progress import OwnerProgress
from rwttt_ray.core.types import Backend, Effect, TransitionTag

C = 8


def decoding(fill: int, left: int = 40) -> OwnerProgress:
    """An owner generating (prompt of one chunk, all fed), `fill` tokens into its chunk, `left`
    tokens still to generate."""
    fed = 2 * C + fill
    return OwnerProgress(C, num_prompt=C, stream_len=fed + 1, max_new_tokens=fed + 1 - C + left, pos=fed, writes=2)


def prompting(pos: int, prompt: int = 3 * C) -> OwnerProgress:
    return OwnerProgress(C, num_prompt=prompt, stream_len=prompt, max_new_tokens=20, pos=pos, writes=pos // C)


def tag(owner_id, p, version):
    eff = Effect.WRITE if p.write_pending else Effect.READ
    return TransitionTag(owner_id, Backend.FAST_WEIGHT, p.shape_class("s"), eff, version, "w0")


def plan(progress: dict, align: int):
    rounds, writes, _ = plan_phase(progress, lambda o: 0, BatchPlanner(), tag, 0, 64, align)
    return [sorted(o for g in r for o in g.owner_ids) for r in rounds], [sorted(g.owner_ids) for g in writes]


def test_rounds_to_boundary():
    assert rounds_to_boundary(decoding(fill=5), C) == 3
    assert rounds_to_boundary(decoding(fill=5), 2) is None            # beyond the limit
    assert rounds_to_boundary(decoding(fill=5, left=1), C) is None    # it finishes first
    assert rounds_to_boundary(prompting(pos=C), C) == 1               # a prompt piece ends on the boundary


def test_a_late_cohort_within_the_budget_is_waited_for():
    rounds, writes = plan({"a": decoding(fill=6), "b": decoding(fill=3)}, align=4)
    assert rounds == [["a", "b"], ["a", "b"], ["b"], ["b"], ["b"]]    # a sits out 3 rounds
    assert writes == [["a", "b"]]                                     # one WRITE group: in step from now


def test_beyond_the_budget_the_first_boundary_ends_the_phase():
    assert plan({"a": decoding(fill=6), "b": decoding(fill=3)}, align=2) == ([["a", "b"]] * 2, [["a"]])


def test_align_zero_is_the_first_boundary_rule():
    assert plan({"a": decoding(fill=7), "b": decoding(fill=6)}, align=0) == ([["a", "b"]], [["a"]])


def test_a_prompt_write_never_waits():
    """A prompt's WRITE goes at once (its next piece, or its first token, is not held back)."""
    rounds, writes = plan({"p": prompting(pos=C), "d": decoding(fill=6)}, align=4)
    assert rounds == [["d", "p"]] and writes == [["p"]]


def test_owners_that_finish_without_a_boundary_are_not_waited_for():
    rounds, writes = plan({"a": decoding(fill=7), "f": decoding(fill=2, left=2)}, align=4)
    assert rounds == [["a", "f"]] and writes == [["a"]]


def test_keep_waiting_counts_rounds_already_sat_out():
    sim = {"a": decoding(fill=C), "b": decoding(fill=5)}                 # b: 3 rounds to go
    assert keep_waiting(sim, {"a": 1}, 4)
    assert not keep_waiting(sim, {"a": 2}, 4)
    assert not keep_waiting(sim, {}, 4)
