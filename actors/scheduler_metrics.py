"""Prometheus text for /metrics: the scheduler's counters and histograms, the workers' spill counts,
owners per worker, queue depth. Read-only over a SchedulerActor's state (pure rendering in core/metrics)."""
from __future__ import annotations

from rwttt_ray.core.metrics import render

HELP = {"rwttt_tokens_total": "generated tokens", "rwttt_commits_total": "WRITE commits accepted",
        "rwttt_rejected_commits_total": "WRITE commits rejected (stale epoch/version)",
        "rwttt_groups_total": "groups executed", "rwttt_phases_total": "worker calls (phases)",
        "rwttt_spills_total": "owners spilled to the host tier", "rwttt_reloads_total": "owners reloaded",
        "rwttt_owners": "owners placed per worker", "rwttt_queue_depth": "owners with work waiting for a slot",
        "rwttt_active_owners": "owners generating", "rwttt_group_size": "owners per group",
        "rwttt_ttft_seconds": "time to first token", "rwttt_token_latency_seconds": "time between tokens"}


async def render_metrics(scheduler) -> str:
    wstats = {}
    for name, handle in scheduler.workers.items():
        if scheduler.core.workers[name].alive:
            wstats[name] = await handle.stats.remote()
    gauges = {f'rwttt_owners{{worker="{w}"}}': len(scheduler.core.owners_on(w)) for w in scheduler.workers}
    gauges["rwttt_queue_depth"] = sum(1 for r in scheduler.core.owners.values() if not r.finished and not r.resident)
    gauges["rwttt_active_owners"] = sum(1 for r in scheduler.core.owners.values() if not r.finished)
    counters = dict(scheduler.counters, rwttt_spills_total=sum(s["spills"] for s in wstats.values()),
                    rwttt_reloads_total=sum(s["reloads"] for s in wstats.values()))
    hists = {"rwttt_group_size": scheduler.group_sizes, "rwttt_ttft_seconds": scheduler.sessions.ttft,
             "rwttt_token_latency_seconds": scheduler.sessions.token_latency}
    return render(counters, gauges, hists, HELP)
