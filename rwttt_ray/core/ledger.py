"""VersionLedger: owner -> committed version; the only place versions change.

WRITE is two-phase: `begin_write` records a pending candidate (v+1), `commit` publishes it,
`rollback` drops it. Group helpers are all-or-nothing. Every commit is appended to an audit
log, so tests and gates can check per-owner WRITE order and count.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from rwttt_ray.core.errors import (DuplicateCommitError, DuplicateOwnerError, StaleVersionError,
                                   UnknownOwnerError, WriteInProgressError)
from rwttt_ray.core.types import Group, OwnerId


@dataclass(frozen=True, slots=True)
class CommitRecord:
    owner_id: OwnerId
    from_version: int
    to_version: int
    seq: int            # position in the ledger's commit order


class VersionLedger:
    def __init__(self) -> None:
        self._committed: dict[OwnerId, int] = {}
        self._pending: dict[OwnerId, int] = {}
        self.history: list[CommitRecord] = []

    # -- owners ---------------------------------------------------------------------------
    def register(self, owner_id: OwnerId, version: int = 0) -> None:
        if owner_id in self._committed:
            raise DuplicateOwnerError(f"owner {owner_id} is already registered")
        if version < 0:
            raise ValueError(f"version must be >= 0, got {version}")
        self._committed[owner_id] = version

    def remove(self, owner_id: OwnerId) -> None:
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
        try:
            return self._committed[owner_id]
        except KeyError:
            raise UnknownOwnerError(f"unknown owner {owner_id}") from None

    def pending(self, owner_id: OwnerId) -> int | None:
        self.committed(owner_id)
        return self._pending.get(owner_id)

    # -- WRITE: begin, commit, rollback ------------------------------------------------------
    def begin_write(self, owner_id: OwnerId, expected_version: int) -> int:
        committed = self.committed(owner_id)
        if expected_version != committed:
            raise StaleVersionError(owner_id, expected_version, committed)
        if owner_id in self._pending:
            raise WriteInProgressError(f"owner {owner_id} already has candidate v{self._pending[owner_id]}")
        self._pending[owner_id] = committed + 1
        return committed + 1

    def commit(self, owner_id: OwnerId, candidate_version: int) -> int:
        committed = self.committed(owner_id)
        pending = self._pending.get(owner_id)
        if pending is None or candidate_version != pending:
            raise DuplicateCommitError(f"owner {owner_id}: no pending candidate v{candidate_version} "
                                       f"(committed v{committed}, pending {pending})")
        if candidate_version != committed + 1:
            raise StaleVersionError(owner_id, candidate_version - 1, committed)
        del self._pending[owner_id]
        self._committed[owner_id] = candidate_version
        self.history.append(CommitRecord(owner_id, committed, candidate_version, len(self.history)))
        return candidate_version

    def rollback(self, owner_id: OwnerId) -> None:
        self.committed(owner_id)
        self._pending.pop(owner_id, None)

    # -- lineage ------------------------------------------------------------------------------
    def fork(self, src_owner_id: OwnerId, new_owner_id: OwnerId) -> int:
        version = self.committed(src_owner_id)
        self.register(new_owner_id, version)
        return version

    def reset(self, owner_id: OwnerId, version: int) -> None:
        """Move an owner back to an earlier committed version (session rollback)."""
        committed = self.committed(owner_id)
        if not 0 <= version <= committed:
            raise ValueError(f"owner {owner_id}: cannot reset to v{version} (committed v{committed})")
        self._pending.pop(owner_id, None)
        self._committed[owner_id] = version

    # -- groups (all-or-nothing) --------------------------------------------------------------
    def begin_group(self, group: Group) -> dict[OwnerId, int]:
        begun: dict[OwnerId, int] = {}
        try:
            for tag in group.tags:
                if tag.owner_id in begun:
                    raise DuplicateOwnerError(f"owner {tag.owner_id} twice in one group")
                begun[tag.owner_id] = self.begin_write(tag.owner_id, tag.expected_version)
        except Exception:
            for owner_id in begun:
                self._pending.pop(owner_id, None)
            raise
        return begun

    def commit_group(self, group: Group) -> None:
        for owner_id in group.owner_ids:   # check all first: nothing changes unless all can commit
            if self._pending.get(owner_id) != self.committed(owner_id) + 1:
                raise DuplicateCommitError(f"owner {owner_id} has no pending candidate")
        for owner_id in group.owner_ids:
            self.commit(owner_id, self._pending[owner_id])

    def rollback_group(self, group: Group) -> None:
        for owner_id in group.owner_ids:
            self._pending.pop(owner_id, None)

    # -- audit and rebuild --------------------------------------------------------------------
    def writes_of(self, owner_id: OwnerId) -> list[CommitRecord]:
        return [r for r in self.history if r.owner_id == owner_id]

    def snapshot(self) -> dict[OwnerId, int]:
        return dict(self._committed)

    @classmethod
    def restore(cls, versions: Mapping[OwnerId, int] | Iterable[tuple[OwnerId, int]]) -> "VersionLedger":
        ledger = cls()
        for owner_id, version in dict(versions).items():
            ledger.register(owner_id, version)
        return ledger
