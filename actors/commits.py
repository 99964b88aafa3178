"""DirectoryKeeper: the scheduler's side of the directory, kept right through Redis outages.

Commits are CAS'd in one round trip per phase; while Redis is away they wait with capped
exponential backoff (about 20 s in all, then the phase's owners fail with an error naming
Redis: no busy loop). Once a second it checks that Redis is there and kept its data: a fencing
counter below this scheduler's epoch means it restarted empty or from an older snapshot, and
every owner is re-registered from the scheduler's own state (entry, request, token log), fenced.
Entries a commit finds lost or rolled back are re-registered on the spot; token logs whose
appends failed are rewritten; an owner whose commits are refused for a real reason ends.
"""
from __future__ import annotations

import asyncio

from actors.directory import (DirectoryEntry, DirectoryUnavailableError, DirectoryVersionError, StaleEpochError,
                              Tier, UnknownEntryError)

RETRIES = 14
REFUSALS = 3


class DirectoryKeeper:
    def __init__(self, scheduler) -> None:
        self.s = scheduler
        self.unlogged: set[str] = set()           # owners whose token appends failed (Redis away)
        self.refused: dict[str, int] = {}         # owner -> commits refused in a row
        self.down = False

    async def commit(self, receipts: list[tuple[str, int]]) -> list:
        """Each (owner, expected version) committed: a version, or the DirectoryError refusing it."""
        if not receipts:
            return []
        directory = self.s.directory
        for attempt in range(RETRIES):
            try:
                verdicts = directory.commit_many(receipts, self.s.epoch)
                lost = [o for (o, expected), v in zip(receipts, verdicts) if isinstance(v, UnknownEntryError)
                        or isinstance(v, DirectoryVersionError) and v.stored < expected]
                if not lost or attempt == RETRIES - 1:
                    return verdicts
                self.lost_data(f"{len(lost)} commits found their entries lost or rolled back")
            except DirectoryUnavailableError:
                if attempt == RETRIES - 1:
                    raise
                await asyncio.sleep(min(2.0, 0.1 * 2 ** attempt))
        return directory.commit_many(receipts, self.s.epoch)

    def log_tokens(self, new: dict[str, list[int]]) -> None:
        try:
            self.s.directory.append_tokens(new)
        except DirectoryUnavailableError:       # a recovery aid: rewritten once Redis is back
            self.unlogged |= set(new)

    def refusals(self, receipts, verdicts) -> None:
        """An owner whose commit is refused REFUSALS times in a row (a real conflict, not a lost
        entry) ends with the refusal, instead of re-running its WRITE for ever."""
        core = self.s.core
        for (owner_id, _), verdict in zip(receipts, verdicts):
            if isinstance(verdict, (int, StaleEpochError, DirectoryUnavailableError)):
                self.refused.pop(owner_id, None)
                continue
            self.refused[owner_id] = n = self.refused.get(owner_id, 0) + 1
            if n >= REFUSALS:
                core.fail([owner_id], f"the directory refused {n} commits in a row: {verdict}")

    def resync(self, owner_ids) -> None:
        """Re-register owners from the scheduler's state (entry, request, whole token log)."""
        s, rows = self.s, []
        for owner_id in owner_ids:
            if (rec := s.core.owners.get(owner_id)) is None:
                continue
            entry = DirectoryEntry(owner_id=owner_id, worker_id=rec.worker_id, epoch=s.epoch,
                                   version=s.core.ledger.committed(owner_id),
                                   tier=Tier.DEVICE if rec.resident else Tier.HOST,
                                   tenant_id=s.sessions.tenants.owner_tenant.get(owner_id, ""))
            rows.append((entry, rec.request.to_dict(), list(rec.tokens)))
        s.directory.assert_epoch(s.epoch)
        s.directory.resync(rows, s.epoch)

    def lost_data(self, why: str) -> None:
        """Redis restarted empty (or from an older snapshot): every owner is re-registered, so
        idle sessions too, not only those a commit found lost."""
        s = self.s
        self.resync(list(s.core.owners))
        s.event("Redis lost data (%s): re-registered %d owners from the scheduler's ledger", why, len(s.core.owners))

    def check(self) -> None:
        """Once a second: is Redis there, and did it keep its data?"""
        s = self.s
        try:
            found = s.directory.current_epoch()
            if found < s.epoch:
                self.lost_data(f"its fencing counter {found} < epoch {s.epoch}")
            elif self.unlogged:
                self.resync(self.unlogged)
            self.unlogged = set()
        except DirectoryUnavailableError:
            if not self.down:
                s.event("Redis at %s is unreachable: commits wait (~20 s at most, then those turns fail)",
                        s.directory.where)
            self.down = True
            return
        if self.down:
            s.event("Redis at %s is back", s.directory.where)
        self.down = False
