"""Through the actors, on a real local Ray cluster and a real redis-server: per-owner outputs,
states and versions equal the sequential reference, across spill, migration, a killed worker
and a restarted scheduler."""
import time

import numpy as np
import pytest
import ray

from actors.directory import RedisDirectory, DirectoryUnavailableError
from actors.redis_server import free_port
from tests.ttt.oracle import make_requests

pytestmark = pytest.mark.ray


def wait_for_progress(cluster, owner_id, tokens=8, timeout_s=60):
    """Block until the owner has generated `tokens`, and is not finished (a fault lands mid-run)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        res = ray.get(cluster.scheduler.poll.remote(owner_id, 0))
        assert not res["finished"], "finished before the fault was injected"
        if len(res["tokens"]) >= tokens:
            return res
        time.sleep(0.01)
    raise AssertionError("no progress")


def check(reference, reqs, out, cluster=None, states=True):
    for req in reqs:
        want, got = reference.run(req), out[req.owner_id]
        assert got["error"] is None, got["error"]
        assert got["tokens"] == want.tokens, f"{req.owner_id}: tokens differ"
        assert got["version"] == want.num_writes
        if cluster is not None and states:
            deltas = cluster.deltas(req.owner_id, got["worker_id"])
            assert (deltas is None) == (want.deltas is None)
            for a, b in zip(deltas or [], want.deltas or []):
                np.testing.assert_allclose(a, b.numpy(), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("workers", [1, 2])
def test_actors_match_reference(make_cluster, reference, workers):
    cluster = make_cluster(workers=workers)
    reqs = make_requests(6, prompt_lens=[4, 13, 21], gen_lens=[18, 9], seed=workers)
    out = cluster.wait(cluster.submit(reqs))
    check(reference, reqs, out, cluster)
    assert len({r["worker_id"] for r in out.values()}) == workers
    stats = cluster.stats()
    assert stats["calls"] < sum(len(r.prompt) + r.max_new_tokens for r in reqs) / 4   # many rounds per call
    assert RedisDirectory(cluster.redis_url, cluster.namespace).ledger_snapshot() == stats["ledger"]


def test_a_burst_of_arrivals_starts_in_one_phase(make_cluster, reference, config):
    """Requests arriving 30 ms apart at an idle worker, admit window 400 ms: the first phase
    waits for the burst, so all four prompts (one chunk each) WRITE in it and the rest of the
    generation (under a chunk) takes one more phase: two worker calls, outputs as the reference."""
    cluster = make_cluster(admit_window_ms=400.0)
    reqs = make_requests(4, prompt_lens=[8], gen_lens=[6], seed=5)
    before = cluster.stats()["calls"]
    ids = []
    for req in reqs:
        ids += cluster.submit([req])
        time.sleep(0.03)
    out = cluster.wait(ids)
    check(reference, reqs, out, cluster)
    assert cluster.stats()["calls"] - before == 2


def test_more_owners_than_slots_spill_and_reload(make_cluster, reference, config):
    cluster = make_cluster(max_states_per_worker=2, quantum_steps=3, rounds_per_call=4)
    reqs = make_requests(5, prompt_lens=[6, 11], gen_lens=[15, 10], seed=11)
    out = cluster.wait(cluster.submit(reqs))
    check(reference, reqs, out, cluster)
    wstats = ray.get(next(iter(cluster.workers.values())).stats.remote())
    assert wstats["spills"] > 0 and wstats["reloads"] > 0


def test_forced_migration_mid_generation(make_cluster, reference):
    cluster = make_cluster(workers=2, rounds_per_call=4)
    reqs = make_requests(2, prompt_lens=[9], gen_lens=[120], seed=5)
    ids = cluster.submit(reqs)
    src = wait_for_progress(cluster, ids[0])["worker_id"]
    dst = next(n for n in cluster.worker_names if n != src)
    ray.get(cluster.scheduler.migrate.remote(ids[0], dst))
    out = cluster.wait(ids)
    assert out[ids[0]]["worker_id"] == dst
    check(reference, reqs, out, cluster)


def test_killed_worker_loses_no_request(make_cluster, reference):
    cluster = make_cluster(workers=2, rounds_per_call=4)
    reqs = make_requests(4, prompt_lens=[7, 12], gen_lens=[150], seed=7)
    ids = cluster.submit(reqs)
    victim = wait_for_progress(cluster, ids[0])["worker_id"]
    cluster.kill_worker(victim)
    out = cluster.wait(ids)
    assert all(r["worker_id"] != victim for r in out.values())
    check(reference, reqs, out, cluster)


def test_restarted_scheduler_rebuilds_ledger(make_cluster, reference):
    cluster = make_cluster(workers=2, rounds_per_call=4)
    reqs = make_requests(4, prompt_lens=[5, 10], gen_lens=[150], seed=9)
    ids = cluster.submit(reqs)
    wait_for_progress(cluster, ids[0], tokens=12)
    directory = RedisDirectory(cluster.redis_url, cluster.namespace)
    before = directory.ledger_snapshot()
    old_epoch = cluster.stats()["epoch"]
    cluster.restart_scheduler()
    rebuilt = cluster.stats()
    assert rebuilt["epoch"] > old_epoch
    for owner_id, version in before.items():          # nothing lost: at least what was committed
        assert rebuilt["ledger"][owner_id] >= version
    out = cluster.wait(ids)
    check(reference, reqs, out, cluster)              # nothing repeated: versions == sequential WRITEs
    assert directory.ledger_snapshot() == cluster.stats()["ledger"]


def test_stale_scheduler_cannot_commit(make_cluster, reference):
    cluster = make_cluster(workers=1, rounds_per_call=4)
    reqs = make_requests(2, prompt_lens=[6], gen_lens=[150], seed=13)
    ids = cluster.submit(reqs)
    wait_for_progress(cluster, ids[0])
    directory = RedisDirectory(cluster.redis_url, cluster.namespace)
    directory.acquire_epoch()                       # another scheduler takes over the fence
    with pytest.raises(ray.exceptions.RayTaskError, match="stale"):
        cluster.wait(ids, timeout_s=60)
    old = cluster.scheduler
    assert ray.get(old.stats.remote())["stale"]
    frozen = directory.ledger_snapshot()
    time.sleep(0.2)
    assert directory.ledger_snapshot() == frozen    # the stale scheduler commits nothing more
    cluster.restart_scheduler()                     # a new scheduler rebuilds and finishes the work
    out = cluster.wait(ids)
    check(reference, reqs, out, cluster)


def test_redis_unreachable_at_start_names_the_url(ray_session, config):
    from actors.cluster import RwtttCluster

    url = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(DirectoryUnavailableError, match="127.0.0.1"):
        RwtttCluster(config=config.replace(redis_url=url))


def test_redis_restarted_mid_run_recovers_without_double_commit(make_cluster, reference):
    from actors.redis_server import EmbeddedRedis

    server = EmbeddedRedis()
    try:
        cluster = make_cluster(workers=1, redis_url=server.url, rounds_per_call=4)
        reqs = make_requests(2, prompt_lens=[6], gen_lens=[150], seed=17)
        ids = cluster.submit(reqs)
        wait_for_progress(cluster, ids[0])
        server.restart()
        out = cluster.wait(ids)
        for req in reqs:
            got = out[req.owner_id]
            if got["error"] is not None:                      # failed with a clear error ...
                assert "Redis" in got["error"] or "redis" in got["error"]
            else:                                             # ... or recovered, exactly
                want = reference.run(req)
                assert got["tokens"] == want.tokens and got["version"] == want.num_writes
    finally:
        server.stop()


def test_graceful_drain_spills_sessions_to_the_store(make_cluster, reference):
    """Shutdown: running turns end, new ones are refused (503), and each session's committed
    state is in the shared store (payload + directory entry), equal to the sequential run."""

    from actors.directory import Tier
    from rwttt_ray.core.request import Request
    from rwttt_ray.core.tenancy import DrainingError
    from rwttt_ray.ttt import state_io

    cluster = make_cluster(workers=1, rounds_per_call=4)
    s = cluster.scheduler
    turns = [r.prompt for r in make_requests(2, prompt_lens=[11, 6], gen_lens=[1], seed=21)]
    sid = ray.get(s.open_session.remote("acme"))
    for prompt in turns:
        ray.get(s.complete.remote("acme", sid, list(prompt), 7))
        while not ray.get(s.next_tokens.remote("acme", sid, 0, 30.0))["finished"]:
            pass
    busy = ray.get(s.complete.remote("acme", None, [5, 6, 7], 400))["owner_id"]   # a one-shot still running
    summary = ray.get(s.drain.remote(0.5))
    assert summary["spilled"] == 1 and summary["stopped"] == 1
    assert ray.get(s.next_tokens.remote("acme", busy, 0, 5.0))["error"] == "the server is shutting down"
    with pytest.raises(ray.exceptions.RayTaskError) as err:
        ray.get(s.complete.remote("acme", sid, [9, 9], 3))
    assert isinstance(err.value.cause, DrainingError)
    directory = RedisDirectory(cluster.redis_url, cluster.namespace)
    entry = directory.get(sid)
    snap = state_io.loads(directory.get_payload(entry.payload_key))
    want = reference.run_turns([Request("s", tuple(p), 7) for p in turns])
    assert entry.tier is Tier.STORE and entry.version == snap.version == want[-1].num_writes > 0
    dws = [snap.tensors[k].t() for k in sorted(k for k in snap.tensors if k.startswith("dw."))]
    for a, b in zip(dws, want[-1].deltas, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-4, rtol=1e-4)
    assert snap.generated == want[-1].tokens


def test_new_service_adopts_spilled_sessions(make_cluster, reference):
    """Drain one service, start another on the same Redis namespace: it adopts the spilled session
    for its tenant (another tenant still sees nothing), and a third turn continues the stream
    exactly like one sequential run over all three turns."""
    from rwttt_ray.core.request import Request
    from rwttt_ray.core.tenancy import NotFoundError

    def turn(s, sid, prompt):
        ray.get(s.complete.remote("acme", sid, list(prompt), 6))
        while not (res := ray.get(s.next_tokens.remote("acme", sid, 0, 30.0)))["finished"]:
            pass
        return res["tokens"]

    prompts = [r.prompt for r in make_requests(3, prompt_lens=[10, 7, 5], gen_lens=[1], seed=23)]
    old = make_cluster(workers=1, rounds_per_call=4, namespace="rwttt-adopt-test")
    sid = ray.get(old.scheduler.open_session.remote("acme"))
    for prompt in prompts[:2]:
        turn(old.scheduler, sid, prompt)
    assert ray.get(old.scheduler.drain.remote(1.0))["spilled"] == 1
    old.shutdown()
    new = make_cluster(workers=1, rounds_per_call=4, namespace="rwttt-adopt-test")
    s = new.scheduler
    want = reference.run_turns([Request("s", tuple(p), 6) for p in prompts])
    assert ray.get(s.session_info.remote("acme", sid))["version"] == want[1].num_writes
    with pytest.raises(ray.exceptions.RayTaskError) as err:
        ray.get(s.session_info.remote("other", sid))
    assert isinstance(err.value.cause, NotFoundError)
    assert turn(s, sid, prompts[2]) == want[2].tokens
    assert ray.get(s.session_info.remote("acme", sid))["version"] == want[2].num_writes
