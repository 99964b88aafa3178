"""RedisDirectory against a real redis-server: what only Redis shows (concurrent clients, one
script call per commit, unreachable URLs, a restart that drops every key). The contract both
directories keep is tests/actors/test_directory_contract.py."""
import re
import threading
import uuid

import pytest

from actors.directory import (DirectoryEntry, DirectoryError, DirectoryUnavailableError, DirectoryVersionError,
                              RedisDirectory, Tier, UnknownEntryError)
from actors.redis_server import EmbeddedRedis, free_port


@pytest.fixture
def d(redis_url):
    directory = RedisDirectory(redis_url, namespace=f"t{uuid.uuid4().hex[:8]}")
    yield directory
    directory.close()


def test_concurrent_commits_exactly_one_wins(redis_url, d):
    epoch = d.acquire_epoch()
    d.register(DirectoryEntry("a", worker_id="w0", epoch=epoch))
    clients = [RedisDirectory(redis_url, namespace=d.ns) for _ in range(8)]
    results: list = []
    barrier = threading.Barrier(len(clients))

    def race(client: RedisDirectory) -> None:
        barrier.wait()
        try:
            results.append(client.commit("a", epoch, 0))
        except DirectoryVersionError:
            results.append("lost")

    threads = [threading.Thread(target=race, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results, key=str) == [1] + ["lost"] * 7
    assert d.get("a").version == 1


def _script_calls(d) -> int:
    stats = d.r.info("commandstats")
    return sum(stats.get(k, {}).get("calls", 0) for k in ("cmdstat_evalsha", "cmdstat_eval"))


def test_a_commit_is_one_script_call(d):
    epoch = d.acquire_epoch()
    d.register(DirectoryEntry("a", worker_id="w0", epoch=epoch))
    before = _script_calls(d)
    for v in range(200):
        d.commit("a", epoch, v)
    assert d.get("a").version == 200
    assert _script_calls(d) - before == 200          # one atomic round trip each


def test_unreachable_url_names_it():
    url = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(DirectoryUnavailableError, match=re.escape(f"cannot reach Redis at {url}")):
        RedisDirectory(url)
    with pytest.raises(DirectoryUnavailableError, match="http://x"):
        RedisDirectory("http://x")


def test_redis_restart_mid_run_never_commits_silently():
    with EmbeddedRedis() as server:
        d = RedisDirectory(server.url, namespace="r")
        epoch = d.acquire_epoch()
        d.register(DirectoryEntry("a", worker_id="w0", epoch=epoch))
        d.commit("a", epoch, 0)
        d.spill("a", epoch, 1, b"s")
        server.restart()                             # persistence off: every key is gone
        for attempt in range(3):                     # a call may see the dropped connection; then it reconnects
            try:
                assert d.get("a") is None
                break
            except DirectoryUnavailableError:
                assert attempt < 2
        for op in (lambda: d.commit("a", epoch, 1), lambda: d.move("a", epoch, "w1", 0, Tier.DEVICE),
                   lambda: d.point_to_payload("a", epoch, 1, d.put_payload("a", 1, b"s"))):
            with pytest.raises(UnknownEntryError):
                op()                                 # vanished entry: rejected, never re-created
        assert d.get("a") is None and d.entries() == [] and d.ledger_snapshot() == {}
    where = server.url.replace(f":{server.password}@", "")      # named, without its password
    with pytest.raises(DirectoryUnavailableError, match=re.escape(where)) as err:
        d.commit("a", epoch, 1)                      # server gone: a clear error
    assert server.password not in str(err.value)
    with pytest.raises(DirectoryError):
        d.get("a")
