"""`rwttt eval` plots (matplotlib, Agg backend, PNG next to the JSON).

throughput_vs_owners.png: aggregate generated tok/s per mode against owners (log2 axes);
latency_vs_owners.png: TTFT p50 and per-token p50/p99 per mode against owners;
modes.png: tok/s of every mode on the modes run, with its ratio to sequential.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

STYLE = {"sequential": "o-", "naive_shared": "x--", "static_ceiling": "^:", "rwttt_inproc": "s-", "rwttt_ray": "D-"}


def _finite(rows: list[dict], key: str) -> tuple[list[int], list[float]]:
    pts = [(r["owners"], r[key]) for r in rows if r.get(key) == r.get(key) and r.get(key) is not None]
    return [p[0] for p in pts], [p[1] for p in pts]


def _owners_axis(ax: Any, owners: list[int]) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(owners, [str(n) for n in owners])
    ax.set_xlabel("owners (concurrent streams)")
    ax.grid(True, alpha=0.3)


def throughput_plot(sweep: dict[str, Any], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for mode, rows in sweep["modes"].items():
        ax.plot(*_finite(rows, "tok_per_s"), STYLE.get(mode, "o-"), label=mode)
    owners = sorted({r["owners"] for rows in sweep["modes"].values() for r in rows})
    _owners_axis(ax, owners)
    ax.set_yscale("log")
    ax.set_ylabel("aggregate generated tok/s")
    ax.set_title("Throughput vs owners")
    ax.legend()
    return _save(fig, path)


def latency_plot(sweep: dict[str, Any], path: Path) -> Path:
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2), sharex=True)
    owners = sorted({r["owners"] for rows in sweep["modes"].values() for r in rows})
    for ax, (key, title) in zip(axes, (("ttft_p50_ms", "TTFT p50"), ("tpot_p50_ms", "per-token p50"),
                                       ("tpot_p99_ms", "per-token p99"))):
        for mode, rows in sweep["modes"].items():
            ax.plot(*_finite(rows, key), STYLE.get(mode, "o-"), label=mode)
        _owners_axis(ax, owners)
        ax.set_yscale("log")
        ax.set_ylabel("ms")
        ax.set_title(title)
    axes[0].legend(fontsize=8)
    fig.suptitle("Latency percentiles vs owners")
    return _save(fig, path)


def modes_plot(modes: dict[str, dict], path: Path) -> Path:
    names = list(modes)
    rates = [modes[n]["tok_per_s"] for n in names]
    seq = modes.get("sequential", {}).get("tok_per_s") or 0
    fig, ax = plt.subplots(figsize=(8, 4.2))
    bars = ax.bar(names, rates, color=["tab:red" if n == "naive_shared" else "tab:blue" for n in names])
    for bar, rate in zip(bars, rates):
        ax.annotate(f"{rate / seq:.2f}x" if seq else "", (bar.get_x() + bar.get_width() / 2, rate),
                    ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("aggregate generated tok/s")
    ax.set_title("Modes on one trace (ratio to sequential; naive batching is wrong, in red)")
    ax.tick_params(axis="x", rotation=25)
    return _save(fig, path)


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_plots(doc: dict[str, Any], out: Path) -> list[str]:
    """Every plot into `out`; returns their file names."""
    paths = [throughput_plot(doc["sweep"], out / "throughput_vs_owners.png"),
             latency_plot(doc["sweep"], out / "latency_vs_owners.png"),
             modes_plot(doc["modes"], out / "modes.png")]
    return [p.name for p in paths]
