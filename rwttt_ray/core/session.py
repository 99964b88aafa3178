"""Sessions and turns as plain data: one SessionRecord per owner the service knows, and the rules.

A session is an owner that outlives requests; a one-shot completion is an owner whose only turn
is its request. Per owner the record holds whether its current turn is over (`closed`), when
the turn started (TTFT), its reader's lease, and, for a one-shot, its result until read. A
session also lists `kept`: exactly the versions a worker has confirmed it holds (a turn's end
state is kept by the worker, then listed here), and expires once idle (no turn running) for
`ttl_s` seconds. Every rule here is pure; SessionService (actors/sessions.py) applies them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Container, Iterable


@dataclass(kw_only=True)
class SessionRecord:
    owner_id: str
    tenant: str
    session: bool = True                      # False: a one-shot completion
    created: float = 0.0
    ttl_s: float | None = None                # a session's idle time to live
    last_used: float = 0.0                    # creation, or the end of its last turn
    kept: list[int] = field(default_factory=list)
    closed: bool = False                      # its current turn is over
    rekeep: bool = False                      # idle, replayed after a worker loss: its state is kept again
    cutting: bool = False                     # its turn is being cut: busy until back at its cut point
    started: float | None = None              # wall clock when the current turn started
    lease_until: float | None = None          # monotonic: the reader renews before then, or the turn is cut
    result: dict | None = None                # a finished one-shot's result, not yet read

    def expires_at(self) -> float:
        return self.last_used + (self.ttl_s or 0.0)

    def keep(self, version: int) -> None:
        if version not in self.kept:
            self.kept.append(version)

    def forget_after(self, version: int) -> None:
        """A rollback to `version`: later kept versions are gone with the branch left behind."""
        self.kept = [v for v in self.kept if v <= version]

    def cut_point(self) -> int | None:
        """Where a turn cut before its end goes back to: the last kept version (None: empty)."""
        return self.kept[-1] if self.kept else None


class SessionBook:
    """owner -> SessionRecord, with the rules of turns, leases and expiry."""

    def __init__(self, default_ttl_s: float = 3600.0) -> None:
        if default_ttl_s <= 0:
            raise ValueError(f"session ttl must be > 0 s, got {default_ttl_s}")
        self.default_ttl_s = default_ttl_s
        self.records: dict[str, SessionRecord] = {}

    def get(self, owner_id: str) -> SessionRecord | None:
        return self.records.get(owner_id)

    def session(self, owner_id: str) -> SessionRecord | None:
        """The owner's record if it is a session."""
        rec = self.records.get(owner_id)
        return rec if rec is not None and rec.session else None

    def is_session(self, owner_id: str) -> bool:
        return self.session(owner_id) is not None

    def sessions(self) -> list[str]:
        return [o for o, r in self.records.items() if r.session]

    def is_closed(self, owner_id: str) -> bool:
        rec = self.records.get(owner_id)
        return rec is not None and rec.closed

    def busy(self, held: Iterable[str]) -> list[str]:
        """Of the owners the scheduler holds, those with a turn running (in `held`'s order)."""
        return [o for o in held if not self.is_closed(o)]

    def is_busy(self, owner_id: str, held: bool) -> bool:
        """Is a turn of this owner running (`held`: the scheduler holds it)?"""
        return held and not self.is_closed(owner_id)

    # -- opening and turns ----------------------------------------------------------------------
    def open(self, owner_id: str, tenant: str, now: float, ttl_s: float | None = None,
             kept: list[int] | None = None) -> SessionRecord:
        rec = SessionRecord(owner_id=owner_id, tenant=tenant, created=now, ttl_s=ttl_s or self.default_ttl_s,
                            last_used=now, kept=list(kept or []))
        self.records[owner_id] = rec
        return rec

    def _of(self, owner_id: str, tenant: str = "") -> SessionRecord:
        """The owner's record; a one-shot's is made on first use."""
        if owner_id not in self.records:
            self.records[owner_id] = SessionRecord(owner_id=owner_id, tenant=tenant, session=False)
        return self.records[owner_id]

    def start_turn(self, owner_id: str, tenant: str, now: float, lease_until: float | None = None) -> SessionRecord:
        """A turn starts (a one-shot's only one): running, timed from `now`; this turn's end is
        what gets kept now (not a replayed idle state); with a lease, its reader must renew it."""
        rec = self._of(owner_id, tenant)
        rec.closed, rec.rekeep, rec.started = False, False, now
        if lease_until is not None:
            rec.lease_until = lease_until
        return rec

    def restore(self, owner_id: str, tenant: str, *, session: bool, kept: list[int], running: bool,
                now: float) -> SessionRecord:
        """After a scheduler restart: the rebuilt owner's record (a session with the versions its
        worker still keeps); a running turn is timed from now."""
        rec = self.open(owner_id, tenant, now, kept=kept) if session else self._of(owner_id, tenant)
        if running:
            rec.started = now
        return rec

    def idle_at(self, owner_id: str, version: int) -> SessionRecord:
        """The session holds a state at `version` and no turn runs (a fork, or a session adopted
        from a previous service): that version is kept as its rollback point."""
        rec = self.records[owner_id]
        rec.keep(version)
        rec.closed = True
        return rec

    # -- ends of turns --------------------------------------------------------------------------
    def begin_cut(self, owner_id: str) -> int | None:
        """A session turn is cut before its end: it stays busy (it closes when the cut is done,
        not at its last phase) and goes back to its cut point, returned."""
        rec = self.records[owner_id]
        rec.cutting = True
        return rec.cut_point()

    def end_cut(self, owner_id: str) -> None:
        """The cut is done and the session holds no state (cut back to empty)."""
        if (rec := self.records.get(owner_id)) is not None:
            rec.cutting = False

    def close(self, owner_id: str, now: float) -> SessionRecord:
        """The current turn is over (a cut one too); a session's idle time starts now."""
        rec = self._of(owner_id)
        rec.closed, rec.cutting = True, False
        if rec.session:
            rec.last_used = now
        return rec

    def closes_on_tokens(self, owner_id: str, finished: bool, failed: bool) -> bool:
        """A finished turn closes at once unless it is a session's good turn: that one closes
        when its end state is kept (`on_kept`)."""
        rec = self.records.get(owner_id)
        return finished and not self.is_closed(owner_id) and (rec is None or not rec.session or failed and
                                                              not rec.cutting)

    def on_kept(self, owner_id: str, version: int | None, held: bool) -> bool:
        """The worker kept the owner's end-of-turn state at `version` (None: keeping failed);
        True when that closes its turn now. A replayed idle state is listed again; a cut turn's
        state (closed already) is not a rollback point."""
        rec = self.session(owner_id)
        if rec is not None and rec.rekeep and rec.closed:
            rec.rekeep = False
            if version is not None:
                rec.keep(version)
            return False
        if rec is None or not held or rec.closed or rec.cutting:
            return False
        if version is not None:
            rec.keep(version)
        return True

    def replaying(self, owner_ids: Iterable[str]) -> None:
        """These owners' worker died, and its kept states with it: an idle session is replayed to
        its current state, which the new worker keeps again (the only rollback point left)."""
        for o in owner_ids:
            if (rec := self.session(o)) is not None:
                rec.kept = []
                rec.rekeep = rec.rekeep or rec.closed

    # -- leases and expiry ----------------------------------------------------------------------
    def renew(self, owner_ids: Iterable[str], until: float) -> None:
        for o in owner_ids:
            if (rec := self.records.get(o)) is not None and rec.lease_until is not None:
                rec.lease_until = until

    def end_lease(self, owner_id: str) -> None:
        """The turn's reader has its end: no lease to keep."""
        if (rec := self.records.get(owner_id)) is not None:
            rec.lease_until = None

    def lapsed(self, clock: float) -> list[str]:
        """Turns whose reader's lease ran out by `clock` (monotonic); their leases end."""
        gone = [o for o, r in self.records.items() if r.lease_until is not None and r.lease_until < clock]
        for o in gone:
            self.records[o].lease_until = None
        return gone

    def expired(self, now: float, held: Container[str]) -> list[str]:
        """Sessions idle past their ttl (a session with a turn running never expires)."""
        return [o for o, r in self.records.items()
                if r.session and not (o in held and not r.closed) and now >= r.expires_at()]

    def remove(self, owner_id: str) -> None:
        self.records.pop(owner_id, None)

    def of_tenant(self, tenant: str) -> list[SessionRecord]:
        return sorted((r for r in self.records.values() if r.session and r.tenant == tenant),
                      key=lambda r: (r.created, r.owner_id))
