"""The directory contract (StateDirectory): fenced CAS commits, moves, spills, token logs,
liveness. Each test runs against a real redis-server (RedisDirectory, an integration test) and
the in-memory fake (InMemoryDirectory, a unit test: no Ray, no Redis), so the fake cannot drift."""
import inspect
import pickle
import time
import uuid

import msgpack
import pytest

from actors.directory import (DirectoryEntry, DirectoryUnavailableError, DirectoryVersionError, DuplicateEntryError,
                              MissingPayloadError, RedisDirectory, StaleEpochError, Tier, UnknownEntryError)
from actors.memory_directory import InMemoryDirectory
from actors.state_directory import StateDirectory


@pytest.fixture(params=[pytest.param("redis", marks=pytest.mark.integration), "memory"])
def d(request):
    """Each contract test runs against both implementations."""
    if request.param == "memory":
        yield InMemoryDirectory(namespace="m")
        return
    directory = RedisDirectory(request.getfixturevalue("redis_url"), namespace=f"t{uuid.uuid4().hex[:8]}")
    yield directory
    directory.close()


def test_both_implement_the_protocol_with_its_signatures():
    members = [n for n, v in vars(StateDirectory).items() if not n.startswith("_") and callable(v)]
    assert {"register", "commit_many", "move", "resync", "assert_epoch", "heartbeat", "live_workers"} <= set(members)
    for impl in (RedisDirectory, InMemoryDirectory):
        for name in members:
            want = inspect.signature(getattr(StateDirectory, name))
            assert inspect.signature(getattr(impl, name)) == want, (impl.__name__, name)
        assert isinstance(impl.where, property)
    assert isinstance(InMemoryDirectory(), StateDirectory)


def test_entry_round_trips_through_msgpack():
    e = DirectoryEntry("a", tenant_id="t", worker_id="w0", slot=3, tier=Tier.HOST, version=2, epoch=5,
                       payload_key="k")
    assert DirectoryEntry.from_dict(msgpack.unpackb(msgpack.packb(e.to_dict()))) == e
    with pytest.raises(ValueError):
        DirectoryEntry("a", version=-1)


def test_register_get_entries_remove(d):
    epoch = d.acquire_epoch()
    d.register(DirectoryEntry("a", tenant_id="t1", worker_id="w0", slot=2, epoch=epoch), request={"prompt": [1, 2]})
    d.register(DirectoryEntry("b", worker_id="w1", version=3, epoch=epoch))
    with pytest.raises(DuplicateEntryError):
        d.register(DirectoryEntry("a", worker_id="w9", epoch=epoch))
    with pytest.raises(StaleEpochError):
        d.register(DirectoryEntry("c", worker_id="w0", epoch=epoch - 1))    # a stale scheduler
    a = d.get("a")
    assert (a.worker_id, a.slot, a.tenant_id, a.tier, a.epoch) == ("w0", 2, "t1", Tier.DEVICE, epoch)
    assert d.get("zz") is None and d.request_of("a") == {"prompt": [1, 2]}
    d.append_tokens({"b": [7]})
    d.spill("b", epoch, 3, b"state")
    with pytest.raises(StaleEpochError):
        d.remove("b", epoch - 1)
    assert d.remove("b", epoch) and not d.remove("b", epoch)
    assert [e.owner_id for e in d.entries()] == ["a"]
    assert d.tokens("b") == [] and d.get_payload(d.payload_key("b", 3)) is None   # nothing left behind


def test_ledger_snapshot_equals_registered_versions(d):
    epoch = d.acquire_epoch()
    versions = {f"o{i}": i for i in range(5)}
    for owner_id, v in versions.items():
        d.register(DirectoryEntry(owner_id, worker_id="w0", version=v, epoch=epoch))
    d.commit("o1", epoch, 1)
    assert d.ledger_snapshot() == versions | {"o1": 2}


def test_cas_commit_rejects_stale_epoch_and_version(d):
    old = d.acquire_epoch()
    d.register(DirectoryEntry("a", worker_id="w0", epoch=old))
    assert d.commit("a", old, 0) == 1
    with pytest.raises(DirectoryVersionError):
        d.commit("a", old, 0)                      # duplicate commit
    with pytest.raises(DirectoryVersionError):
        d.commit("a", old, 5)                      # from the future
    new = d.acquire_epoch()                        # a new scheduler took over
    assert d.current_epoch() == new
    with pytest.raises(StaleEpochError):
        d.commit("a", old, 1)
    assert d.get("a").version == 1 and d.get("a").epoch == old    # rejected commits changed nothing
    assert d.commit("a", new, 1) == 2 and d.get("a").epoch == new
    with pytest.raises(UnknownEntryError):
        d.commit("ghost", new, 0)
    assert d.get("ghost") is None                  # never created by a commit


def test_commit_many_is_per_owner(d):
    epoch = d.acquire_epoch()
    for owner_id in "abc":
        d.register(DirectoryEntry(owner_id, worker_id="w0", epoch=epoch))
    out = d.commit_many([("a", 0), ("b", 5), ("c", 0), ("zz", 0)], epoch)
    assert out[0] == 1 and out[2] == 1
    assert isinstance(out[1], DirectoryVersionError) and isinstance(out[3], UnknownEntryError)
    assert d.ledger_snapshot() == {"a": 1, "b": 0, "c": 1}


def test_move_is_fenced_and_keeps_the_version(d):
    old = d.acquire_epoch()
    d.register(DirectoryEntry("a", worker_id="w0", slot=0, epoch=old))
    d.commit("a", old, 0)
    assert d.move("a", old, "w1", 4, Tier.HOST) == 1
    e = d.get("a")
    assert (e.worker_id, e.slot, e.tier, e.version) == ("w1", 4, Tier.HOST, 1)
    with pytest.raises(DirectoryVersionError):
        d.move("a", old, "w2", 0, Tier.DEVICE, expected_version=0)
    with pytest.raises(MissingPayloadError):
        d.move("a", old, "", -1, Tier.STORE, d.payload_key("a", 1))     # never point at a missing payload
    with pytest.raises(ValueError):
        d.move("a", old, "", -1, Tier.STORE)
    new = d.acquire_epoch()
    with pytest.raises(StaleEpochError):
        d.move("a", old, "w9", 0, Tier.DEVICE)
    assert d.get("a") == e                                              # rejected moves changed nothing
    d.move("a", new, "w2", 1, Tier.DEVICE)
    assert d.get("a").worker_id == "w2" and d.get("a").epoch == new


def test_payload_before_metadata(d):
    epoch = d.acquire_epoch()
    d.register(DirectoryEntry("a", worker_id="w0", epoch=epoch))
    key0 = d.spill("a", epoch, 0, b"state-v0")
    e = d.get("a")
    assert (e.tier, e.worker_id, e.payload_key) == (Tier.STORE, "", key0) and d.get_payload(key0) == b"state-v0"
    d.commit("a", epoch, 0)
    # crash between the two steps: the payload of v1 is written, the entry never moved
    key1 = d.put_payload("a", 1, b"state-v1")
    e = d.get("a")
    assert e.payload_key == key0 and e.tier is Tier.STORE and d.get_payload(e.payload_key) == b"state-v0"
    with pytest.raises(MissingPayloadError):
        d.point_to_payload("a", epoch, 1, d.payload_key("a", 7))
    with pytest.raises(DirectoryVersionError):
        d.point_to_payload("a", epoch, 0, key1)         # the entry is at v1 now
    assert d.get("a") == e
    d.point_to_payload("a", epoch, 1, key1)             # the recovery finishes step 2
    assert d.get_payload(d.get("a").payload_key) == b"state-v1"
    assert d.get_payload(key0) is None                  # lower versions are garbage-collected


def test_spill_of_a_stale_version_leaves_the_entry(d):
    epoch = d.acquire_epoch()
    d.register(DirectoryEntry("a", worker_id="w0", slot=1, epoch=epoch))
    d.commit("a", epoch, 0)
    with pytest.raises(DirectoryVersionError):
        d.spill("a", epoch, 0, b"old")
    e = d.get("a")
    assert (e.tier, e.worker_id, e.slot, e.payload_key) == (Tier.DEVICE, "w0", 1, "")


def test_token_log(d):
    d.append_tokens({"a": [1, 2], "b": []})
    d.append_tokens({"a": [3]})
    assert d.tokens("a") == [1, 2, 3] and d.tokens("b") == []


def test_heartbeats_expire(d):
    d.heartbeat("w0", 0.05)
    d.heartbeat("w1", 300)
    deadline = time.monotonic() + 10
    while "w0" in d.live_workers():          # Redis expires the key (no claim on how fast)
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert d.live_workers() == {"w1"}
    d.heartbeat("w0", 300)
    assert d.live_workers() == {"w0", "w1"}


def test_start_turn_and_resync_are_fenced(d):
    epoch = d.acquire_epoch()
    d.register(DirectoryEntry("a", worker_id="w0", epoch=epoch), request={"prompt": (1,)})
    d.commit("a", epoch, 0)
    d.commit("a", epoch, 1)
    d.append_tokens({"a": [5, 6]})
    assert d.start_turn("a", epoch, {"prompt": (1, 2)}) == 2
    assert d.request_of("a") == {"prompt": [1, 2]} and d.tokens("a") == []       # msgpack: lists
    with pytest.raises(DirectoryVersionError):
        d.start_turn("a", epoch, {}, version=3)                  # never forward
    assert d.start_turn("a", epoch, {"prompt": [9]}, version=1) == 1 and d.get("a").version == 1
    with pytest.raises(UnknownEntryError):
        d.start_turn("zz", epoch, {})
    new = d.acquire_epoch()
    with pytest.raises(StaleEpochError):
        d.start_turn("a", epoch, {})
    row = (DirectoryEntry("b", worker_id="w1", version=4, epoch=new), {"prompt": [3]}, [7, 8])
    with pytest.raises(StaleEpochError):
        d.resync([row], epoch)
    assert d.get("b") is None
    d.resync([row], new)
    assert d.get("b") == row[0] and d.request_of("b") == {"prompt": [3]} and d.tokens("b") == [7, 8]
    assert d.ledger_snapshot() == {"a": 1, "b": 4}


def test_assert_epoch_raises_the_counter_back_only(d):
    epoch = d.acquire_epoch()
    assert d.assert_epoch(epoch + 5) == epoch and d.current_epoch() == epoch + 5
    assert d.assert_epoch(1) == epoch + 5 and d.current_epoch() == epoch + 5
    assert d.acquire_epoch() == epoch + 6


def test_refusals_survive_pickling(d):
    epoch = d.acquire_epoch()
    d.register(DirectoryEntry("a", worker_id="w0", epoch=epoch))
    [refused] = d.commit_many([("a", 3)], epoch)
    back = pickle.loads(pickle.dumps(refused))
    assert type(back) is DirectoryVersionError and back.stored == 0 and str(back) == str(refused)


def test_memory_directory_lost_data_and_outage():
    d = InMemoryDirectory()
    epoch = d.acquire_epoch()
    d.register(DirectoryEntry("a", worker_id="w0", epoch=epoch))
    d.lose_data()                                     # as a Redis restarted empty
    assert d.current_epoch() == 0 and d.get("a") is None
    for op in (lambda: d.commit("a", epoch, 0), lambda: d.move("a", epoch, "w1", 0, Tier.DEVICE)):
        with pytest.raises(UnknownEntryError):
            op()
    d.reachable = False
    with pytest.raises(DirectoryUnavailableError, match="memory://"):
        d.commit("a", epoch, 0)
