"""VersionLedger: every method, and every named error leaves the ledger unchanged."""
import pickle

import pytest

from rwttt_ray.core.errors import (ContractError, DuplicateCommitError, DuplicateOwnerError, IllegalGroupError,
                                   StaleVersionError, UnknownOwnerError, WriteInProgressError)
from rwttt_ray.core.ledger import CommitRecord, VersionLedger
from rwttt_ray.core.types import Effect
from tests.factories import make_group, make_tag


def ledger_at(**versions: int) -> VersionLedger:
    return VersionLedger.restore(versions)


def write_group(*owner_ids: str, version: int = 0):
    return make_group(*(make_tag(owner_id=o, effect=Effect.WRITE, expected_version=version) for o in owner_ids))


def state(led: VersionLedger):
    return led.snapshot(), {o: led.pending(o) for o in led.owners()}, list(led.history)


# -- owners ---------------------------------------------------------------------------------
def test_register_contains_len_owners():
    led = VersionLedger()
    led.register("a")
    led.register("b", 4)
    assert "a" in led and "zz" not in led and len(led) == 2
    assert led.owners() == ["a", "b"] and led.committed("b") == 4 and led.pending("a") is None


def test_register_twice_or_negative_is_refused():
    led = ledger_at(a=2)
    with pytest.raises(DuplicateOwnerError):
        led.register("a")
    with pytest.raises(ValueError):
        led.register("b", -1)
    assert led.snapshot() == {"a": 2}


def test_remove_drops_owner_and_pending():
    led = ledger_at(a=0, b=0)
    led.begin_write("a", 0)
    led.remove("a")
    assert "a" not in led and led.owners() == ["b"]
    led.register("a")
    assert led.pending("a") is None     # the old candidate did not survive
    with pytest.raises(UnknownOwnerError):
        led.remove("zz")


@pytest.mark.parametrize("call", ["committed", "pending", "rollback", "remove"])
def test_unknown_owner_is_named(call):
    led = VersionLedger()
    with pytest.raises(UnknownOwnerError, match="unknown owner zz") as err:
        getattr(led, call)("zz")
    assert isinstance(err.value, KeyError) and isinstance(err.value, ContractError)


# -- WRITE ----------------------------------------------------------------------------------
def test_write_is_dirty_until_commit():
    led = ledger_at(a=0)
    assert led.begin_write("a", 0) == 1
    assert led.pending("a") == 1 and led.committed("a") == 0
    assert led.commit("a", 1) == 1
    assert led.committed("a") == 1 and led.pending("a") is None
    assert led.history == [CommitRecord("a", 0, 1, 0)]


def test_begin_write_stale_version_is_named():
    led = ledger_at(a=2)
    with pytest.raises(StaleVersionError, match="owner a: expected version 1, committed version is 2") as err:
        led.begin_write("a", 1)
    assert (err.value.owner_id, err.value.expected, err.value.committed) == ("a", 1, 2)
    assert led.pending("a") is None


def test_stale_version_error_survives_pickling():
    err = pickle.loads(pickle.dumps(StaleVersionError("a", 1, 2)))
    assert (err.owner_id, err.expected, err.committed, str(err)) == ("a", 1, 2, str(StaleVersionError("a", 1, 2)))


def test_second_begin_write_is_refused():
    led = ledger_at(a=0)
    led.begin_write("a", 0)
    with pytest.raises(WriteInProgressError):
        led.begin_write("a", 0)
    assert led.pending("a") == 1 and led.committed("a") == 0


def test_commit_without_pending_write_is_refused():
    led = ledger_at(a=0)
    with pytest.raises(DuplicateCommitError, match="no pending WRITE"):
        led.commit("a", 1)
    assert state(led) == ({"a": 0}, {"a": None}, [])


def test_replayed_commit_is_refused():
    led = ledger_at(a=0)
    led.begin_write("a", 0)
    led.commit("a", 1)
    led.begin_write("a", 1)
    before = state(led)
    with pytest.raises(DuplicateCommitError, match="already committed"):
        led.commit("a", 1)              # the v1 receipt, delivered twice
    assert state(led) == before


def test_commit_of_a_candidate_never_begun_is_stale():
    led = ledger_at(a=0)
    led.begin_write("a", 0)
    before = state(led)
    with pytest.raises(StaleVersionError) as err:
        led.commit("a", 3)
    assert (err.value.expected, err.value.committed) == (2, 0) and state(led) == before


def test_rollback_drops_candidate_only():
    led = ledger_at(a=3)
    led.rollback("a")                   # no-op without a candidate
    led.begin_write("a", 3)
    led.rollback("a")
    assert led.committed("a") == 3 and led.pending("a") is None and led.history == []
    assert led.begin_write("a", 3) == 4     # a retry may begin again


# -- lineage --------------------------------------------------------------------------------
def test_fork_copies_committed_version_not_pending():
    led = ledger_at(a=3)
    led.begin_write("a", 3)
    assert led.fork("a", "b") == 3
    assert led.committed("b") == 3 and led.pending("b") is None and led.pending("a") == 4
    with pytest.raises(DuplicateOwnerError):
        led.fork("a", "b")
    with pytest.raises(UnknownOwnerError):
        led.fork("zz", "c")
    assert "c" not in led


def test_reset_moves_back_and_drops_candidate():
    led = ledger_at(a=3)
    led.begin_write("a", 3)
    led.reset("a", 1)
    assert led.committed("a") == 1 and led.pending("a") is None
    led.reset("a", 1)                   # to the same version: allowed
    for bad in (2, -1):
        with pytest.raises(ValueError):
            led.reset("a", bad)
    assert led.committed("a") == 1


# -- groups ---------------------------------------------------------------------------------
def test_group_begin_commit():
    led = ledger_at(a=0, b=0, c=0)
    group = write_group("a", "b", "c")
    assert led.begin_group(group) == {"a": 1, "b": 1, "c": 1}
    led.commit_group(group)
    assert led.snapshot() == {"a": 1, "b": 1, "c": 1}
    assert [r.owner_id for r in led.history] == ["a", "b", "c"] and [r.seq for r in led.history] == [0, 1, 2]


@pytest.mark.parametrize("tags,error", [
    ((("a", 0), ("b", 5)), StaleVersionError),
    ((("a", 0), ("a", 0)), DuplicateOwnerError),
    ((("a", 0), ("zz", 0)), UnknownOwnerError),
    ((("a", 0), ("c", 0)), WriteInProgressError),
])
def test_begin_group_is_all_or_nothing(tags, error):
    led = ledger_at(a=0, b=0, c=0)
    led.begin_write("c", 0)
    before = state(led)
    group = make_group(*(make_tag(owner_id=o, effect=Effect.WRITE, expected_version=v) for o, v in tags))
    with pytest.raises(error):
        led.begin_group(group)
    assert state(led) == before


def test_begin_group_refuses_a_read_group():
    led = ledger_at(a=0)
    with pytest.raises(IllegalGroupError, match="READ"):
        led.begin_group(make_group(make_tag(owner_id="a")))
    assert led.pending("a") is None


def test_commit_group_changes_all_or_none():
    led = ledger_at(a=0, b=0)
    led.begin_write("a", 0)
    before = state(led)
    with pytest.raises(DuplicateCommitError):
        led.commit_group(write_group("a", "b"))          # b has nothing pending
    with pytest.raises(DuplicateOwnerError):
        led.commit_group(write_group("a", "a"))
    assert state(led) == before


def test_rollback_group_drops_every_candidate_and_skips_removed_owners():
    led = ledger_at(a=1, b=1, c=1)
    group = write_group("a", "b", "c", version=1)
    led.begin_group(group)
    led.remove("c")
    led.rollback_group(group)
    assert led.snapshot() == {"a": 1, "b": 1} and led.pending("a") is None and led.pending("b") is None


# -- audit and rebuild ----------------------------------------------------------------------
def test_writes_of_lists_an_owners_commits_in_order():
    led = ledger_at(a=0, b=0)
    for owner_id, version in [("a", 0), ("b", 0), ("a", 1)]:
        led.commit(owner_id, led.begin_write(owner_id, version))
    assert [(r.from_version, r.to_version, r.seq) for r in led.writes_of("a")] == [(0, 1, 0), (1, 2, 2)]
    assert led.writes_of("zz") == []


def test_snapshot_and_restore_rebuild_committed_versions_only():
    led = ledger_at(a=2, b=0)
    led.begin_write("b", 0)
    snap = led.snapshot()
    assert snap == {"a": 2, "b": 0}
    snap["a"] = 9                       # a copy, not a view
    again = VersionLedger.restore(led.snapshot())
    assert again.snapshot() == {"a": 2, "b": 0} and again.pending("b") is None and again.history == []
    assert VersionLedger.restore([("x", 1)]).committed("x") == 1
    with pytest.raises(DuplicateOwnerError):
        VersionLedger.restore([("x", 1), ("x", 2)])
