"""EventLog: the operator's events (worker lost, replay, scheduler restart, Redis outage, drain,
adoption), numbered, so a console can print each once by asking for those after the last it saw."""
from __future__ import annotations

from collections import deque


class EventLog:
    def __init__(self, keep: int = 1000) -> None:
        self.seq = 0
        self.lines: deque[tuple[int, str]] = deque(maxlen=keep)

    def add(self, line: str) -> None:
        self.seq += 1
        self.lines.append((self.seq, line))

    def since(self, seq: int) -> tuple[int, list[str]]:
        """(the last number, the lines numbered after `seq`); a `seq` ahead of this log (another
        log's) gets every line kept."""
        if seq > self.seq:
            seq = 0
        return self.seq, [line for n, line in self.lines if n > seq]
