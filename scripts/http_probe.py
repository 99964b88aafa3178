"""Where the HTTP path's time goes: HTTP passes vs the same trace submitted straight to the
scheduler actor vs the in-process engine, interleaved, with worker calls (phases), worker
compute and each process's CPU seconds per pass.

    python scripts/http_probe.py --streams 32 [--passes 2]
    RAY_SERVE_ENABLE_HA_PROXY=0 python scripts/http_probe.py --streams 32   # the Python proxy

A diagnostic beside `rwttt bench` (whose table the README reports); uses psutil (a Ray dependency).
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
import psutil  # noqa: E402
import ray  # noqa: E402
from ray import serve  # noqa: E402

from actors.cluster import init_ray  # noqa: E402
from actors.redis_server import free_port  # noqa: E402
from rwttt_ray.app import build_app  # noqa: E402
from rwttt_ray.bench import modes  # noqa: E402
from rwttt_ray.bench.backends import BENCH_MODEL, _http_pass, _stop_service  # noqa: E402
from rwttt_ray.bench.traces import make_trace  # noqa: E402
from rwttt_ray.config import RwtttConfig  # noqa: E402

SERVICE = "rwttt-http-probe"


def cpu_seconds() -> dict[int, tuple[str, float]]:
    out = {}
    for p in psutil.process_iter(["name", "cmdline"]):
        try:
            t = p.cpu_times()
            out[p.pid] = (" ".join(p.info["cmdline"] or [p.info["name"]])[:40], t.user + t.system)
        except psutil.Error:
            pass
    return out


def measured(label: str, sched, run) -> None:
    before, c0, t0 = ray.get(sched.stats.remote()), cpu_seconds(), time.time()
    run()
    wall, c1, after = time.time() - t0, cpu_seconds(), ray.get(sched.stats.remote())
    top = sorted(((c1[p][1] - c0[p][1], c1[p][0]) for p in c1 if p in c0), reverse=True)[:6]
    print(f"{label:<7} wall {wall:6.3f} s  worker calls {after['calls'] - before['calls']:3d}  "
          f"worker compute {after['compute_s'] - before['compute_s']:6.3f} s")
    print("        cpu s: " + ", ".join(f"{name.split()[0]} {sec:.2f}" for sec, name in top), flush=True)


def direct_pass(sched, reqs: list) -> None:
    """The same requests straight to the scheduler actor (no HTTP): submit all, wait, release."""
    ray.get(sched.wait.remote(ray.get([sched.submit.remote(r) for r in reqs])))
    for r in reqs:
        ray.get(sched.release.remote(r.owner_id))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, default=32)
    ap.add_argument("--passes", type=int, default=2)
    args = ap.parse_args()
    config = RwtttConfig()
    model = config.model.load_model()
    trace = make_trace("uniform", args.streams, 128, 128, model.settings.chunk)
    init_ray()
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app({"service_name": SERVICE, "served_model_name": BENCH_MODEL}), name="probe", route_prefix="/")
    url, prompts = f"http://127.0.0.1:{port}", [model.tokenizer.decode(r.prompt) for r in trace.requests]
    sched = ray.get(ray.get_actor(SERVICE).scheduler.remote())
    limits = httpx.Limits(max_connections=args.streams + 4, max_keepalive_connections=args.streams + 4)
    try:
        with httpx.Client(limits=limits) as client:
            _http_pass(client, url, ["warm up"] * args.streams, 4)
            for i in range(args.passes):
                measured("http", sched, lambda: _http_pass(client, url, prompts, 128))
                reqs = [replace(r, owner_id=f"{r.owner_id}-direct{i}") for r in trace.requests]
                measured("direct", sched, partial(direct_pass, sched, reqs))
                t0 = time.time()
                modes.run_rwttt(model, trace)
                print(f"inproc  wall {time.time() - t0:6.3f} s", flush=True)
    finally:
        serve.delete("probe")
        _stop_service(SERVICE)


if __name__ == "__main__":
    main()
