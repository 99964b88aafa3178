"""Sessions as plain data: who owns each, the versions kept as rollback points, when it expires.

A session is an owner that outlives requests. `kept` lists exactly the versions a worker has
confirmed it holds (a turn's end state is kept by the worker, then listed here). A session that
has been idle (no turn running) for `ttl_s` seconds expires, and its slots are freed.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SessionRecord:
    owner_id: str
    tenant: str
    created: float
    ttl_s: float
    last_used: float                          # creation, or the end of its last turn
    kept: list[int] = field(default_factory=list)

    def expires_at(self) -> float:
        return self.last_used + self.ttl_s

    def keep(self, version: int) -> None:
        if version not in self.kept:
            self.kept.append(version)

    def forget_after(self, version: int) -> None:
        """A rollback to `version`: later kept versions are gone with the branch left behind."""
        self.kept = [v for v in self.kept if v <= version]


class SessionBook:
    """owner -> SessionRecord, with the listing and expiry rules."""

    def __init__(self, default_ttl_s: float = 3600.0) -> None:
        if default_ttl_s <= 0:
            raise ValueError(f"session ttl must be > 0 s, got {default_ttl_s}")
        self.default_ttl_s = default_ttl_s
        self.records: dict[str, SessionRecord] = {}

    def __contains__(self, owner_id: str) -> bool:
        return owner_id in self.records

    def get(self, owner_id: str) -> SessionRecord | None:
        return self.records.get(owner_id)

    def open(self, owner_id: str, tenant: str, now: float, ttl_s: float | None = None,
             kept: list[int] | None = None) -> SessionRecord:
        rec = SessionRecord(owner_id, tenant, now, ttl_s or self.default_ttl_s, now, list(kept or []))
        self.records[owner_id] = rec
        return rec

    def touch(self, owner_id: str, now: float) -> None:
        if owner_id in self.records:
            self.records[owner_id].last_used = now

    def remove(self, owner_id: str) -> None:
        self.records.pop(owner_id, None)

    def of_tenant(self, tenant: str) -> list[SessionRecord]:
        return sorted((r for r in self.records.values() if r.tenant == tenant), key=lambda r: (r.created, r.owner_id))

    def expired(self, now: float, busy: set[str]) -> list[str]:
        """Sessions idle past their ttl (a session with a turn running never expires)."""
        return [o for o, r in self.records.items() if o not in busy and now >= r.expires_at()]
