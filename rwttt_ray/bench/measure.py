"""Measurement helpers for the benchmark: peak RSS during a block, latency percentiles."""
from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def _tree_rss(pid: int) -> int:
    """RSS of a process and its children (replica processes, Ray workers started from it)."""
    total = _rss_bytes(pid)
    try:
        import psutil

        total += sum(_rss_bytes(c.pid) for c in psutil.Process(pid).children(recursive=True))
    except Exception:  # psutil missing or a child vanished mid-scan
        pass
    return total


@dataclass
class PeakRSS:
    peak_bytes: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)


@contextmanager
def peak_rss(interval_s: float = 0.02, tree: bool = False):
    """Samples RSS (of this process, or its whole tree) in a thread; yields a PeakRSS."""
    box, pid = PeakRSS(), os.getpid()
    sample = _tree_rss if tree else _rss_bytes

    def loop() -> None:
        while not box._stop.is_set():
            box.peak_bytes = max(box.peak_bytes, sample(pid))
            time.sleep(interval_s)

    th = threading.Thread(target=loop, daemon=True)
    th.start()
    try:
        yield box
    finally:
        box._stop.set()
        th.join()
        box.peak_bytes = max(box.peak_bytes, sample(pid))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    vs = sorted(values)
    k = min(len(vs) - 1, max(0, round(q / 100 * (len(vs) - 1))))
    return vs[k]
