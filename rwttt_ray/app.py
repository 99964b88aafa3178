"""build_app: the Serve application, for `serve run rwttt_ray.app:build_app` and Serve config YAML.

args (all optional): config (RwtttConfig fields), api_keys (JSON file path, JSON string or dict),
num_workers, redis_url (else RWTTT_REDIS_URL, else a private redis-server), rounds_per_call,
served_model_name (a name or a list: the first is reported), service_name, seed (of requests
sent without one).
"""
from __future__ import annotations

import os

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

# The keys of `args` that build_app (the Ingress) reads; the deploy YAML is tested against them.
APP_ARG_KEYS = frozenset({"config", "api_keys", "num_workers", "redis_url", "rounds_per_call",
                          "served_model_name", "service_name", "seed"})


def build_app(args: dict | None = None):
    from actors.ingress import Ingress

    unknown = sorted(set(args or {}) - APP_ARG_KEYS)
    if unknown:
        raise ValueError(f"build_app: unknown args {unknown}; known: {sorted(APP_ARG_KEYS)}")

    return Ingress.bind(dict(args or {}))
