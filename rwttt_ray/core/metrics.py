"""Prometheus text exposition for the scheduler's counters, gauges and histograms (pure)."""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


@dataclass
class Histogram:
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    n: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        i = bisect.bisect_left(self.buckets, value)
        if i < len(self.counts):
            self.counts[i] += 1
        self.total += value
        self.n += 1

    def lines(self, name: str) -> list[str]:
        out, cum = [], 0
        for b, c in zip(self.buckets, self.counts):
            cum += c
            out.append(f'{name}_bucket{{le="{b}"}} {cum}')
        out += [f'{name}_bucket{{le="+Inf"}} {self.n}', f"{name}_sum {self.total}", f"{name}_count {self.n}"]
        return out


def render(counters: dict[str, float], gauges: dict[str, float], histograms: dict[str, Histogram],
           help_text: dict[str, str]) -> str:
    lines, described = [], set()
    for kind, values in (("counter", counters), ("gauge", gauges)):
        for name, value in sorted(values.items()):
            base = name.split("{")[0]
            if base not in described:       # once per metric family, before its first sample
                described.add(base)
                lines += [f"# HELP {base} {help_text.get(base, base)}", f"# TYPE {base} {kind}"]
            lines.append(f"{name} {value}")
    for name, hist in sorted(histograms.items()):
        lines += [f"# HELP {name} {help_text.get(name, name)}", f"# TYPE {name} histogram", *hist.lines(name)]
    return "\n".join(lines) + "\n"
