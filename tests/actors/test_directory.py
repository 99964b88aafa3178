"""The directory contract, against a real redis-server."""
import os
import threading
import time
import uuid

import pytest

from actors.directory import (DirectoryEntry, DirectoryError, DirectoryUnavailableError, DirectoryVersionError,
                              RedisDirectory, StaleEpochError, Tier, UnknownEntryError)
from actors.redis_server import EmbeddedRedis, free_port


@pytest.fixture
def d(redis_url):
    return RedisDirectory(redis_url, namespace=f"t{uuid.uuid4().hex[:8]}")


def test_register_get_entries_snapshot(d):
    d.register(DirectoryEntry("a", "w0"), request={"prompt": [1, 2]})
    d.register(DirectoryEntry("b", "w1", version=3))
    with pytest.raises(DirectoryError):
        d.register(DirectoryEntry("a", "w0"))
    assert d.get("a").worker_id == "w0" and d.get("zz") is None
    assert d.request_of("a") == {"prompt": [1, 2]}
    assert d.ledger_snapshot() == {"a": 0, "b": 3}
    d.remove("b")
    assert [e.owner_id for e in d.entries()] == ["a"]


def test_cas_commit_rejects_stale_epoch_and_version(d):
    old = d.acquire_epoch()
    d.register(DirectoryEntry("a", "w0", epoch=old))
    assert d.commit("a", old, 0) == 1
    with pytest.raises(DirectoryVersionError):
        d.commit("a", old, 0)                      # duplicate commit
    new = d.acquire_epoch()                        # a new scheduler took over
    with pytest.raises(StaleEpochError):
        d.commit("a", old, 1)
    with pytest.raises(StaleEpochError):
        d.move("a", old, "w9")
    assert d.get("a").version == 1 and d.get("a").worker_id == "w0"
    assert d.commit("a", new, 1) == 2
    with pytest.raises(UnknownEntryError):
        d.commit("ghost", new, 0)


def test_concurrent_commits_exactly_one_wins(redis_url, d):
    epoch = d.acquire_epoch()
    d.register(DirectoryEntry("a", "w0"))
    results = []
    barrier = threading.Barrier(8)

    def worker():
        mine = RedisDirectory(redis_url, namespace=d.ns)
        barrier.wait()
        try:
            results.append(mine.commit("a", epoch, 0))
        except DirectoryVersionError:
            results.append("lost")

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(1) == 1 and results.count("lost") == 7
    assert d.get("a").version == 1


def test_commit_many_one_round_trip(d):
    epoch = d.acquire_epoch()
    for o in "abc":
        d.register(DirectoryEntry(o, "w0"))
    out = d.commit_many([("a", 0), ("b", 5), ("c", 0)], epoch)
    assert out[0] == 1 and isinstance(out[1], DirectoryVersionError) and out[2] == 1


def test_payload_before_metadata(d):
    epoch = d.acquire_epoch()
    d.register(DirectoryEntry("a", "w0"))
    key = d.spill("a", epoch, 0, b"state-v0")
    assert d.get("a").tier is Tier.STORE and d.get_payload(d.get("a").payload_key) == b"state-v0"
    d.commit("a", epoch, 0)
    # crash between the two steps: the payload of v1 is written, the entry is not moved
    d.put_payload("a", 1, b"state-v1")
    entry = d.get("a")
    assert entry.payload_key == key and d.get_payload(entry.payload_key) == b"state-v0"   # no dangling entry
    with pytest.raises(DirectoryError):
        d.point_to_payload("a", epoch, 1, d.payload_key("a", 7))     # never points at a missing payload
    with pytest.raises(DirectoryVersionError):
        d.point_to_payload("a", epoch, 0, d.payload_key("a", 1))     # version must match
    d.point_to_payload("a", epoch, 1, d.payload_key("a", 1))
    assert d.get_payload(d.get("a").payload_key) == b"state-v1"


def test_token_log_and_heartbeats(d):
    d.append_tokens({"a": [1, 2], "b": []})
    d.append_tokens({"a": [3]})
    assert d.tokens("a") == [1, 2, 3] and d.tokens("b") == []
    d.heartbeat("w0", 0.3)
    d.heartbeat("w1", 30)
    assert d.live_workers() == {"w0", "w1"}
    time.sleep(0.5)
    assert d.live_workers() == {"w1"}


def test_unreachable_url_names_it():
    url = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(DirectoryUnavailableError, match=url.replace("/", ".")):
        RedisDirectory(url, timeout_s=0.5)


def test_redis_restart_mid_run_never_commits_silently():
    with EmbeddedRedis() as server:
        d = RedisDirectory(server.url, namespace="r")
        epoch = d.acquire_epoch()
        d.register(DirectoryEntry("a", "w0"))
        d.commit("a", epoch, 0)
        server.restart()                     # persistence off: every key is gone
        for _ in range(3):                   # first call may see the dropped connection
            try:
                d.ping()
                break
            except DirectoryUnavailableError:
                continue
        with pytest.raises(UnknownEntryError):
            d.commit("a", epoch, 1)          # vanished entry: rejected, never re-created
        assert d.get("a") is None
    with pytest.raises(DirectoryUnavailableError):
        d.commit("a", epoch, 1)              # server gone: a clear error


def test_embedded_redis_stops_its_process():
    server = EmbeddedRedis()
    pid = server.pid
    server.stop()
    time.sleep(0.05)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
