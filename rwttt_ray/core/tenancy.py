"""Tenants: who owns which owners, and their quotas (live sessions, device slots, tokens/minute).

Pure bookkeeping the scheduler consults before admitting work. Another tenant's owner is
reported exactly like a missing one (NotFoundError), so its existence never leaks.
"""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field


# Ends of a turn that are not failures: the client went away, or the tenant's token budget ran out
# while it generated (the reply ends with finish_reason "length").
CANCELLED, OUT_OF_BUDGET = "cancelled", "out of budget"
BENIGN_ENDS = (CANCELLED, OUT_OF_BUDGET)


class TenancyError(Exception):
    status = 400


class NotFoundError(TenancyError):
    status = 404


class QuotaError(TenancyError):
    status = 429

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    def __reduce__(self) -> tuple[type, tuple[str, int]]:   # crosses Ray actors intact
        return type(self), (str(self), self.retry_after_s)


class CapacityFullError(QuotaError):
    """Every live worker holds as many owners as its device slots and host tier (--swap-space)
    take: a new owner would have nowhere to go. Retry once some end."""


class VersionConflictError(TenancyError):
    status = 409

    def __init__(self, message: str, current_version: int) -> None:
        super().__init__(message)
        self.current_version = current_version

    def __reduce__(self) -> tuple[type, tuple[str, int]]:
        return type(self), (str(self), self.current_version)


class BusyError(TenancyError):
    status = 409


class ContextLengthError(TenancyError):
    status = 413


class DrainingError(TenancyError):
    status = 503


class UnavailableError(TenancyError):
    """The owner's worker is gone and it waits to be replayed on a new one: retry shortly."""
    status = 503


@dataclass(frozen=True)
class TenantLimits:
    max_sessions: int = 64            # live sessions (owners that outlive a request)
    max_active: int = 64              # owners generating at once (device slots)
    tokens_per_minute: int = 1_000_000
    weight: float = 1.0               # share of contended device slots (fairness, tenant_lru)


@dataclass
class TenantUsage:
    owners: set = field(default_factory=set)
    sessions: set = field(default_factory=set)
    active: set = field(default_factory=set)
    tokens: deque = field(default_factory=deque)    # (time, n) in the last minute
    total_tokens: int = 0


class TenantBook:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.limits: dict[str, TenantLimits] = {}
        self.usage: dict[str, TenantUsage] = {}
        self.owner_tenant: dict[str, str] = {}

    def set_limits(self, tenant_id: str, limits: TenantLimits) -> None:
        self.limits[tenant_id] = limits

    def _u(self, tenant_id: str) -> TenantUsage:
        return self.usage.setdefault(tenant_id, TenantUsage())

    def check_owner(self, tenant_id: str, owner_id: str) -> None:
        if self.owner_tenant.get(owner_id) != tenant_id:
            raise NotFoundError(f"session {owner_id!r} not found")

    def tokens_last_minute(self, tenant_id: str) -> int:
        q, now = self._u(tenant_id).tokens, self.clock()
        while q and now - q[0][0] > 60:
            q.popleft()
        return sum(n for _, n in q)

    def admit(self, tenant_id: str, owner_id: str, session: bool) -> None:
        """Raise QuotaError if this tenant may not start (or add) this owner now."""
        lim, u = self.limits.get(tenant_id, TenantLimits()), self._u(tenant_id)
        if owner_id not in u.owners and session and len(u.sessions) >= lim.max_sessions:
            raise QuotaError(f"tenant {tenant_id}: {lim.max_sessions} live sessions is the limit", 5)
        if len(u.active - {owner_id}) >= lim.max_active:
            raise QuotaError(f"tenant {tenant_id}: {lim.max_active} requests generating is the limit", 1)
        if self.tokens_last_minute(tenant_id) >= lim.tokens_per_minute:
            raise QuotaError(f"tenant {tenant_id}: {lim.tokens_per_minute} tokens per minute is the limit", 10)
        self.owner_tenant[owner_id] = tenant_id
        u.owners.add(owner_id)
        if session:
            u.sessions.add(owner_id)

    def restore(self, tenant_id: str, owner_id: str, session: bool) -> None:
        """An owner a restarted scheduler rebuilt: it is the tenant's again, whatever the limits."""
        self.owner_tenant[owner_id] = tenant_id
        u = self._u(tenant_id)
        u.owners.add(owner_id)
        if session:
            u.sessions.add(owner_id)

    def over_budget(self, owner_id: str) -> bool:
        """The owner's tenant has used its tokens_per_minute (checked after each phase: a running
        request stops then, overshooting by at most one phase)."""
        tenant = self.owner_tenant.get(owner_id)
        if tenant is None:
            return False
        return self.tokens_last_minute(tenant) >= self.limits.get(tenant, TenantLimits()).tokens_per_minute

    def started(self, owner_id: str) -> None:
        self._u(self.owner_tenant[owner_id]).active.add(owner_id)

    def stopped(self, owner_id: str) -> None:
        if owner_id in self.owner_tenant:
            self._u(self.owner_tenant[owner_id]).active.discard(owner_id)

    def count_tokens(self, owner_id: str, n: int) -> None:
        if owner_id in self.owner_tenant and n:
            u = self._u(self.owner_tenant[owner_id])
            u.tokens.append((self.clock(), n))
            u.total_tokens += n

    def forget(self, owner_id: str) -> None:
        tenant = self.owner_tenant.pop(owner_id, None)
        if tenant is not None:
            u = self._u(tenant)
            for owned in (u.owners, u.sessions, u.active):
                owned.discard(owner_id)
