"""Benchmark modes beyond the process: RW-TTT through the Ray actors (and, later, HTTP).

The cluster is started (or joined with --address) and warmed up before the clock starts; the
trace's requests are submitted at once (uniform) or spaced by their arrival steps.
"""
from __future__ import annotations

import time
from dataclasses import replace

import torch

from rwttt_ray.bench.modes import ModeResult
from rwttt_ray.bench.traces import Trace
from rwttt_ray.core.request import Request


def _submit_trace(cluster, trace: Trace, step_s: float) -> list[str]:
    ids, t0 = [], time.perf_counter()
    for req, step in sorted(zip(trace.requests, trace.arrival_steps), key=lambda x: x[1]):
        delay = t0 + step * step_s - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        ids += cluster.submit([req])
    return ids


def _timed_run(cluster, trace: Trace, step_s: float, tag: str) -> tuple[dict, float, float]:
    """One timed pass; then each owner's logits are fetched and the owners released."""
    import ray

    renamed = Trace(trace.name, tuple(replace(r, owner_id=f"{r.owner_id}{tag}") for r in trace.requests),
                    trace.arrival_steps)
    start = time.time()
    ids = cluster.submit(list(renamed.requests)) if not any(trace.arrival_steps) else \
        _submit_trace(cluster, renamed, step_s)
    out = cluster.wait(ids)
    wall = time.time() - start
    for o, r in out.items():
        r["logits"] = [torch.tensor(x) for x in ray.get(cluster.workers[r["worker_id"]].logits.remote(o))]
    cluster.release(ids)
    return {o.removesuffix(tag): r for o, r in out.items()}, wall, start


def run_ray(args, model, trace: Trace) -> ModeResult:
    """The trace through the actors, `--repeat` times on one warm cluster; the median run is kept."""
    import ray

    from actors.cluster import RwtttCluster
    from rwttt_ray.cli import config_from

    cluster = RwtttCluster(config_from(args), num_workers=args.workers, address=args.address,
                           max_rounds=args.rounds_per_call, record_logits=True, quantum_steps=args.quantum_steps)
    try:
        cluster.run([Request("warmup", (5, 6, 7), 4)])
        runs = []
        for i in range(max(1, args.repeat)):
            before = cluster.stats()
            out, wall, start = _timed_run(cluster, trace, args.step_ms / 1e3, f"#{i}")
            runs.append((wall, out, start, before, cluster.stats(), i))
        wall, out, start, before, after, i = sorted(runs, key=lambda r: r[0])[len(runs) // 2]
        res = ModeResult("rwttt_ray", {o: r["tokens"] for o, r in out.items()}, wall)
        res.versions = {o: r["version"] for o, r in out.items()}
        res.logits = {o: r["logits"] for o, r in out.items()}
        for r in out.values():
            res.ttft_s.append(r["token_times"][0] - start)
            res.token_gaps_s.extend(b - a for a, b in zip(r["token_times"], r["token_times"][1:]))
        wstats = ray.get([w.stats.remote() for w in cluster.workers.values()])
        res.peak_rss_bytes = max(s["peak_rss_bytes"] for s in wstats)
        spills, reloads = sum(s["spills"] for s in wstats), sum(s["reloads"] for s in wstats)
        res.extra.update(spills=spills, reloads=reloads,
                         spill_ms_each=round(1e3 * sum(s["spill_s"] for s in wstats) / max(1, spills), 3),
                         reload_ms_each=round(1e3 * sum(s["reload_s"] for s in wstats) / max(1, reloads), 3))
        calls = after["calls"] - before["calls"]
        overhead = (after["call_s"] - before["call_s"]) - (after["compute_s"] - before["compute_s"])
        res.extra.update(workers=args.workers, calls=calls, rounds_per_call_max=args.rounds_per_call,
                         tokens_per_call=round(res.num_tokens / max(1, calls), 1),
                         ray_overhead_ms_per_call=round(1e3 * overhead / max(1, calls), 3), repeats=len(runs),
                         worker_compute_s=round(after["compute_s"] - before["compute_s"], 4),
                         all_walls_s=[round(r[0], 4) for r in runs])
        return res
    finally:
        cluster.shutdown()


def backend_modes(args) -> dict:
    if args.backend == "ray":
        return {"rwttt_ray": lambda model, trace: run_ray(args, model, trace)}
    raise ValueError(f"backend {args.backend!r} is not available yet")
