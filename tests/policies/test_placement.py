"""Placement policies: least_loaded/spread, pack, session affinity with fallback, and the factory."""
import pytest

from policies.placement import (PLACEMENT_NAMES, LeastLoaded, Pack, PlacementPolicy, SessionAffinity, Spread,
                                WorkerLoad, make_placement)

LOADS = {"w0": WorkerLoad(3, 4), "w1": WorkerLoad(1, 4), "w2": WorkerLoad(0, 4, alive=False)}


def test_least_loaded_spreads_over_live_workers_and_spread_is_the_same():
    assert LeastLoaded().choose("o", LOADS) == "w1"
    assert Spread().choose("o", LOADS) == "w1" and isinstance(Spread(), LeastLoaded)
    assert LeastLoaded().choose("o", {"b": WorkerLoad(1, 2), "a": WorkerLoad(2, 4)}) == "a"   # tie: by name


def test_pack_fills_the_first_worker_with_a_free_slot():
    assert Pack().choose("o", LOADS) == "w0"
    full = {"w0": WorkerLoad(4, 4), "w1": WorkerLoad(5, 4)}
    assert Pack().choose("o", full) == "w0"                      # all full: least loaded


def test_affinity_keeps_an_owner_at_home():
    assert SessionAffinity().choose("o", LOADS, home="w0") == "w0"
    assert SessionAffinity({"o": "w0"}).choose("o", LOADS) == "w0"
    assert SessionAffinity({"o": "w0"}).choose("o", LOADS, home="w1") == "w1"   # the explicit hint wins


@pytest.mark.parametrize("home", ["w2", "gone", None])
def test_affinity_falls_back_to_least_loaded_when_home_is_dead_unknown_or_missing(home):
    assert SessionAffinity().choose("o", LOADS, home=home) == "w1"


def test_affinity_falls_back_when_home_is_full():
    loads = {"w0": WorkerLoad(4, 4), "w1": WorkerLoad(2, 4)}
    assert SessionAffinity().choose("o", loads, home="w0") == "w1"


@pytest.mark.parametrize("name", PLACEMENT_NAMES)
def test_every_policy_keeps_the_two_argument_call_and_refuses_no_live_worker(name):
    policy: PlacementPolicy = make_placement(name)
    assert policy.name == name
    assert policy.choose("o", LOADS) in {"w0", "w1"}
    with pytest.raises(RuntimeError, match="no live worker"):
        policy.choose("o", {"w2": WorkerLoad(0, 4, alive=False)}, home="w2")


def test_factory_knows_every_name():
    assert set(PLACEMENT_NAMES) == {"least_loaded", "spread", "pack", "affinity"}
    assert isinstance(make_placement("affinity"), SessionAffinity)
    with pytest.raises(ValueError, match="unknown placement policy 'nope'"):
        make_placement("nope")
