"""Prometheus text for /metrics: the scheduler's counters and histograms, the workers' spill counts,
owners per worker, queue depth, and per tenant (label `tenant`) tokens in the last minute and owners
generating. Read-only over a SchedulerActor's state (pure rendering in core/metrics)."""
from __future__ import annotations

from rwttt_ray.core.metrics import render

HELP = {"rwttt_tokens_total": "generated tokens", "rwttt_commits_total": "WRITE commits accepted",
        "rwttt_rejected_commits_total": "WRITE commits rejected (stale epoch/version)",
        "rwttt_groups_total": "groups executed", "rwttt_phases_total": "worker calls (phases)",
        "rwttt_spills_total": "owners spilled to the host tier", "rwttt_reloads_total": "owners reloaded",
        "rwttt_owners": "owners placed per worker", "rwttt_queue_depth": "owners with work waiting for a slot",
        "rwttt_active_owners": "owners generating", "rwttt_group_size": "owners per group",
        "rwttt_ttft_seconds": "time to first token", "rwttt_token_latency_seconds": "time between tokens",
        "rwttt_tenant_tokens_total": "tokens generated for the tenant",
        "rwttt_tenant_tokens_last_minute": "tokens generated for the tenant in the last 60 s (its quota window)",
        "rwttt_tenant_active_owners": "the tenant's owners generating",
        "rwttt_tenant_sessions": "the tenant's live sessions"}


async def render_metrics(scheduler) -> str:
    wstats = {}
    for name, worker in scheduler.workers.items():
        if scheduler.core.workers[name].alive:
            try:
                wstats[name] = await worker.stats()
            except Exception:       # lost since (its loop has not seen it yet): no spill counts
                pass
    gauges = {f'rwttt_owners{{worker="{w}"}}': len(scheduler.core.owners_on(w)) for w in scheduler.workers}
    gauges["rwttt_queue_depth"] = sum(1 for r in scheduler.core.owners.values() if not r.finished and not r.resident)
    gauges["rwttt_active_owners"] = sum(1 for r in scheduler.core.owners.values() if not r.finished)
    tenants = scheduler.sessions.tenants
    for tenant, usage in sorted(tenants.usage.items()):
        label = _label(tenant)
        gauges[f'rwttt_tenant_tokens_last_minute{{tenant="{label}"}}'] = tenants.tokens_last_minute(tenant)
        gauges[f'rwttt_tenant_active_owners{{tenant="{label}"}}'] = len(usage.active)
        gauges[f'rwttt_tenant_sessions{{tenant="{label}"}}'] = len(usage.sessions)
    counters = {f'rwttt_tenant_tokens_total{{tenant="{_label(t)}"}}': u.total_tokens
                for t, u in sorted(tenants.usage.items())}
    counters.update(scheduler.counters, rwttt_spills_total=sum(s["spills"] for s in wstats.values()),
                    rwttt_reloads_total=sum(s["reloads"] for s in wstats.values()))
    hists = {"rwttt_group_size": scheduler.group_sizes, "rwttt_ttft_seconds": scheduler.sessions.ttft,
             "rwttt_token_latency_seconds": scheduler.sessions.token_latency}
    return render(counters, gauges, hists, HELP)


def _label(value: str) -> str:
    """A Prometheus label value, escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
