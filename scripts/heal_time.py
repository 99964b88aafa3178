"""How long until the service answers again after a SIGKILL of its scheduler or of a worker.

Serves the built-in tiny model (2 workers, private Redis, local Ray) on a loopback port, then
in turn SIGKILLs the scheduler, a worker and the scheduler again, and prints the seconds from
each kill to the first new completion answered 200, and the service's events. A measurement,
not a test: `.venv/bin/python scripts/heal_time.py`.
"""
import os
import signal
import time

import httpx
import ray
from ray import serve

from actors.cluster import init_ray
from actors.redis_server import free_port
from rwttt_ray.app import build_app

BODY = {"model": "rwttt-tiny", "prompt": "hi", "max_tokens": 4}


def until_served(base: str, t0: float) -> float:
    while True:
        try:
            if httpx.post(f"{base}/v1/completions", json=BODY, timeout=30).status_code == 200:
                return time.time() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.1)


def main() -> None:
    init_ray(num_cpus=4)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app({"service_name": "heal-time", "config": {"cluster": {"workers": 2}}}), name="heal-time", route_prefix="/")
    base = f"http://127.0.0.1:{port}"
    until_served(base, time.time())
    manager = ray.get_actor("heal-time")
    for what in ("scheduler", "worker", "scheduler"):
        stats = ray.get(ray.get(manager.scheduler.remote()).stats.remote())
        pid = stats["pid"] if what == "scheduler" else \
            ray.get(ray.get_actor(stats["workers"][0]).info.remote()).pid
        t0 = time.time()
        os.kill(pid, signal.SIGKILL)
        print(f"{what} SIGKILL -> a new completion served after {until_served(base, t0):.1f} s", flush=True)
    for line in ray.get(manager.events.remote(0))[1]:
        print("event:", line)
    ray.get(manager.shutdown.remote())
    serve.shutdown()


if __name__ == "__main__":
    main()
