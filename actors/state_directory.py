"""The state directory's contract: what the scheduler side and the workers use of it.

`StateDirectory` names every operation (owner -> worker, slot, tier, version, epoch; fencing
epochs; payloads; token logs; heartbeats). `RedisDirectory` (actors/directory.py) implements it
for a real service; `InMemoryDirectory` (actors/memory_directory.py) implements the same
semantics in one process for unit tests. A contract test runs against both. Refusals are typed
(`DirectoryError` subclasses), so callers match them by type, never by text. No redis here.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, fields
from typing import Any, Mapping, Protocol, runtime_checkable


class Tier(enum.Enum):
    DEVICE = "device"   # a worker's pool slot
    HOST = "host"       # a worker's host memory
    STORE = "store"     # the shared store: the entry's payload_key holds the state


class DirectoryError(RuntimeError):
    """A directory operation was rejected; nothing was changed."""


class StaleEpochError(DirectoryError):
    """The caller's epoch is older than the current fencing epoch (a stale scheduler)."""


class DirectoryVersionError(DirectoryError):
    """The stored version differs from the caller's expected version (stale or duplicate commit)."""

    def __init__(self, message: str, stored: int = -1) -> None:
        super().__init__(message)
        self.stored = stored

    def __reduce__(self):
        return type(self), (str(self), self.stored)


class UnknownEntryError(DirectoryError):
    """No entry for that owner (never registered, removed, or lost with a Redis restart)."""


class DuplicateEntryError(DirectoryError):
    """register() for an owner that already has an entry."""


class MissingPayloadError(DirectoryError):
    """An entry may never point at a payload key that does not exist."""


class DirectoryUnavailableError(DirectoryError):
    """Redis cannot be reached. During a write the outcome is unknown: re-read the entry."""


@dataclass(frozen=True, slots=True)
class DirectoryEntry:
    """Where one owner's state lives. Crosses actors; msgpack-able via to_dict/from_dict."""
    owner_id: str
    tenant_id: str = ""          # who pays; "" for none
    worker_id: str = ""          # the worker holding the state; "" when only in the store
    slot: int = -1               # pool slot on that worker; -1 if none
    tier: Tier = Tier.DEVICE     # DEVICE slot | HOST memory | shared STORE
    version: int = 0             # committed WRITEs; changed only by commit()
    epoch: int = 0               # fencing epoch of the last scheduler that wrote this entry
    payload_key: str = ""        # versioned payload key of the spilled state; "" if none

    def __post_init__(self) -> None:
        if self.version < 0 or self.slot < -1:
            raise ValueError(f"{self.version=} must be >= 0 and {self.slot=} >= -1")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)} | {"tier": self.tier.value}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "DirectoryEntry":
        """From to_dict() output or from Redis hash values (bytes)."""
        g = {k: v.decode() if isinstance(v, bytes) else v for k, v in d.items()}
        return cls(owner_id=g["owner_id"], tenant_id=g.get("tenant_id", ""), worker_id=g.get("worker_id", ""),
                   slot=int(g.get("slot", -1)), tier=Tier(g.get("tier", "device")), version=int(g.get("version", 0)),
                   epoch=int(g.get("epoch", 0)), payload_key=g.get("payload_key", ""))


FIELDS = tuple(f.name for f in fields(DirectoryEntry))
ResyncRow = tuple[DirectoryEntry, Mapping[str, Any], list[int]]


def refusal(owner_id: str, epoch: int, expected: int | None, code: int, value: int) -> int:
    """A fenced operation's answer (code, value) as its value, or the typed refusal raised.
    Codes: 1 ok (value = version), -1 stale epoch (current), -2 version mismatch (stored),
    -3 no entry, -4 missing payload, -5 entry exists."""
    if code == -1:
        raise StaleEpochError(f"epoch {epoch} is stale (current {value}): owner {owner_id} not changed")
    if code == -2:
        raise DirectoryVersionError(f"owner {owner_id}: expected version {expected}, stored {value}", value)
    if code == -3:
        raise UnknownEntryError(f"owner {owner_id} has no directory entry")
    if code == -4:
        raise MissingPayloadError(f"owner {owner_id}: payload does not exist; entry not changed")
    if code == -5:
        raise DuplicateEntryError(f"owner {owner_id} is already registered")
    return value


class DirectorySteps:
    """The steps every directory builds on its fenced primitives (`_place`, `put_payload`,
    `commit_many`, `entries`): a commit, a move, a spill as payload first and then the entry, and
    the ledger snapshot; shared by the Redis directory and the in-memory one, so they cannot drift."""

    def _place(self, owner_id: str, epoch: int, worker_id: str, slot: int, tier: Tier, payload_key: str,
               expected: int | None, spill: bool) -> int:
        raise NotImplementedError

    def put_payload(self, owner_id: str, version: int, blob: bytes) -> str:
        raise NotImplementedError

    def commit_many(self, commits: list[tuple[str, int]], epoch: int) -> list[int | DirectoryError]:
        raise NotImplementedError

    def entries(self) -> list[DirectoryEntry]:
        raise NotImplementedError

    def commit(self, owner_id: str, epoch: int, expected_version: int) -> int:
        """version := expected + 1, only if epoch is current and the stored version is expected."""
        result = self.commit_many([(owner_id, expected_version)], epoch)[0]
        if isinstance(result, DirectoryError):
            raise result
        return result

    def ledger_snapshot(self) -> dict[str, int]:
        """owner -> committed version, for a restarted scheduler to rebuild its ledger."""
        return {e.owner_id: e.version for e in self.entries()}

    def move(self, owner_id: str, epoch: int, worker_id: str, slot: int, tier: Tier, payload_key: str = "",
             *, expected_version: int | None = None) -> int:
        """Atomic placement change (fenced); the version is unchanged, and checked when given.
        A non-empty payload_key must exist. Returns the version."""
        if tier is Tier.STORE and not payload_key:
            raise ValueError("tier STORE needs a payload_key")
        return self._place(owner_id, epoch, worker_id, slot, tier, payload_key, expected_version, spill=False)

    def point_to_payload(self, owner_id: str, epoch: int, version: int, key: str) -> None:
        """Step 2 of a spill: atomically, if the epoch is current, the stored version is `version`
        and `key` exists, the entry becomes (tier STORE, key); payloads of lower versions are deleted."""
        self._place(owner_id, epoch, "", -1, Tier.STORE, key, version, spill=True)

    def spill(self, owner_id: str, epoch: int, version: int, blob: bytes) -> str:
        """Payload first, then the entry: a crash in between leaves the entry on its old placement."""
        key = self.put_payload(owner_id, version, blob)
        self.point_to_payload(owner_id, epoch, version, key)
        return key


@runtime_checkable
class StateDirectory(Protocol):
    """Owner -> (worker, slot, tier, version, epoch), fenced by an epoch; see RedisDirectory for
    each operation's contract. Every fenced write refuses an older epoch with StaleEpochError."""

    @property
    def where(self) -> str: ...

    def ping(self) -> bool: ...

    def close(self) -> None: ...

    # fencing
    def acquire_epoch(self) -> int: ...

    def current_epoch(self) -> int: ...

    def assert_epoch(self, epoch: int) -> int: ...

    def resync(self, owners: list[ResyncRow], epoch: int) -> None: ...

    # entries
    def register(self, entry: DirectoryEntry, request: Mapping[str, Any] | None = None) -> None: ...

    def get(self, owner_id: str) -> DirectoryEntry | None: ...

    def request_of(self, owner_id: str) -> dict[str, Any]: ...

    def entries(self) -> list[DirectoryEntry]: ...

    def ledger_snapshot(self) -> dict[str, int]: ...

    def remove(self, owner_id: str, epoch: int) -> bool: ...

    # commit and move
    def commit(self, owner_id: str, epoch: int, expected_version: int) -> int: ...

    def commit_many(self, commits: list[tuple[str, int]], epoch: int) -> list[int | DirectoryError]: ...

    def move(self, owner_id: str, epoch: int, worker_id: str, slot: int, tier: Tier, payload_key: str = "",
             *, expected_version: int | None = None) -> int: ...

    # payloads
    def payload_key(self, owner_id: str, version: int) -> str: ...

    def put_payload(self, owner_id: str, version: int, blob: bytes) -> str: ...

    def get_payload(self, key: str) -> bytes | None: ...

    def point_to_payload(self, owner_id: str, epoch: int, version: int, key: str) -> None: ...

    def spill(self, owner_id: str, epoch: int, version: int, blob: bytes) -> str: ...

    # token log and liveness
    def start_turn(self, owner_id: str, epoch: int, request: Mapping[str, Any], version: int | None = None) -> int: ...

    def append_tokens(self, tokens: Mapping[str, list[int]]) -> None: ...

    def tokens(self, owner_id: str) -> list[int]: ...

    def heartbeat(self, worker_id: str, ttl_s: float) -> None: ...

    def live_workers(self) -> set[str]: ...
