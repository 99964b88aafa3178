"""A local cluster's private Serve ports: a reserved block no other process gets, and the HAProxy
shim that binds Serve's stats and metrics frontends to the serve host and then is haproxy."""
import subprocess
import sys
from pathlib import Path

from actors.local_ports import BLOCK, haproxy_shim, reserve_block, serve_ports

CONFIG = """global
    stats socket /x/admin.sock mode 666 level admin
frontend prometheus
    bind :9101
frontend http_frontend
    bind 127.0.0.1:8000
listen stats
  bind *:8404
"""


def test_block_is_this_process_alone():
    base = reserve_block()
    assert reserve_block() == base                                   # the same block on every call
    code = "from actors.local_ports import reserve_block; print(reserve_block())"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           cwd=Path(__file__).parents[2]).stdout.strip()
    assert abs(int(other) - base) >= BLOCK                           # another process: another block
    ports = {int(v) for k, v in serve_ports().items() if k.endswith("PORT")}
    assert all(base <= p < base + BLOCK for p in ports) and len(ports) == 8


def test_shim_binds_stats_and_metrics_to_the_host_and_execs_haproxy(tmp_path):
    real = tmp_path / "real-haproxy"
    real.write_text('#!/bin/sh\necho "pid $$ args $*"\ncat "$3"\n')
    real.chmod(0o700)
    (tmp_path / "haproxy.cfg").write_text(CONFIG)
    shim = haproxy_shim(str(tmp_path), "127.0.0.1", str(real))
    proc = subprocess.Popen([shim, "-db", "-f", str(tmp_path / "haproxy.cfg"), "-dR"], stdout=subprocess.PIPE,
                            text=True)
    out = proc.communicate(timeout=10)[0]
    assert out.startswith(f"pid {proc.pid} args -db -f {tmp_path / 'haproxy.cfg'} -dR")   # exec'd: same pid
    binds = [ln.strip() for ln in out.splitlines() if ln.strip().startswith("bind")]
    assert binds == ["bind 127.0.0.1:9101", "bind 127.0.0.1:8000", "bind 127.0.0.1:8404"]
    haproxy_shim(str(tmp_path), "0.0.0.0", str(real))                # all interfaces asked: Serve's binds stay
    (tmp_path / "haproxy.cfg").write_text(CONFIG)
    out = subprocess.run([shim, "-db", "-f", str(tmp_path / "haproxy.cfg")], capture_output=True, text=True,
                         timeout=10).stdout
    assert "bind *:8404" in out and "bind 127.0.0.1:8000" in out
