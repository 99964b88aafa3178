"""API keys -> tenants and their limits, from a JSON file, a JSON string or a dict.

Format: {"sk-...": {"tenant": "acme", "max_sessions": 8, "max_active": 8, "tokens_per_minute": 60000,
"weight": 2.0}}; weight (default 1) is the tenant's share when device slots are contended.
No keys configured means an open server with one tenant, "default".
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

LIMIT_FIELDS = ("max_sessions", "max_active", "tokens_per_minute", "weight")
ENV = "RWTTT_API_KEYS"


@dataclass(frozen=True)
class KeyBook:
    tenants: dict[str, str]            # api key -> tenant
    limits: dict[str, dict]            # tenant -> limits

    @property
    def open(self) -> bool:
        return not self.tenants

    def tenant_of(self, authorization: str | None) -> str | None:
        """The tenant for an `Authorization: Bearer <key>` header; None if missing or unknown."""
        if self.open:
            return "default"
        if not authorization or not authorization.lower().startswith("bearer "):
            return None
        return self.tenants.get(authorization[7:].strip())


def load_keys(source: str | dict | None = None) -> KeyBook:
    source = source if source is not None else os.environ.get(ENV)
    if not source:
        return KeyBook({}, {})
    if isinstance(source, str):
        text = open(source).read() if os.path.isfile(source) else source
        try:
            source = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"API keys must be JSON (a file or a string): {exc}") from None
    tenants, limits = {}, {}
    for key, spec in source.items():
        spec = {"tenant": spec} if isinstance(spec, str) else dict(spec)
        tenant = spec.pop("tenant", None)
        if not tenant:
            raise ValueError(f"API key {key[:4]}...: no tenant")
        unknown = set(spec) - set(LIMIT_FIELDS)
        if unknown:
            raise ValueError(f"API key {key[:4]}...: unknown fields {sorted(unknown)}")
        if float(spec.get("weight", 1.0)) <= 0:
            raise ValueError(f"API key {key[:4]}...: weight must be > 0")
        tenants[key] = tenant
        limits.setdefault(tenant, {}).update({k: float(v) if k == "weight" else int(v) for k, v in spec.items()})
    return KeyBook(tenants, limits)
