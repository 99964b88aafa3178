"""VersionLedger: owner -> committed version; the only place versions change.

A WRITE is two-phase: `begin_write` records a dirty candidate v+1, `commit` publishes it and
`rollback` drops it; a READ never touches the ledger. Group helpers are all-or-nothing. Every
commit is appended to an audit log (`history`), so gates can check per-owner WRITE order and
count; `snapshot`/`restore` rebuild the ledger after a scheduler restart.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from rwttt_ray.core.errors import (DuplicateCommitError, DuplicateOwnerError, IllegalGroupError,
                                   StaleVersionError, UnknownOwnerError, WriteInProgressError)
from rwttt_ray.core.types import Effect, Group, OwnerId


@dataclass(frozen=True, slots=True)
class CommitRecord:
    """One published WRITE, in the audit log."""

    owner_id: OwnerId   # whose state changed
    from_version: int   # committed version before
    to_version: int     # committed version after (from_version + 1)
    seq: int            # position in the ledger's commit order


class VersionLedger:
    """Committed version and at most one pending candidate per owner.

    Every method that raises a `ContractError` (or ValueError) leaves the ledger unchanged.
    """

    def __init__(self) -> None:
        self._committed: dict[OwnerId, int] = {}
        self._pending: dict[OwnerId, int] = {}   # owner -> candidate version (committed + 1)
        self.history: list[CommitRecord] = []

    # -- owners ----------------------------------------------------------------------------
    def register(self, owner_id: OwnerId, version: int = 0) -> None:
        """Add an owner at `version` (0 = the checkpoint's weights)."""
        if owner_id in self._committed:
            raise DuplicateOwnerError(f"owner {owner_id} is already registered")
        if version < 0:
            raise ValueError(f"owner {owner_id}: {version=} must be >= 0")
        self._committed[owner_id] = version

    def remove(self, owner_id: OwnerId) -> None:
        """Forget an owner and any pending candidate; its audit records stay."""
        self.committed(owner_id)
        del self._committed[owner_id]
        self._pending.pop(owner_id, None)

    def __contains__(self, owner_id: object) -> bool:
        return owner_id in self._committed

    def __len__(self) -> int:
        return len(self._committed)

    def owners(self) -> list[OwnerId]:
        return list(self._committed)

    def committed(self, owner_id: OwnerId) -> int:
        """The owner's committed version; UnknownOwnerError if it is not registered."""
        try:
            return self._committed[owner_id]
        except KeyError:
            raise UnknownOwnerError(f"unknown owner {owner_id}") from None

    def pending(self, owner_id: OwnerId) -> int | None:
        """The owner's dirty candidate version, or None when no WRITE is in flight."""
        self.committed(owner_id)
        return self._pending.get(owner_id)

    # -- WRITE: begin, commit, rollback ----------------------------------------------------
    def begin_write(self, owner_id: OwnerId, expected_version: int) -> int:
        """Open a WRITE on top of `expected_version`; return the candidate version (v+1)."""
        committed = self.committed(owner_id)
        if expected_version != committed:
            raise StaleVersionError(owner_id, expected_version, committed)
        if owner_id in self._pending:
            raise WriteInProgressError(f"owner {owner_id}: candidate version {self._pending[owner_id]} "
                                       "is still pending")
        self._pending[owner_id] = committed + 1
        return committed + 1

    def commit(self, owner_id: OwnerId, candidate_version: int) -> int:
        """Publish the pending candidate as the committed version; return it.

        DuplicateCommitError: nothing pending, or a replay of a version already committed.
        StaleVersionError: a candidate other than committed + 1 (one the ledger never began).
        """
        committed = self.committed(owner_id)
        if owner_id not in self._pending:
            raise DuplicateCommitError(f"owner {owner_id}: commit of version {candidate_version} "
                                       f"with no pending WRITE (committed version is {committed})")
        if candidate_version <= committed:
            raise DuplicateCommitError(f"owner {owner_id}: version {candidate_version} is already "
                                       f"committed (committed version is {committed})")
        if candidate_version != self._pending[owner_id]:
            raise StaleVersionError(owner_id, candidate_version - 1, committed)
        self._publish(owner_id, committed, candidate_version)
        return candidate_version

    def rollback(self, owner_id: OwnerId) -> None:
        """Drop the owner's pending candidate (no-op if none); the committed version stays."""
        self.committed(owner_id)
        self._pending.pop(owner_id, None)

    def _publish(self, owner_id: OwnerId, committed: int, candidate: int) -> None:
        del self._pending[owner_id]
        self._committed[owner_id] = candidate
        self.history.append(CommitRecord(owner_id, committed, candidate, len(self.history)))

    # -- lineage ---------------------------------------------------------------------------
    def fork(self, src_owner_id: OwnerId, new_owner_id: OwnerId) -> int:
        """A new owner lineage at the source's committed version (its pending WRITE is not copied)."""
        version = self.committed(src_owner_id)
        self.register(new_owner_id, version)
        return version

    def reset(self, owner_id: OwnerId, version: int) -> None:
        """Move an owner back to an earlier committed version (session rollback).

        Any pending candidate is dropped: it was built on a version that no longer holds.
        """
        committed = self.committed(owner_id)
        if not 0 <= version <= committed:
            raise ValueError(f"owner {owner_id}: cannot reset to version {version} "
                             f"(allowed 0..{committed})")
        self._pending.pop(owner_id, None)
        self._committed[owner_id] = version

    # -- groups (all-or-nothing) -----------------------------------------------------------
    def begin_group(self, group: Group) -> dict[OwnerId, int]:
        """Begin a WRITE for every member, or for none: the first failure is re-raised."""
        if group.effect is not Effect.WRITE:
            raise IllegalGroupError(f"begin_group on a {group.effect.name} group: a READ never "
                                    "changes a version")
        begun: dict[OwnerId, int] = {}
        try:
            for tag in group.tags:
                if tag.owner_id in begun:
                    raise DuplicateOwnerError(f"owner {tag.owner_id} appears twice in one group")
                begun[tag.owner_id] = self.begin_write(tag.owner_id, tag.expected_version)
        except Exception:
            for owner_id in begun:
                del self._pending[owner_id]
            raise
        return begun

    def commit_group(self, group: Group) -> None:
        """Commit every member's candidate; checks all members first, so it changes all or none."""
        owner_ids = group.owner_ids
        if len(set(owner_ids)) != len(owner_ids):
            raise DuplicateOwnerError(f"owners {owner_ids}: an owner appears twice in one group")
        for owner_id in owner_ids:
            committed = self.committed(owner_id)
            if self._pending.get(owner_id) != committed + 1:
                raise DuplicateCommitError(f"owner {owner_id}: no pending WRITE to commit "
                                           f"(committed version is {committed})")
        for owner_id in owner_ids:
            self._publish(owner_id, self._committed[owner_id], self._pending[owner_id])

    def rollback_group(self, group: Group) -> None:
        """Drop every member's pending candidate; owners already removed are skipped."""
        for owner_id in group.owner_ids:
            self._pending.pop(owner_id, None)

    # -- audit and rebuild -----------------------------------------------------------------
    def writes_of(self, owner_id: OwnerId) -> list[CommitRecord]:
        """The owner's commits, in commit order."""
        return [r for r in self.history if r.owner_id == owner_id]

    def snapshot(self) -> dict[OwnerId, int]:
        """Committed versions only: pending candidates are never durable."""
        return dict(self._committed)

    @classmethod
    def restore(cls, versions: Mapping[OwnerId, int] | Iterable[tuple[OwnerId, int]]) -> VersionLedger:
        """A ledger holding these committed versions, nothing pending (after a restart)."""
        ledger = cls()
        pairs = versions.items() if isinstance(versions, Mapping) else versions
        for owner_id, version in pairs:   # a repeated owner raises DuplicateOwnerError
            ledger.register(owner_id, version)
        return ledger
