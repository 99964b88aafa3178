"""`rwttt serve`: local Ray, a private Redis, the model, and the HTTP API on one loopback port.

It speaks `vllm serve`: a positional MODEL (or --model), --served-model-name, --api-key,
--max-model-len, --dtype auto, --chat-template, --generation-config, --seed, --log-level; the
config's flag groups are bench's and eval's (rwttt_ray/flags.py).
Before anything starts, the model, tokenizer, template and keys are checked (a bad one is one
line and a non-zero exit), and one line says what is served with which settings. On SIGTERM or
Ctrl-C it drains, then stops everything it started whatever the drain did: the service manager
(detached: Serve does not stop it) shuts its cluster down and is killed, then Serve and Ray stop.
"""
from __future__ import annotations

import logging
import signal
import threading
from typing import TYPE_CHECKING

from rwttt_ray.app import SERVICE_NAME, app_args
from rwttt_ray.flags import VERSION, add_config_flags, positive

if TYPE_CHECKING:
    from rwttt_ray.config import RwtttConfig


def add_serve_parser(sub) -> None:
    sv = sub.add_parser("serve", help="the whole stack (local Ray, private Redis, model) behind an HTTP API",
                        description="Serve MODEL (a local checkpoint dir; default: the built-in tiny model) over an "
                                    "OpenAI-compatible HTTP API, as `vllm serve` does.")
    sv.add_argument("model_tag", nargs="?", metavar="MODEL", help="local checkpoint dir (or --model)")
    sv.add_argument("--version", action="version", version=f"rwttt-ray {VERSION}")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (nothing listens beyond it)")
    sv.add_argument("--port", type=positive("--port"), default=8000, help="HTTP port")
    sv.add_argument("--served-model-name", nargs="+", metavar="NAME",
                    help="model name(s) the API answers to; the first is reported (default: the model dir's name)")
    sv.add_argument("--api-key", help="one API key: requests must send it (one tenant, 'default')")
    sv.add_argument("--api-keys", help="JSON file (or string) of API keys -> tenants and quotas")
    sv.add_argument("--metrics-key", help="the operator's key for /metrics (else RWTTT_METRICS_KEY); with API keys "
                                          "and no metrics key, /metrics is refused")
    sv.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error", "critical"),
                    help="log level of rwttt and Ray Serve")
    sv.add_argument("--grace-s", type=float, default=20.0,
                    help="on Ctrl-C/SIGTERM: seconds to finish running turns and spill sessions")
    add_config_flags(sv, dtype="auto", seed=True)


def resolve_serve_args(args):
    """MODEL or --model (not two different ones); --api-key or --api-keys (not both)."""
    if args.model_tag and args.model and args.model_tag != args.model:
        raise ValueError(f"two models given: {args.model_tag!r} and --model {args.model!r}")
    args.model = args.model or args.model_tag
    if args.api_key and args.api_keys:
        raise ValueError("give --api-key or --api-keys, not both")
    return args


def startup_line(config: RwtttConfig, names) -> str:
    """What will be served, checked before Ray starts (a bad model, tokenizer or template fails here)."""
    from rwttt_ray.api.served import served_model

    model = config.model.load_model()
    served = served_model(config.model, names)
    template = f"chat template {config.model.chat_template}" if config.model.chat_template else (
        "chat template: the tokenizer's" if getattr(served.codec.tokenizer, "chat_template", None)
        else "chat template: built-in (byte tokenizer)")
    described = model.describe(config.model.device, config.batching.max_states_per_worker)
    return (f"rwttt-ray: serving {served.name!r}: {described}; "
            f"eos ids {list(served.eos_ids)}; {served.defaults.describe()}; {template}")


def serve_main(args, config: RwtttConfig) -> int:
    from ray import serve

    from actors.cluster import init_ray
    from rwttt_ray.api.keys import load_keys
    from rwttt_ray.app import build_app

    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    keys = {args.api_key: {"tenant": "default"}} if args.api_key else args.api_keys
    a = app_args(config, api_keys=keys, served_model_name=args.served_model_name, metrics_key=args.metrics_key)
    load_keys(keys)                              # a bad key file fails here, in one line
    print(startup_line(config, args.served_model_name), flush=True)
    init_ray(config.cluster.address, host=args.host)
    summary: dict | None = None
    try:
        logging_config = {"log_level": args.log_level.upper()}
        serve.start(http_options={"host": args.host, "port": args.port}, logging_config=logging_config)
        serve.run(build_app(a), name="rwttt", route_prefix="/", logging_config=logging_config)
        print(f"rwttt-ray serving on http://{args.host}:{args.port}/v1  (Ctrl-C to stop)", flush=True)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        seen = 0
        try:
            while not stop.wait(1.0):
                seen = _print_events(seen)
        except KeyboardInterrupt:
            pass
        _print_events(seen)                      # the last ones, before the drain's
        print(f"rwttt-ray: draining (grace {args.grace_s:g}s) ...", flush=True)
        summary = _drain(args.grace_s)
    finally:
        _stop_everything(drained=summary is not None)
    print(f"rwttt-ray: stopped; {stop_line(summary or {})}", flush=True)
    return 0


def stop_line(summary: dict) -> str:
    """What the drain did, said plainly: sessions in the private Redis end with it."""
    spilled, stopped = summary.get("spilled", 0), summary.get("stopped", 0)
    if summary.get("private_store") and spilled:
        kept = (f"{spilled} sessions NOT kept: the private Redis ends with this process "
                f"(give --redis-url or RWTTT_REDIS_URL to keep sessions across restarts)")
    else:
        kept = f"{spilled} sessions spilled to the shared store"
    return f"{kept}, {stopped} running turns ended"


def _print_events(seen: int) -> int:
    """Print the service's new events (worker lost, scheduler restarted, Redis away, ...), one
    line each; returns the last one's number. Never raises."""
    import ray

    try:
        seq, lines = ray.get(ray.get_actor(SERVICE_NAME).events.remote(seen), timeout=10)
    except Exception:
        return seen
    for line in lines:
        print(f"rwttt-ray: {line}", flush=True)
    return seq


def _drain(grace_s: float) -> dict | None:
    """Spill every session's committed state within the grace period, then stop the cluster;
    never raises (None when the service is gone or the drain failed)."""
    import ray

    try:
        return ray.get(ray.get_actor(SERVICE_NAME).shutdown.remote(grace_s), timeout=grace_s + 10)
    except Exception as exc:   # the service is already gone, or stuck: _stop_everything ends it
        print(f"rwttt-ray: drain skipped: {type(exc).__name__}", flush=True)
        return None


def _stop_everything(drained: bool) -> None:
    """Whatever the drain did: the manager (detached, so Serve leaves it) stops its cluster if the
    drain did not, and is killed (its workers and scheduler die with it, its Redis too); then
    Serve and Ray stop. Never raises."""
    import ray
    from ray import serve

    try:
        manager = ray.get_actor(SERVICE_NAME)
    except Exception:          # never started, or gone
        manager = None
    if manager is not None:
        if not drained:
            try:
                ray.get(manager.shutdown.remote(), timeout=10)
            except Exception:
                pass
        try:
            ray.kill(manager, no_restart=True)
        except Exception:
            pass
    try:
        serve.shutdown()
    except Exception as exc:
        print(f"rwttt-ray: Serve did not stop cleanly: {type(exc).__name__}", flush=True)
    ray.shutdown()
