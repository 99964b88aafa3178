import pytest

from rwttt_ray.core.errors import (DuplicateCommitError, DuplicateOwnerError, StaleVersionError,
                                   UnknownOwnerError, WriteInProgressError)
from rwttt_ray.core.ledger import VersionLedger
from rwttt_ray.core.types import Effect
from tests.factories import make_group, make_tag


def test_register_commit_rollback():
    led = VersionLedger()
    led.register("a")
    assert led.committed("a") == 0 and "a" in led and len(led) == 1
    assert led.begin_write("a", 0) == 1
    assert led.pending("a") == 1 and led.committed("a") == 0   # dirty until commit
    assert led.commit("a", 1) == 1
    assert led.committed("a") == 1 and led.pending("a") is None
    led.begin_write("a", 1)
    led.rollback("a")
    assert led.committed("a") == 1 and led.pending("a") is None
    assert [(r.from_version, r.to_version) for r in led.writes_of("a")] == [(0, 1)]


def test_named_errors_change_nothing():
    led = VersionLedger()
    led.register("a")
    with pytest.raises(DuplicateOwnerError):
        led.register("a")
    with pytest.raises(UnknownOwnerError):
        led.committed("zz")
    with pytest.raises(StaleVersionError) as err:
        led.begin_write("a", 3)
    assert err.value.expected == 3 and err.value.committed == 0
    with pytest.raises(DuplicateCommitError):
        led.commit("a", 1)                      # nothing pending
    led.begin_write("a", 0)
    with pytest.raises(WriteInProgressError):
        led.begin_write("a", 0)
    led.commit("a", 1)
    with pytest.raises(DuplicateCommitError):
        led.commit("a", 1)                      # replayed commit
    assert led.snapshot() == {"a": 1} and len(led.history) == 1


def test_fork_reset_restore():
    led = VersionLedger()
    led.register("a")
    for v in range(3):
        led.begin_write("a", v)
        led.commit("a", v + 1)
    assert led.fork("a", "b") == 3 and led.committed("b") == 3
    led.reset("a", 1)
    assert led.committed("a") == 1
    with pytest.raises(ValueError):
        led.reset("a", 2)
    again = VersionLedger.restore(led.snapshot())
    assert again.snapshot() == {"a": 1, "b": 3}


def test_group_helpers_all_or_nothing():
    led = VersionLedger()
    for o in "abc":
        led.register(o)
    good = make_group(*(make_tag(owner_id=o, effect=Effect.WRITE) for o in "abc"))
    bad = make_group(make_tag(owner_id="a", effect=Effect.WRITE), make_tag(owner_id="b", effect=Effect.WRITE, expected_version=5))
    with pytest.raises(StaleVersionError):
        led.begin_group(bad)
    assert all(led.pending(o) is None for o in "abc")     # nothing begun
    led.begin_group(good)
    led.commit_group(good)
    assert led.snapshot() == {"a": 1, "b": 1, "c": 1}
    led.begin_group(make_group(*(make_tag(owner_id=o, effect=Effect.WRITE, expected_version=1) for o in "ab")))
    led.rollback_group(good)
    assert led.snapshot() == {"a": 1, "b": 1, "c": 1} and led.pending("a") is None
