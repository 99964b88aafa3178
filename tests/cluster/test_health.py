"""Health tells the truth: ready only while the scheduler answers, the directory (Redis) is reachable
and at least one worker is live; a killed worker or a stopped Redis shows within seconds."""
import time

import ray

from actors.redis_server import EmbeddedRedis


def wait_health(scheduler, pred, timeout_s=20.0):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        state = ray.get(scheduler.health.remote())
        if pred(state):
            return state
        time.sleep(0.25)
    raise AssertionError(f"health stayed {state}")


def test_health_follows_workers_and_redis(make_cluster):
    server = EmbeddedRedis()
    try:
        cluster = make_cluster(workers=1, redis_url=server.url)
        s = cluster.scheduler
        assert wait_health(s, lambda h: h["status"] == "ok") == {"status": "ok", "workers": 1, "directory": True}
        server.stop()                                         # Redis gone
        down = wait_health(s, lambda h: h["status"] != "ok")
        assert down["directory"] is False and "Redis" in down["reason"]
        server.start()
        wait_health(s, lambda h: h["status"] == "ok")         # back: the workers' heartbeats return
        cluster.kill_worker(cluster.worker_names[0])          # the only worker gone
        gone = wait_health(s, lambda h: h["status"] != "ok")
        assert gone["workers"] == 0 and gone["reason"] == "no live worker"
    finally:
        server.stop()
