"""build_app: the Serve application, for `serve run rwttt_ray.app:build_app` and Serve config YAML.

args (all optional): config (RwtttConfig fields), api_keys (JSON file path, JSON string or dict),
num_workers, redis_url (else RWTTT_REDIS_URL, else a private redis-server), rounds_per_call,
served_model_name (a name or a list: the first is reported), service_name, seed (of requests
sent without one), metrics_key (the operator's key for /metrics; else RWTTT_METRICS_KEY).
`app_args` makes them from `rwttt serve`'s parsed flags.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rwttt_ray.config import RwtttConfig

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

SERVICE_NAME = "rwttt-service"      # the service manager's name under `rwttt serve`

# The keys of `args` that build_app (the Ingress) reads; the deploy YAML is tested against them.
APP_ARG_KEYS = frozenset({"config", "api_keys", "num_workers", "redis_url", "rounds_per_call",
                          "served_model_name", "service_name", "seed", "metrics_key"})


def app_args(args, config: "RwtttConfig") -> dict:
    """build_app's args from parsed serve flags (or the HTTP bench's) and the config."""
    import dataclasses

    fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name != "extra"}
    keys = {args.api_key: {"tenant": "default"}} if args.api_key else args.api_keys
    out = {"config": fields, "api_keys": keys, "num_workers": args.workers, "service_name": SERVICE_NAME,
           "seed": args.seed}
    if args.served_model_name:
        out["served_model_name"] = list(args.served_model_name)
    for key in ("metrics_key", "redis_url"):        # (the HTTP bench's args have neither)
        if getattr(args, key, None):
            out[key] = getattr(args, key)
    return out


def build_app(args: dict | None = None):
    from actors.ingress import Ingress

    unknown = sorted(set(args or {}) - APP_ARG_KEYS)
    if unknown:
        raise ValueError(f"build_app: unknown args {unknown}; known: {sorted(APP_ARG_KEYS)}")

    return Ingress.bind(dict(args or {}))
