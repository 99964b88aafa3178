"""RedisDirectory: where each owner's state lives and at what version, fenced by an epoch.

The only module that imports redis. Keys, namespaced per cluster: `{ns}:epoch` (fencing counter),
`{ns}:owners` (set), `{ns}:owner:{id}` (hash: tenant, worker, slot, tier, version, epoch,
payload_key, request), `{ns}:tokens:{id}` (token log), `{ns}:payload:{id}:{version}` (spilled
state, written BEFORE the entry points at it), `{ns}:hb:{worker}` (liveness, TTL). Commits and
moves are single Lua scripts: compare-and-set on (epoch, version) in one atomic step.
"""
from __future__ import annotations

import enum
from dataclasses import asdict, dataclass
from typing import Any, Callable, TypeVar

import msgpack
import redis

T = TypeVar("T")


class Tier(enum.Enum):
    DEVICE = "device"   # a worker's pool slot
    HOST = "host"       # a worker's host memory
    STORE = "store"     # the shared store (a payload key here)


class DirectoryError(RuntimeError):
    """A directory operation was rejected."""


class StaleEpochError(DirectoryError):
    """The caller's epoch is older than the current fencing epoch (a stale scheduler)."""


class DirectoryVersionError(DirectoryError):
    """The stored version differs from the caller's expected version."""


class UnknownEntryError(DirectoryError):
    """No entry for that owner."""


class DirectoryUnavailableError(DirectoryError):
    """Redis cannot be reached."""


@dataclass(frozen=True, slots=True)
class DirectoryEntry:
    owner_id: str
    worker_id: str
    version: int = 0
    epoch: int = 0
    tier: Tier = Tier.DEVICE
    slot: int = -1
    tenant_id: str = ""
    payload_key: str = ""

    def to_fields(self) -> dict[str, Any]:
        d = asdict(self)
        d["tier"] = self.tier.value
        return d

    @classmethod
    def from_fields(cls, f: dict[bytes, bytes]) -> "DirectoryEntry":
        g = {k.decode(): v.decode() for k, v in f.items() if k != b"request"}
        return cls(g["owner_id"], g["worker_id"], int(g["version"]), int(g["epoch"]), Tier(g["tier"]),
                   int(g["slot"]), g["tenant_id"], g["payload_key"])


_COMMIT = """
local cur = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[1]) < cur then return {-1, cur} end
if redis.call('EXISTS', KEYS[1]) == 0 then return {-3, 0} end
local v = tonumber(redis.call('HGET', KEYS[1], 'version'))
if v ~= tonumber(ARGV[2]) then return {-2, v} end
redis.call('HSET', KEYS[1], 'version', v + 1, 'epoch', ARGV[1])
return {1, v + 1}
"""
_MOVE = """
local cur = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[1]) < cur then return {-1, cur} end
if redis.call('EXISTS', KEYS[1]) == 0 then return {-3, 0} end
local v = tonumber(redis.call('HGET', KEYS[1], 'version'))
if ARGV[6] ~= '' and v ~= tonumber(ARGV[6]) then return {-2, v} end
redis.call('HSET', KEYS[1], 'worker_id', ARGV[2], 'slot', ARGV[3], 'tier', ARGV[4], 'payload_key', ARGV[5], 'epoch', ARGV[1])
return {1, v}
"""
_REGISTER = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
redis.call('SADD', KEYS[2], KEYS[3])
return 1
"""


class RedisDirectory:
    """Owner -> (worker, slot, tier, version, epoch) in Redis; metadata only, sub-ms ops."""

    def __init__(self, url: str, namespace: str = "rwttt", timeout_s: float = 2.0) -> None:
        self.url, self.ns = url, namespace
        self.r = redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s,
                                      retry_on_timeout=False)
        self._call(self.r.ping)
        self._commit = self.r.register_script(_COMMIT)
        self._move = self.r.register_script(_MOVE)
        self._register = self.r.register_script(_REGISTER)

    def _call(self, fn: Callable[..., T], *args, **kw) -> T:
        try:
            return fn(*args, **kw)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise DirectoryUnavailableError(f"cannot reach Redis at {self.url}: {exc}") from None

    def key(self, *parts: str) -> str:
        return ":".join((self.ns, *parts))

    def ping(self) -> bool:
        return bool(self._call(self.r.ping))

    # -- fencing --------------------------------------------------------------------------
    def acquire_epoch(self) -> int:
        """A new scheduler takes a new epoch; every older epoch can no longer commit or move."""
        return int(self._call(self.r.incr, self.key("epoch")))

    def current_epoch(self) -> int:
        return int(self._call(self.r.get, self.key("epoch")) or 0)

    # -- entries ----------------------------------------------------------------------------
    def register(self, entry: DirectoryEntry, request: dict | None = None) -> None:
        fields = entry.to_fields()
        fields["request"] = msgpack.packb(request or {})
        argv = [x for kv in fields.items() for x in kv]
        ok = self._call(self._register, keys=[self.key("owner", entry.owner_id), self.key("owners"), entry.owner_id],
                        args=argv)
        if not ok:
            raise DirectoryError(f"owner {entry.owner_id} is already registered")

    def get(self, owner_id: str) -> DirectoryEntry | None:
        fields = self._call(self.r.hgetall, self.key("owner", owner_id))
        return DirectoryEntry.from_fields(fields) if fields else None

    def request_of(self, owner_id: str) -> dict:
        raw = self._call(self.r.hget, self.key("owner", owner_id), "request")
        return msgpack.unpackb(raw) if raw else {}

    def entries(self) -> list[DirectoryEntry]:
        ids = sorted(x.decode() for x in self._call(self.r.smembers, self.key("owners")))
        pipe = self.r.pipeline(transaction=False)
        for owner_id in ids:
            pipe.hgetall(self.key("owner", owner_id))
        return [DirectoryEntry.from_fields(f) for f in self._call(pipe.execute) if f]

    def remove(self, owner_id: str) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(self.key("owner", owner_id), self.key("tokens", owner_id))
        pipe.srem(self.key("owners"), owner_id)
        self._call(pipe.execute)

    def ledger_snapshot(self) -> dict[str, int]:
        return {e.owner_id: e.version for e in self.entries()}

    # -- commit and move (atomic, fenced) ----------------------------------------------------
    def _check(self, owner_id: str, epoch: int, expected: int | None, res: list) -> int:
        code, value = int(res[0]), int(res[1])
        if code == -1:
            raise StaleEpochError(f"epoch {epoch} is stale (current {value}): owner {owner_id} not changed")
        if code == -2:
            raise DirectoryVersionError(f"owner {owner_id}: expected version {expected}, stored {value}")
        if code == -3:
            raise UnknownEntryError(f"owner {owner_id} has no directory entry")
        return value

    def commit(self, owner_id: str, epoch: int, expected_version: int) -> int:
        """version := expected + 1, only if epoch is current and the stored version is expected."""
        res = self._call(self._commit, keys=[self.key("owner", owner_id), self.key("epoch")],
                         args=[epoch, expected_version])
        return self._check(owner_id, epoch, expected_version, res)

    def commit_many(self, commits: list[tuple[str, int]], epoch: int) -> list[int | DirectoryError]:
        """Several owners' commits in one round trip; each is its own atomic CAS."""
        pipe = self.r.pipeline(transaction=False)
        for owner_id, expected in commits:
            self._commit(keys=[self.key("owner", owner_id), self.key("epoch")], args=[epoch, expected], client=pipe)
        out: list[int | DirectoryError] = []
        for (owner_id, expected), res in zip(commits, self._call(pipe.execute)):
            try:
                out.append(self._check(owner_id, epoch, expected, res))
            except DirectoryError as exc:
                out.append(exc)
        return out

    def move(self, owner_id: str, epoch: int, worker_id: str, tier: Tier = Tier.DEVICE, slot: int = -1,
             payload_key: str = "", expected_version: int | None = None) -> int:
        """Atomic placement change; the version is unchanged (and checked when given)."""
        args = [epoch, worker_id, slot, tier.value, payload_key, "" if expected_version is None else expected_version]
        res = self._call(self._move, keys=[self.key("owner", owner_id), self.key("epoch")], args=args)
        return self._check(owner_id, epoch, expected_version, res)

    # -- payloads: written before the entry that points at them ------------------------------
    def payload_key(self, owner_id: str, version: int) -> str:
        return self.key("payload", owner_id, str(version))

    def put_payload(self, owner_id: str, version: int, blob: bytes) -> str:
        key = self.payload_key(owner_id, version)
        self._call(self.r.set, key, blob)
        return key

    def get_payload(self, key: str) -> bytes | None:
        return self._call(self.r.get, key)

    def point_to_payload(self, owner_id: str, epoch: int, version: int, key: str) -> None:
        """Second step of a spill: the entry points at an existing payload (version must match)."""
        if not self._call(self.r.exists, key):
            raise DirectoryError(f"payload {key} does not exist; not pointing at it")
        self.move(owner_id, epoch, "", Tier.STORE, -1, key, expected_version=version)

    def spill(self, owner_id: str, epoch: int, version: int, blob: bytes) -> str:
        key = self.put_payload(owner_id, version, blob)
        self.point_to_payload(owner_id, epoch, version, key)
        return key

    # -- token log and liveness -------------------------------------------------------------
    def append_tokens(self, tokens: dict[str, list[int]]) -> None:
        pipe = self.r.pipeline(transaction=False)
        for owner_id, toks in tokens.items():
            if toks:
                pipe.rpush(self.key("tokens", owner_id), *toks)
        self._call(pipe.execute)

    def tokens(self, owner_id: str) -> list[int]:
        return [int(x) for x in self._call(self.r.lrange, self.key("tokens", owner_id), 0, -1)]

    def heartbeat(self, worker_id: str, ttl_s: float) -> None:
        self._call(self.r.set, self.key("hb", worker_id), b"1", px=max(1, int(ttl_s * 1000)))

    def live_workers(self) -> set[str]:
        prefix = self.key("hb", "")
        keys = self._call(lambda: list(self.r.scan_iter(match=prefix + "*")))
        return {k.decode()[len(prefix):] for k in keys}

    def close(self) -> None:
        self.r.close()
