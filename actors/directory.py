"""RedisDirectory: where each owner's state lives and at what version, fenced by an epoch.

The only module that imports redis. Keys, namespaced per cluster: `{ns}:epoch` (fencing counter),
`{ns}:owners` (set), `{ns}:owner:{id}` (hash: the DirectoryEntry fields + request), `{ns}:tokens:{id}`
(token log), `{ns}:payload:{id}:{version}` (spilled state, written BEFORE the entry points at it;
indexed by version in the zset `{ns}:payloads:{id}`), `{ns}:hb:{worker}` (liveness, TTL) and
`{ns}:workers` (set). Every op is one round trip; commit, move, spill and remove are Lua scripts
that check (epoch, version) and write in one atomic step. The entry, the tiers, the typed
refusals and the StateDirectory protocol live in actors/state_directory.py (re-exported here).
"""
from __future__ import annotations

import re
from typing import Any, Callable, Mapping, TypeVar

import msgpack
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from actors.directory_scripts import (_ASSERT_EPOCH, _COMMIT, _ENTRIES, _LIVE, _MOVE, _REGISTER, _REMOVE, _RESYNC,
                                     _SESSION)
from actors.state_directory import (FIELDS, DirectoryEntry, DirectoryError, DirectoryUnavailableError,  # noqa: F401
                                    DirectoryVersionError, DuplicateEntryError, MissingPayloadError, ResyncRow,
                                    DirectorySteps, StaleEpochError, Tier, UnknownEntryError, refusal)

T = TypeVar("T")


class RedisDirectory(DirectorySteps):
    """Owner -> (worker, slot, tier, version, epoch) in Redis; metadata only, one round trip per op.
    Implements StateDirectory (actors/state_directory.py)."""

    def __init__(self, url: str, namespace: str = "rwttt", timeout_s: float = 2.0) -> None:
        self.url, self.ns = url, namespace
        try:
            # NOTE: no automatic retries: a retried commit whose first reply was lost would be
            # re-judged as a duplicate. Reads retry once in _call; writes surface the failure.
            # RESP2 (no HELLO): every Redis from 5.0 up answers it, and we need nothing of RESP3.
            self.r = redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s,
                                          retry=Retry(NoBackoff(), 0), protocol=2)
        except ValueError as exc:
            raise DirectoryUnavailableError(f"cannot reach Redis at {url}: {exc}") from exc
        self._call(self.r.ping)                      # fail fast, once, naming the URL
        scripts = (_REGISTER, _COMMIT, _MOVE, _REMOVE, _ENTRIES, _LIVE, _SESSION, _RESYNC, _ASSERT_EPOCH)
        (self._register, self._commit, self._move, self._remove, self._entries, self._live, self._session,
         self._resync, self._assert_epoch) = (self.r.register_script(s) for s in scripts)

    def _call(self, fn: Callable[..., T], *args: Any, idempotent: bool = False, **kw: Any) -> T:
        lost: Exception | None = None
        for _ in range(2 if idempotent else 1):     # reads retry once, on a fresh connection
            try:
                return fn(*args, **kw)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                lost = exc
            except redis.RedisError as exc:
                raise DirectoryError(f"Redis at {self.where} failed: {exc}") from exc
        raise DirectoryUnavailableError(f"cannot reach Redis at {self.where}: {lost}") from lost

    @property
    def where(self) -> str:
        """The URL without its password (for logs and errors)."""
        return re.sub(r"//[^@/]*@", "//", self.url)

    def key(self, *parts: str) -> str:
        return ":".join((self.ns, *parts))

    def _owner_keys(self, owner_id: str) -> list[str]:
        return [self.key("epoch"), self.key("owner", owner_id)]

    def _check(self, owner_id: str, epoch: int, expected: int | None, code: int, value: int) -> int:
        return refusal(owner_id, epoch, expected, int(code), int(value))

    def ping(self) -> bool:
        return bool(self._call(self.r.ping, idempotent=True))

    def close(self) -> None:
        self.r.close()

    # -- fencing ----------------------------------------------------------------------------
    def acquire_epoch(self) -> int:
        """A new scheduler takes a new epoch; every older epoch can no longer commit, move or remove."""
        return int(self._call(self.r.incr, self.key("epoch")))

    def current_epoch(self) -> int:
        return int(self._call(self.r.get, self.key("epoch"), idempotent=True) or 0)

    def assert_epoch(self, epoch: int) -> int:
        """After Redis lost data (restarted empty, or from an older snapshot): raise the fencing
        counter back to `epoch` if it fell below it; returns the counter as found."""
        return int(self._call(self._assert_epoch, keys=[self.key("epoch")], args=[epoch], idempotent=True))

    def resync(self, owners: list[ResyncRow], epoch: int) -> None:
        """Rewrite these owners' entries, requests and token logs from the scheduler's own state
        (fenced: only a current scheduler may), in one pipeline: Redis lost or rolled back them."""
        pipe = self.r.pipeline(transaction=False)
        for entry, request, tokens in owners:
            fields_ = entry.to_dict() | {"request": msgpack.packb(dict(request))}
            keys = [*self._owner_keys(entry.owner_id), self.key("owners"), self.key("tokens", entry.owner_id)]
            args = [epoch, entry.owner_id, len(fields_), *(x for kv in fields_.items() for x in kv), *tokens]
            self._resync(keys=keys, args=args, client=pipe)
        for code, value in self._call(pipe.execute):
            if int(code) == -1:
                raise StaleEpochError(f"epoch {epoch} is stale (current {value}): nothing re-registered")

    # -- entries ----------------------------------------------------------------------------
    def register(self, entry: DirectoryEntry, request: Mapping[str, Any] | None = None) -> None:
        """Create the owner's entry (fenced by entry.epoch); DuplicateEntryError if it exists."""
        fields_ = entry.to_dict() | {"request": msgpack.packb(dict(request or {}))}
        argv = [entry.epoch, entry.owner_id, *(x for kv in fields_.items() for x in kv)]
        keys = [*self._owner_keys(entry.owner_id), self.key("owners")]
        self._check(entry.owner_id, entry.epoch, None, *self._call(self._register, keys=keys, args=argv))

    def get(self, owner_id: str) -> DirectoryEntry | None:
        values = self._call(self.r.hmget, self.key("owner", owner_id), FIELDS, idempotent=True)
        return DirectoryEntry.from_dict(dict(zip(FIELDS, values))) if values[0] is not None else None

    def request_of(self, owner_id: str) -> dict[str, Any]:
        """The request stored at register(), so a restarted scheduler can resume the owner."""
        raw = self._call(self.r.hget, self.key("owner", owner_id), "request", idempotent=True)
        return msgpack.unpackb(raw) if raw else {}

    def entries(self) -> list[DirectoryEntry]:
        rows = self._call(self._entries, keys=[self.key("owners")], args=[self.key("owner", ""), *FIELDS],
                          idempotent=True)
        return sorted((DirectoryEntry.from_dict(dict(zip(FIELDS, row))) for row in rows), key=lambda e: e.owner_id)

    def remove(self, owner_id: str, epoch: int) -> bool:
        """Drop the entry, its token log and its payloads (fenced). True if the entry existed."""
        keys = [*self._owner_keys(owner_id), self.key("owners"), self.key("tokens", owner_id),
                self.key("payloads", owner_id)]
        return bool(self._check(owner_id, epoch, None, *self._call(self._remove, keys=keys, args=[epoch, owner_id])))

    # -- commit and move (atomic, fenced) ---------------------------------------------------
    def commit_many(self, commits: list[tuple[str, int]], epoch: int) -> list[int | DirectoryError]:
        """Several owners' commits in one round trip; each is its own compare-and-set."""
        if not commits:
            return []
        keys = [self.key("epoch"), *(self.key("owner", o) for o, _ in commits)]
        flat = self._call(self._commit, keys=keys, args=[epoch, *(v for _, v in commits)])
        out: list[int | DirectoryError] = []
        for i, (owner_id, expected) in enumerate(commits):
            try:
                out.append(self._check(owner_id, epoch, expected, int(flat[2 * i]), int(flat[2 * i + 1])))
            except DirectoryError as exc:
                out.append(exc)
        return out

    def _place(self, owner_id: str, epoch: int, worker_id: str, slot: int, tier: Tier, payload_key: str,
               expected: int | None, spill: bool) -> int:
        keys = [*self._owner_keys(owner_id), payload_key or self.key("none"), self.key("payloads", owner_id)]
        args = [epoch, worker_id, slot, tier.value, payload_key, "" if expected is None else expected, int(spill)]
        return self._check(owner_id, epoch, expected, *self._call(self._move, keys=keys, args=args))

    # -- payloads: written before the entry that points at them -----------------------------
    def payload_key(self, owner_id: str, version: int) -> str:
        return self.key("payload", owner_id, str(version))

    def put_payload(self, owner_id: str, version: int, blob: bytes) -> str:
        """Step 1 of a spill: store the state of `version` under its own versioned key."""
        key = self.payload_key(owner_id, version)
        # NOTE: a pipeline is emptied by a failed execute(), so a retry must rebuild it.
        self._call(lambda: self.r.pipeline().set(key, blob).zadd(self.key("payloads", owner_id), {key: version})
                   .execute(), idempotent=True)
        return key

    def get_payload(self, key: str) -> bytes | None:
        return self._call(self.r.get, key, idempotent=True)

    # -- token log and liveness -------------------------------------------------------------
    def start_turn(self, owner_id: str, epoch: int, request: Mapping[str, Any], version: int | None = None) -> int:
        """A session's new turn (or rollback): store its request, clear its token log and, for a
        rollback, set the version back to `version` (never forward). Fenced; one atomic step."""
        keys = [*self._owner_keys(owner_id), self.key("tokens", owner_id)]
        args = [epoch, "" if version is None else version, msgpack.packb(dict(request))]
        return self._check(owner_id, epoch, version, *self._call(self._session, keys=keys, args=args))

    def append_tokens(self, tokens: Mapping[str, list[int]]) -> None:
        """Append generated tokens per owner (one pipeline), so a lost owner can be replayed."""
        pipe = self.r.pipeline(transaction=False)
        for owner_id, toks in tokens.items():
            if toks:
                pipe.rpush(self.key("tokens", owner_id), *toks)
        self._call(pipe.execute)

    def tokens(self, owner_id: str) -> list[int]:
        return [int(x) for x in self._call(self.r.lrange, self.key("tokens", owner_id), 0, -1, idempotent=True)]

    def heartbeat(self, worker_id: str, ttl_s: float) -> None:
        """The worker is live for ttl_s more seconds (Redis expires the key)."""
        ttl_ms = max(1, round(ttl_s * 1000))
        self._call(lambda: self.r.pipeline(transaction=False).set(self.key("hb", worker_id), b"1", px=ttl_ms)
                   .sadd(self.key("workers"), worker_id).execute(), idempotent=True)

    def live_workers(self) -> set[str]:
        ids = self._call(self._live, keys=[self.key("workers")], args=[self.key("hb", "")], idempotent=True)
        return {w.decode() for w in ids}
