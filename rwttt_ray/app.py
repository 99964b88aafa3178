"""build_app: the Serve application, for `serve run rwttt_ray.app:build_app` and Serve config YAML.

args (all optional): config (RwtttConfig.from_dict: {model: {...}, batching: {...}, cluster:
{...}, service: {...}}, each knob under the name of its `rwttt serve` flag), api_keys (JSON file
path, JSON string or dict), served_model_name (a name or a list: the first is reported),
service_name, metrics_key (the operator's key for /metrics; else RWTTT_METRICS_KEY). They are the
Ingress's keyword arguments. `app_args` makes them from a config (`rwttt serve`, the HTTP bench).
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rwttt_ray.config import RwtttConfig

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

SERVICE_NAME = "rwttt-service"      # the service manager's name under `rwttt serve`

# The keys of `args` build_app takes: the Ingress's keyword arguments (the deploy YAML is tested against them).
APP_ARG_KEYS = frozenset({"config", "api_keys", "served_model_name", "service_name", "metrics_key"})


def app_args(config: "RwtttConfig", *, api_keys: Any = None, served_model_name: Any = None,
             service_name: str = SERVICE_NAME, metrics_key: str | None = None) -> dict:
    """build_app's args: the config as plain data, and the service's keys and names where given."""
    out = {"config": config.to_dict(), "service_name": service_name}
    extra = {"api_keys": api_keys, "served_model_name": list(served_model_name or ()) or None,
             "metrics_key": metrics_key}
    return {**out, **{k: v for k, v in extra.items() if v}}


def build_app(args: dict | None = None):
    """The app (Serve calls this with the YAML's `args`: one dict, Serve's contract). The config
    is validated here, where the app is built; the machine checks run where the Ingress starts."""
    from actors.ingress import Ingress
    from rwttt_ray.config import RwtttConfig

    args = dict(args or {})
    unknown = sorted(set(args) - APP_ARG_KEYS)
    if unknown:
        raise ValueError(f"build_app: unknown args {unknown}; known: {sorted(APP_ARG_KEYS)}")
    args["config"] = RwtttConfig.from_dict(args.get("config"))
    return Ingress.bind(**args)
