"""`rwttt serve`: local Ray, a private Redis, the model, and the HTTP API on one loopback port."""
from __future__ import annotations

import dataclasses
import signal
import threading

from rwttt_ray.config import RwtttConfig


SERVICE_NAME = "rwttt-service"


def app_args(args, config: RwtttConfig) -> dict:
    fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name != "extra"}
    return {"config": fields, "api_keys": args.api_keys, "num_workers": args.workers, "service_name": SERVICE_NAME}


def serve_main(args, config: RwtttConfig) -> int:
    from ray import serve

    from actors.cluster import init_ray
    from rwttt_ray.api.keys import load_keys
    from rwttt_ray.app import build_app

    load_keys(args.api_keys)                     # a bad key file fails here, in one line
    config.load_model()                          # and a bad model dir
    init_ray()
    serve.start(http_options={"host": args.host, "port": args.port})
    serve.run(build_app(app_args(args, config)), name="rwttt", route_prefix="/")
    print(f"rwttt-ray serving on http://{args.host}:{args.port}/v1  (Ctrl-C to stop)", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    print(f"rwttt-ray: draining (grace {args.grace_s:g}s) ...", flush=True)
    summary = _drain(args.grace_s)
    serve.shutdown()
    print(f"rwttt-ray: stopped; {summary.get('spilled', 0)} sessions spilled to the shared store, "
          f"{summary.get('stopped', 0)} running turns ended", flush=True)
    return 0


def _drain(grace_s: float) -> dict:
    """Spill every session's committed state within the grace period; never raises."""
    import ray

    try:
        return ray.get(ray.get_actor(SERVICE_NAME).shutdown.remote(grace_s), timeout=grace_s + 10)
    except Exception as exc:   # the service is already gone: nothing left to spill
        print(f"rwttt-ray: drain skipped: {type(exc).__name__}", flush=True)
        return {}
