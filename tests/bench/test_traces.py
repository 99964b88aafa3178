"""Traces are seeded and deterministic, and each has its documented arrival / phase property."""
import math
from collections import Counter

import pytest

from rwttt_ray.bench.traces import TRACES, boundary_phases, default_bursts, make_trace
from rwttt_ray.core.types import Effect
from rwttt_ray.ttt.local import LocalLoop


def test_names_keep_the_originals_first():
    assert TRACES[:4] == ("uniform", "staggered", "all_update", "mixed")
    assert {"poisson", "bursty"} <= set(TRACES)


@pytest.mark.parametrize("name", TRACES)
def test_seeded_and_deterministic(name):
    a, b = make_trace(name, 8, 20, 5, 8, seed=3), make_trace(name, 8, 20, 5, 8, seed=3)
    assert a == b and a.name == name and len(a.requests) == len(a.arrival_steps) == 8
    assert len({r.owner_id for r in a.requests}) == 8
    assert all(r.max_new_tokens == 5 for r in a.requests)
    assert list(a.arrival_steps) == sorted(a.arrival_steps) and a.arrival_steps[0] == 0
    assert make_trace(name, 8, 20, 5, 8, seed=4).requests != a.requests


def test_uniform_is_aligned():
    t = make_trace("uniform", 6, 19, 4, 8)
    assert set(t.arrival_steps) == {0} and len(set(boundary_phases(t, 8))) == 1


def test_staggered_arrivals_are_distinct_steps():
    t = make_trace("staggered", 10, 16, 4, 8, seed=1)
    assert all(b > a for a, b in zip(t.arrival_steps, t.arrival_steps[1:]))


@pytest.mark.parametrize("owners,chunk", [(4, 32), (8, 32), (2, 8), (8, 8), (16, 8)])
def test_all_update_puts_a_boundary_near_every_step(owners, chunk):
    """Phases spaced chunk // owners apart (owners dividing chunk), or all of them (owners >= chunk)."""
    phases = sorted(set(boundary_phases(make_trace("all_update", owners, 20, 4, chunk), chunk)))
    gaps = [b - a for a, b in zip(phases, phases[1:] + [phases[0] + chunk])]   # cyclic
    assert max(gaps) <= math.ceil(chunk / owners)


def test_poisson_arrivals_follow_the_rate():
    rate = 0.25
    t = make_trace("poisson", 4000, 1, 1, 32, seed=2, rate=rate)
    mean_gap = t.arrival_steps[-1] / (len(t.arrival_steps) - 1)
    assert abs(mean_gap - 1 / rate) < 0.1 / rate
    dense = make_trace("poisson", 50, 4, 2, 8, seed=2, rate=3.0)
    assert max(Counter(dense.arrival_steps).values()) > 1          # several owners share a step
    default = make_trace("poisson", 400, 1, 1, 16, seed=5)            # default rate 2 / chunk
    assert abs(default.arrival_steps[-1] / 399 - 8) < 1.5


def test_bursty_clusters_phases_in_groups():
    t = make_trace("bursty", 12, 16, 4, 32, seed=1)
    groups = Counter(boundary_phases(t, 32))
    assert len(groups) == default_bursts(12, 32) == 4
    assert set(groups.values()) == {3} and set(t.arrival_steps) == {0}
    assert len(set(boundary_phases(make_trace("bursty", 12, 16, 4, 32, num_bursts=2), 32))) == 2


def _write_groups(model, trace):
    loop = LocalLoop(model=model, max_states_per_worker=len(trace.requests), max_group_size=64, align_rounds=0,
                     audit_groups=True)
    loop.run(list(trace.requests), list(trace.arrival_steps))
    return [g for g in loop.stats.issued if g.effect is Effect.WRITE]


def test_bursty_writes_come_in_bursts_on_the_loop(model_c8):
    """Prompts shorter than a chunk, so every WRITE is a decode WRITE: each WRITE group is one burst
    (no phase alignment, which would make the bursts fall into step)."""
    trace = make_trace("bursty", 6, 2, 20, 8, num_bursts=3)
    phase = dict(zip((r.owner_id for r in trace.requests), boundary_phases(trace, 8)))
    writes = _write_groups(model_c8, trace)
    assert writes and all(len(g) == 2 for g in writes)
    assert all(len({phase[o] for o in g.owner_ids}) == 1 for g in writes)
    uniform = _write_groups(model_c8, make_trace("uniform", 6, 2, 20, 8))
    assert uniform and all(len(g) == 6 for g in uniform)


@pytest.mark.parametrize("kw", [dict(name="nope"), dict(num_owners=0), dict(rate=0.0), dict(num_bursts=0)])
def test_bad_arguments_raise(kw):
    args = dict(name="poisson", num_owners=4, prompt_len=8, gen_len=4, chunk=8) | kw
    with pytest.raises(ValueError):
        make_trace(**args)
