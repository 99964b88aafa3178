"""InMemoryDirectory: the StateDirectory contract in one process, for unit tests (no Redis, no Ray).

The same semantics as RedisDirectory, step for step with its Lua scripts (actors/directory_scripts.py):
fencing epochs, expected versions, payload-before-entry spills with garbage collection of lower
versions, token logs, heartbeats with a TTL; refusals raise the same typed errors. Requests are
kept msgpack-packed, so what `request_of` gives back is what Redis would (tuples become lists).
The contract test (tests/actors/test_directory.py) runs against both, so they cannot drift.
`reachable = False` makes every call raise DirectoryUnavailableError (Redis away); `lose_data()`
empties it, as a Redis restarted without persistence.
"""
from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Any, Mapping

import msgpack

from actors.state_directory import (DirectoryEntry, DirectoryError, DirectoryUnavailableError, ResyncRow,
                                    DirectorySteps, StaleEpochError, Tier, refusal)

STALE, VERSION, UNKNOWN, MISSING, DUPLICATE = -1, -2, -3, -4, -5


class InMemoryDirectory(DirectorySteps):
    """Implements StateDirectory (actors/state_directory.py) with dicts under one lock."""

    def __init__(self, *, namespace: str = "rwttt") -> None:
        self.ns = namespace
        self.reachable = True
        self._lock = threading.RLock()
        self.lose_data()

    def lose_data(self) -> None:
        """Forget everything, the fencing counter too (a Redis restarted empty)."""
        self._epoch = 0
        self._entries: dict[str, DirectoryEntry] = {}
        self._requests: dict[str, bytes] = {}
        self._tokens: dict[str, list[int]] = {}
        self._payloads: dict[str, bytes] = {}
        self._index: dict[str, dict[str, int]] = {}     # owner -> payload key -> version
        self._beats: dict[str, float] = {}              # worker -> monotonic expiry

    def _open(self) -> None:
        if not self.reachable:
            raise DirectoryUnavailableError(f"cannot reach the directory at {self.where}: unreachable")

    def _fenced(self, epoch: int) -> int | None:
        """The current counter when `epoch` is stale, else None."""
        return self._epoch if epoch < self._epoch else None

    @property
    def where(self) -> str:
        return f"memory://{self.ns}"

    def key(self, *parts: str) -> str:
        return ":".join((self.ns, *parts))

    def ping(self) -> bool:
        self._open()
        return True

    def close(self) -> None:
        pass

    # -- fencing ----------------------------------------------------------------------------
    def acquire_epoch(self) -> int:
        with self._lock:
            self._open()
            self._epoch += 1
            return self._epoch

    def current_epoch(self) -> int:
        self._open()
        return self._epoch

    def assert_epoch(self, epoch: int) -> int:
        with self._lock:
            self._open()
            found = self._epoch
            self._epoch = max(found, epoch)
            return found

    def resync(self, owners: list[ResyncRow], epoch: int) -> None:
        with self._lock:
            self._open()
            if owners and (cur := self._fenced(epoch)) is not None:
                raise StaleEpochError(f"epoch {epoch} is stale (current {cur}): nothing re-registered")
            for entry, request, tokens in owners:
                self._entries[entry.owner_id] = entry
                self._requests[entry.owner_id] = msgpack.packb(dict(request))
                self._tokens[entry.owner_id] = [int(t) for t in tokens]

    # -- entries ----------------------------------------------------------------------------
    def register(self, entry: DirectoryEntry, request: Mapping[str, Any] | None = None) -> None:
        with self._lock:
            self._open()
            if (cur := self._fenced(entry.epoch)) is not None:
                refusal(entry.owner_id, entry.epoch, None, STALE, cur)
            if entry.owner_id in self._entries:
                refusal(entry.owner_id, entry.epoch, None, DUPLICATE, 0)
            self._entries[entry.owner_id] = entry
            self._requests[entry.owner_id] = msgpack.packb(dict(request or {}))

    def get(self, owner_id: str) -> DirectoryEntry | None:
        self._open()
        return self._entries.get(owner_id)

    def request_of(self, owner_id: str) -> dict[str, Any]:
        self._open()
        raw = self._requests.get(owner_id) if owner_id in self._entries else None
        return msgpack.unpackb(raw) if raw else {}

    def entries(self) -> list[DirectoryEntry]:
        self._open()
        return sorted(self._entries.values(), key=lambda e: e.owner_id)

    def remove(self, owner_id: str, epoch: int) -> bool:
        with self._lock:
            self._open()
            if (cur := self._fenced(epoch)) is not None:
                refusal(owner_id, epoch, None, STALE, cur)
            for key in self._index.pop(owner_id, {}):
                self._payloads.pop(key, None)
            self._tokens.pop(owner_id, None)
            self._requests.pop(owner_id, None)
            return self._entries.pop(owner_id, None) is not None

    # -- commit and move (atomic, fenced) ---------------------------------------------------
    def commit_many(self, commits: list[tuple[str, int]], epoch: int) -> list[int | DirectoryError]:
        with self._lock:
            self._open()
            out: list[int | DirectoryError] = []
            for owner_id, expected in commits:
                try:
                    out.append(self._commit_one(owner_id, epoch, expected))
                except DirectoryError as exc:
                    out.append(exc)
            return out

    def _commit_one(self, owner_id: str, epoch: int, expected: int) -> int:
        if (cur := self._fenced(epoch)) is not None:
            return refusal(owner_id, epoch, expected, STALE, cur)
        entry = self._entries.get(owner_id)
        if entry is None:
            return refusal(owner_id, epoch, expected, UNKNOWN, 0)
        if entry.version != expected:
            return refusal(owner_id, epoch, expected, VERSION, entry.version)
        self._entries[owner_id] = replace(entry, version=entry.version + 1, epoch=epoch)
        return entry.version + 1

    def _place(self, owner_id: str, epoch: int, worker_id: str, slot: int, tier: Tier, payload_key: str,
               expected: int | None, spill: bool) -> int:
        with self._lock:
            self._open()
            if (cur := self._fenced(epoch)) is not None:
                return refusal(owner_id, epoch, expected, STALE, cur)
            entry = self._entries.get(owner_id)
            if entry is None:
                return refusal(owner_id, epoch, expected, UNKNOWN, 0)
            if expected is not None and entry.version != expected:
                return refusal(owner_id, epoch, expected, VERSION, entry.version)
            if payload_key and payload_key not in self._payloads:
                return refusal(owner_id, epoch, expected, MISSING, 0)
            self._entries[owner_id] = replace(entry, worker_id=worker_id, slot=slot, tier=tier,
                                              payload_key=payload_key, epoch=epoch)
            if spill:       # payloads of lower versions are obsolete now
                index = self._index.get(owner_id, {})
                for key in [k for k, v in index.items() if v < (expected or 0)]:
                    del index[key]
                    self._payloads.pop(key, None)
            return entry.version

    # -- payloads: written before the entry that points at them -----------------------------
    def payload_key(self, owner_id: str, version: int) -> str:
        return self.key("payload", owner_id, str(version))

    def put_payload(self, owner_id: str, version: int, blob: bytes) -> str:
        with self._lock:
            self._open()
            key = self.payload_key(owner_id, version)
            self._payloads[key] = bytes(blob)
            self._index.setdefault(owner_id, {})[key] = version
            return key

    def get_payload(self, key: str) -> bytes | None:
        self._open()
        return self._payloads.get(key)

    # -- token log and liveness -------------------------------------------------------------
    def start_turn(self, owner_id: str, epoch: int, request: Mapping[str, Any], version: int | None = None) -> int:
        with self._lock:
            self._open()
            if (cur := self._fenced(epoch)) is not None:
                return refusal(owner_id, epoch, version, STALE, cur)
            entry = self._entries.get(owner_id)
            if entry is None:
                return refusal(owner_id, epoch, version, UNKNOWN, 0)
            if version is not None:
                if version > entry.version:
                    return refusal(owner_id, epoch, version, VERSION, entry.version)
                entry = self._entries[owner_id] = replace(entry, version=version, epoch=epoch)
            self._requests[owner_id] = msgpack.packb(dict(request))
            self._tokens.pop(owner_id, None)
            return entry.version

    def append_tokens(self, tokens: Mapping[str, list[int]]) -> None:
        with self._lock:
            self._open()
            for owner_id, toks in tokens.items():
                if toks:
                    self._tokens.setdefault(owner_id, []).extend(int(t) for t in toks)

    def tokens(self, owner_id: str) -> list[int]:
        self._open()
        return list(self._tokens.get(owner_id, []))

    def heartbeat(self, worker_id: str, ttl_s: float) -> None:
        with self._lock:
            self._open()
            self._beats[worker_id] = time.monotonic() + max(0.001, ttl_s)

    def live_workers(self) -> set[str]:
        self._open()
        now = time.monotonic()
        return {w for w, until in self._beats.items() if until > now}
