"""`rwttt serve`: local Ray, a private Redis, the model, and the HTTP API on one loopback port."""
from __future__ import annotations

import dataclasses
import signal
import threading

from rwttt_ray.config import RwtttConfig


def app_args(args, config: RwtttConfig) -> dict:
    fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name != "extra"}
    return {"config": fields, "api_keys": args.api_keys, "num_workers": args.workers}


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
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    serve.shutdown()
    return 0
