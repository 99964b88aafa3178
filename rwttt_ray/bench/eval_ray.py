"""The scaling sweep over Ray: one warm cluster, every owner count, spill past the device slots.

With `--backends ray` the sweep adds RW-TTT through the actors at each owner count, plus one count
above the cluster's device slots (--workers x --max-states-per-worker) when the list has none, so
owners spill to the host tier and reload; spills and reloads are reported per point. Each point's
owners are submitted at once (the sweep's trace is uniform by default) and their tokens are
checked against the sequential reference.
"""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from rwttt_ray.bench import modes
from rwttt_ray.bench.eval_modes import make, progress_bar, summarize
from rwttt_ray.bench.eval_options import EvalOptions
from rwttt_ray.bench.gates import token_match
from rwttt_ray.bench.modes import ModeResult
from rwttt_ray.config import RwtttConfig
from rwttt_ray.core.request import Request
from rwttt_ray.ttt.model import TTTModel


def ray_owner_counts(opts: EvalOptions, slots: int) -> list[int]:
    """The sweep's owner counts, plus 2 x slots when none exceeds the device slots."""
    counts = list(opts.sweep_owners)
    return counts if max(counts) > slots else counts + [2 * slots]


def _timed_pass(cluster: Any, trace: Any, tag: str) -> tuple[dict, float, float]:
    """One pass of the trace's owners submitted at once; no logits are fetched (spilled owners'
    logits do not survive the host tier), then the owners are released."""
    renamed = [replace(r, owner_id=f"{r.owner_id}{tag}") for r in trace.requests]
    start = time.time()
    ids = cluster.submit(renamed)
    out = cluster.wait(ids)
    wall = time.time() - start
    cluster.release(ids)
    return {o.removesuffix(tag): r for o, r in out.items()}, wall, start


def _result(out: dict, wall: float, start: float, spills: int, reloads: int) -> ModeResult:
    res = ModeResult("rwttt_ray", {o: r["tokens"] for o, r in out.items()}, wall)
    res.versions = {o: r["version"] for o, r in out.items()}
    for r in out.values():
        res.ttft_s.append(r["token_times"][0] - start)
        res.token_gaps_s.extend(b - a for a, b in zip(r["token_times"], r["token_times"][1:]))
    res.extra.update(spills=spills, reloads=reloads)
    return res


def _worker_counts(cluster: Any) -> tuple[int, int, int]:
    import ray

    stats = ray.get([w.stats.remote() for w in cluster.workers.values()])
    return (sum(s["spills"] for s in stats), sum(s["reloads"] for s in stats),
            max(s["peak_rss_bytes"] for s in stats))


def sweep_ray(model: TTTModel, opts: EvalOptions, config: RwtttConfig) -> tuple[list[dict], int]:
    """Rows like the in-process sweep's (plus spills, reloads, token match), and the slot count."""
    from actors.cluster import RwtttCluster

    slots = config.cluster.workers * config.batching.max_states_per_worker
    cluster = RwtttCluster(config=config, record_logits=True)
    rows = []
    try:
        cluster.run([Request("warmup", (5, 6, 7), 4)])
        for n in progress_bar(ray_owner_counts(opts, slots), "sweep ray"):
            trace = make(opts, model, opts.trace, n)
            s0, r0, _ = _worker_counts(cluster)
            out, wall, start = _timed_pass(cluster, trace, f"#sweep{n}")
            s1, r1, rss = _worker_counts(cluster)
            res = _result(out, wall, start, s1 - s0, r1 - r0)
            res.peak_rss_bytes = rss
            same, total = token_match(res, modes.run_sequential("sequential", model, trace))
            rows.append({**summarize(res, n), "token_match": f"{same}/{total}", "spill": n > slots})
    finally:
        cluster.shutdown()
    return rows, slots
