"""Autoscaling decisions without Ray: a load ramp up then down makes the worker count rise, then
fall, within [min, max]; it holds while a worker starts or drains; it drains the least busy."""
import pytest

from policies.autoscaling import (AUTOSCALING_NAMES, QueueDepthAutoscaler, ScaleDecision, ScaleObservation,
                                  WorkerUsage, make_autoscaler)

CAPACITY = 4


def spread(num_active: int, workers: list[str]) -> ScaleObservation:
    """`num_active` owners with work spread evenly over `workers` of CAPACITY slots each."""
    base, extra = divmod(num_active, len(workers))
    return ScaleObservation(tuple(WorkerUsage(w, CAPACITY, base + (i < extra), base + (i < extra))
                                  for i, w in enumerate(workers)))


def simulate(policy: QueueDepthAutoscaler, load: list[int]) -> list[int]:
    """Apply each decision at once (no start-up delay); the worker count after each observation."""
    workers, made, counts = ["w0"], 1, []
    for num_active in load:
        decision = policy.decide(spread(num_active, workers))
        if decision.delta > 0:
            workers.append(f"w{made}")
            made += 1
        elif decision.delta < 0:
            workers.remove(decision.worker_id)
        counts.append(len(workers))
    return counts


def test_load_ramp_up_then_down_scales_up_then_down():
    policy = QueueDepthAutoscaler(min_workers=1, max_workers=3, upscale_after_steps=2, downscale_after_idle_steps=3)
    ramp = [1, 2, 4, 6, 8, 10, 12, 12, 12, 12, 12, 12]
    fall = [8, 6, 4, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    counts = simulate(policy, ramp + fall)
    peak = counts.index(max(counts))
    assert max(counts) == 3 and counts[0] == 1 and counts[-1] == 1
    assert counts[:peak + 1] == sorted(counts[:peak + 1])              # rises ...
    assert counts[peak:] == sorted(counts[peak:], reverse=True)        # ... then falls
    assert all(b - a in (-1, 0, 1) for a, b in zip(counts, counts[1:]))


def test_needs_the_signal_for_consecutive_steps():
    policy = QueueDepthAutoscaler(1, 3, upscale_after_steps=3, downscale_after_idle_steps=3)
    assert simulate(policy, [9, 0, 9, 0, 9, 0, 9]) == [1] * 7           # a flicker is not a trend
    assert simulate(QueueDepthAutoscaler(1, 3, 3, 3), [9, 9, 9]) == [1, 1, 2]


def test_high_occupancy_without_queue_scales_up():
    policy = QueueDepthAutoscaler(1, 2, upscale_after_steps=1, high_occupancy=0.75)
    assert policy.decide(spread(3, ["w0"])) == ScaleDecision(+1)        # 3 of 4 slots busy, no queue


def test_holds_while_a_worker_starts_or_drains():
    policy = QueueDepthAutoscaler(1, 3, upscale_after_steps=1, downscale_after_idle_steps=1)
    busy = ScaleObservation(spread(9, ["w0"]).workers, num_pending=1)
    assert policy.decide(busy) == ScaleDecision(0)
    assert policy.decide(spread(9, ["w0"])) == ScaleDecision(+1)


def test_drains_the_least_busy_worker_and_respects_bounds():
    policy = QueueDepthAutoscaler(1, 3, upscale_after_steps=1, downscale_after_idle_steps=1)
    obs = ScaleObservation((WorkerUsage("a", 4, 1, 3), WorkerUsage("b", 4, 0, 2), WorkerUsage("c", 4, 0, 1)))
    assert policy.decide(obs) == ScaleDecision(-1, "c")                 # no work, fewest owners
    assert policy.decide(spread(0, ["w0"])) == ScaleDecision(0)         # never below min
    full = QueueDepthAutoscaler(1, 2, upscale_after_steps=1)
    assert full.decide(spread(20, ["a", "b"])) == ScaleDecision(0)      # never above max
    assert QueueDepthAutoscaler(2, 3).decide(spread(0, ["w0"])) == ScaleDecision(+1)   # up to min at once


def test_no_downscale_when_the_rest_would_be_crowded():
    policy = QueueDepthAutoscaler(1, 2, downscale_after_idle_steps=1, low_occupancy=0.5)
    assert policy.decide(spread(3, ["a", "b"])) == ScaleDecision(0)     # 3 > 0.5 * 4 slots left
    assert policy.decide(spread(2, ["a", "b"])).delta == -1


def test_observation_counts():
    obs = ScaleObservation((WorkerUsage("a", 2, 5, 5), WorkerUsage("b", 2, 1, 3)))
    assert obs.queue_depth == 3 and obs.occupancy == pytest.approx(3 / 4)


def test_bad_options_and_names():
    for bad in [dict(min_workers=0), dict(min_workers=3, max_workers=2), dict(upscale_after_steps=0),
                dict(low_occupancy=0.9, high_occupancy=0.5)]:
        with pytest.raises(ValueError):
            QueueDepthAutoscaler(**bad)
    assert isinstance(make_autoscaler("queue_depth", max_workers=2), QueueDepthAutoscaler)
    assert AUTOSCALING_NAMES == ("queue_depth",)
    with pytest.raises(ValueError, match="unknown autoscaling"):
        make_autoscaler("nope")
