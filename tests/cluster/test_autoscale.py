"""Autoscaling on a real local Ray cluster: under a load ramp the scheduler starts workers, and as
the load falls it drains them (owners migrate between phases, then the worker stops); every
owner, moved or not, ends with the sequential reference's tokens, version and fast weights."""
import time
from dataclasses import replace

import pytest
import ray


from tests.cluster.test_cluster import check
from tests.ttt.oracle import make_requests

pytestmark = pytest.mark.ray


def poll_stats(cluster, until, timeout_s=240.0, interval_s=0.2) -> dict:
    """The scheduler's stats once `until(stats)` holds (bounded wait)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        stats = cluster.stats()
        if until(stats):
            return stats
        time.sleep(interval_s)
    raise AssertionError(f"condition not reached in {timeout_s}s; last stats: {stats['workers']}, "
                         f"{stats['scaling']}")


def current(cluster, owner_ids) -> dict:
    """Each owner's result as the scheduler has it now (worker after any migration)."""
    return {o: ray.get(cluster.scheduler.poll.remote(o, 0)) for o in owner_ids}


def ramp_up(cluster, num_workers: int, num_active: int = 8, timeout_s: float = 240.0) -> list:
    """Keep `num_active` owners generating (submitting new ones as others finish) until the
    scheduler runs `num_workers` workers; returns every request submitted."""
    reqs, deadline = [], time.monotonic() + timeout_s
    while len(cluster.stats()["workers"]) < num_workers:
        assert time.monotonic() < deadline, f"never reached {num_workers} workers: {cluster.stats()['scaling']}"
        states = current(cluster, [r.owner_id for r in reqs])
        new = [replace(make_requests(1, prompt_lens=[5 + len(reqs) % 7], gen_lens=[100], seed=len(reqs) + i)[0],
                       owner_id=f"r{len(reqs) + i}")
               for i in range(num_active - sum(not s["finished"] for s in states.values()))]
        cluster.submit(new)
        reqs += new
        time.sleep(0.5)
    return reqs


def test_worker_count_rises_and_falls_with_the_load(make_cluster, reference, config):
    cluster = make_cluster(max_states_per_worker=2, min_workers=1, max_workers=3,
                           rounds_per_call=4, scale_interval_s=0.25,
                           autoscale=dict(upscale_after_steps=2, downscale_after_idle_steps=4,
                                          high_occupancy=1.0, low_occupancy=0.75))
    light = make_requests(1, prompt_lens=[7], gen_lens=[16], seed=31)
    assert cluster.wait(cluster.submit(light), 120)                 # one owner: no queue, one worker
    assert len(cluster.stats()["workers"]) == 1
    reqs = light + ramp_up(cluster, 3)                              # the load rises: 1 -> 3 workers
    ids = [r.owner_id for r in reqs]
    cluster.wait(ids, 300)                                          # ... and stops
    stats = poll_stats(cluster, lambda s: len(s["workers"]) == 1)   # 3 -> 1, by draining
    kinds = [e["event"] for e in stats["scaling"]]
    assert kinds[:2] == ["up", "up"] and kinds.count("down") >= 2
    moved = {o for e in stats["scaling"] for o in e["moved"]}
    assert moved, "no owner was moved by scaling"
    check(reference, reqs, current(cluster, ids), cluster)          # moved or not, all exact
    cluster.release(ids)


def test_draining_moves_running_owners_without_loss(make_cluster, reference):
    """A drain requested while owners generate: they migrate between phases and finish exactly."""
    cluster = make_cluster(workers=2, min_workers=1, max_workers=2, rounds_per_call=4, scale_interval_s=60.0)
    reqs = make_requests(4, prompt_lens=[6, 11], gen_lens=[140], seed=33)
    ids = cluster.submit(reqs)
    before = current(cluster, ids)
    victim = before[ids[0]]["worker_id"]
    on_victim = [o for o in ids if before[o]["worker_id"] == victim]
    ray.get(cluster.scheduler.drain_worker.remote(victim))
    out = cluster.wait(ids, 300)
    assert all(r["worker_id"] != victim for r in out.values())
    assert victim not in cluster.stats()["workers"]
    assert on_victim and all(not before[o]["finished"] for o in on_victim)
    check(reference, reqs, out, cluster)
