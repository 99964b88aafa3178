"""Bench report pieces: the near-tie comparator of the token gates (a flip passes only at a real
near-tie), how a failed gate reports itself, and the paired backend ratio."""
import torch

from rwttt_ray.bench.gates import gates, max_logit_diff, tie_flip, token_match
from rwttt_ray.bench.modes import ModeResult

L = lambda *v: torch.tensor(v)   # noqa: E731


def _mode(name, tokens, logits):
    res = ModeResult(name, {"o": tokens}, 1.0)
    res.logits = {"o": logits}
    return res


def test_a_flip_at_a_near_tie_matches_and_logits_are_compared_up_to_it():
    ref = _mode("sequential", [1, 1, 0], [L(0., 1.), L(0.5, 0.50000005), L(1., 0.)])
    got = _mode("rwttt", [1, 0, 1], [L(0., 1.), L(0.50000004, 0.50000003), L(0., 1.)])
    assert tie_flip(ref.tokens["o"], ref.logits["o"], got.tokens["o"], got.logits["o"])
    assert token_match(got, ref) == (1, 1)
    assert max_logit_diff(got, ref) < 1e-4          # the positions after the flip are not compared


def test_a_flip_without_a_tie_or_after_drift_does_not_match():
    ref = _mode("sequential", [1, 1], [L(0., 1.), L(0., 1.)])
    far = _mode("rwttt", [1, 0], [L(0., 1.), L(1., 0.)])               # a clear winner changed
    drift = _mode("rwttt", [1, 0], [L(0., 1.2), L(0.5, 0.5)])          # logits parted before
    assert token_match(far, ref) == (0, 1) and token_match(drift, ref) == (0, 1)
    assert max_logit_diff(far, ref) > 1e-4


def test_a_failed_token_gate_says_how_it_failed():
    """A stream that stops early matches the reference's logits as far as it goes: the gate
    fails on tokens, and the report names the owner, both lengths and where they part."""
    ref = _mode("sequential", [1, 1, 0], [L(0., 1.), L(0., 1.), L(1., 0.)])
    short = _mode("rwttt", [1, 1], [L(0., 1.), L(0., 1.)])
    g = gates(short, None, ref)
    assert not g["passed"] and g["max_logit_diff"] == 0.0
    assert g["token_mismatches"] == [{"owner": "o", "ref_len": 3, "got_len": 2, "first_diff": 2, "tie_flip": False}]
    assert "token_mismatches" not in gates(ref, None, ref)


def test_paired_ratio_is_the_median_of_adjacent_pairs():
    from rwttt_ray.bench.report import paired_ratio

    res = ModeResult("rwttt_http", {}, 1.0)
    res.extra.update(all_walls_s=[2.0, 4.0, 1.0], paired_inproc_walls_s=[1.8, 2.0, 0.95])
    assert paired_ratio(res) == 0.9               # pairs 0.9, 0.5, 0.95: the slow pass is an outlier
    res.extra["paired_inproc_walls_s"] = [1.0]
    assert paired_ratio(res) is None               # passes without a partner: no paired figure


def test_a_nan_logit_fails_the_logit_gate():
    """max() passes over NaN; the gate must not (NaN logits once hid a wrong greedy token)."""
    ref = _mode("sequential", [1, 1], [L(0., 1.), L(0., 1.)])
    nan = _mode("rwttt", [1, 0], [L(0., 1.), L(float("nan"), 0.)])
    assert max_logit_diff(nan, ref) == float("inf") and not gates(nan, None, ref)["passed"]
