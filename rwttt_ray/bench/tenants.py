"""Two-tenant fairness benchmark: one tenant floods, one stays steadily backlogged, on a real cluster.

"flood" submits `flood_factor` x the device slots at once; "steady" keeps a few owners in flight
(twice its slot share), starting a new one each time one finishes. Both go through the
scheduler's service API (`complete`, tenants with weights); each owner's token times come from the
scheduler. Per tenant: tokens served while both were backlogged, their share against the weight
share, tok/s, TTFT and per-token (TPOT) p50/p99. One run per policy pair: vtc+tenant_lru, fcfs+lru.
"""
from __future__ import annotations

import math
import random
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Callable, Mapping

from rwttt_ray.bench.measure import percentile
from rwttt_ray.core.request import Request

if TYPE_CHECKING:
    from rwttt_ray.bench.options import BenchOptions
    from rwttt_ray.config import RwtttConfig

FLOOD, STEADY = "flood", "steady"
TENANTS = (FLOOD, STEADY)
POLICY_PAIRS = (("vtc", "tenant_lru"), ("fcfs", "lru"))   # (fairness_policy, eviction_policy)
FAIR_TOLERANCE = 0.10                                       # |share / weight share - 1| at most
SAMPLED_OWNERS = 4                                          # per tenant, checked against the reference


@dataclass(frozen=True)
class TenantTrace:
    """Prompts per tenant: flood's all arrive at once; steady's keep `steady_inflight` in flight."""

    flood: tuple[tuple[int, ...], ...]
    steady: tuple[tuple[int, ...], ...]
    gen_len: int                        # tokens generated per owner
    num_slots: int                      # device slots of the cluster (all workers)
    weights: Mapping[str, float]        # tenant -> weight
    steady_inflight: int                # steady owners generating at once

    def weight_share(self, tenant_id: str) -> float:
        return self.weights[tenant_id] / sum(self.weights.values())

    def slot_share(self, tenant_id: str) -> int:
        """Slots the tenant is owed; it counts as backlogged while it has at least this many owners."""
        return max(1, math.ceil(self.num_slots * self.weight_share(tenant_id) - 1e-9))


@dataclass
class OwnerRun:
    """One finished owner as the driver saw it (times are wall clock, as the scheduler's)."""

    owner_id: str
    tenant_id: str
    prompt: tuple[int, ...]
    submit_s: float
    tokens: list[int] = field(default_factory=list)
    token_times: list[float] = field(default_factory=list)

    @property
    def finish_s(self) -> float:
        return self.token_times[-1]


def make_tenant_trace(num_slots: int, prompt_len: int, gen_len: int, weights: tuple[float, float] = (1.0, 1.0),
                      seed: int = 0, flood_factor: int = 4) -> TenantTrace:
    """Seeded prompts; `weights`: (flood, steady). Steady has as many owners as flood in all."""
    if min(num_slots, prompt_len, gen_len, flood_factor) < 1 or min(weights) <= 0:
        raise ValueError("slots, prompt/gen lengths and flood factor must be >= 1, weights > 0")
    rng = random.Random(seed)
    num_flood = flood_factor * num_slots
    prompts = [tuple(rng.randint(35, 125) for _ in range(prompt_len)) for _ in range(2 * num_flood)]
    trace = TenantTrace(tuple(prompts[:num_flood]), tuple(prompts[num_flood:]), gen_len, num_slots,
                        dict(zip(TENANTS, weights)), 0)
    # NOTE: twice its share: its residents run in lockstep and finish together; the rest still wait
    return replace(trace, steady_inflight=2 * trace.slot_share(STEADY))


def tenant_limits(trace: TenantTrace) -> dict[str, dict]:
    """The cluster's tenant limits: the weights, and room for every owner of the trace at once."""
    n = len(trace.flood) + len(trace.steady)
    return {t: {"weight": trace.weights[t], "max_active": n, "max_sessions": n} for t in TENANTS}


# -- driving the cluster ------------------------------------------------------------------------
class _Driver:
    """Starts owners through `complete` without blocking (a start waits for the worker's running
    phase), then waits for each; `step` returns the owners that finished since the last call."""

    def __init__(self, scheduler, trace: TenantTrace, timeout_s: float) -> None:
        self.scheduler, self.trace, self.timeout_s = scheduler, trace, timeout_s
        self.starting: dict = {}          # complete ref -> OwnerRun (no owner id yet)
        self.pending: dict = {}           # wait ref -> OwnerRun (tokens not in yet)
        self.released: list = []

    @property
    def busy(self) -> bool:
        return bool(self.starting or self.pending)

    def launch(self, tenant_id: str, prompts: list[tuple[int, ...]]) -> None:
        submit_s = time.time()
        for p in prompts:
            ref = self.scheduler.complete.remote(tenant_id, None, list(p), self.trace.gen_len)
            self.starting[ref] = OwnerRun("", tenant_id, p, submit_s)

    def step(self) -> list[OwnerRun]:
        import ray

        refs = [*self.starting, *self.pending]
        ray.wait(refs, num_returns=1)
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        finished = []
        for ref in ready:
            if ref in self.starting:
                run = self.starting.pop(ref)
                run.owner_id = ray.get(ref)["owner_id"]
                self.pending[self.scheduler.wait.remote([run.owner_id], self.timeout_s)] = run
            else:
                finished.append(self._finish(ref))
        return finished

    def _finish(self, ref) -> OwnerRun:
        import ray

        run = self.pending.pop(ref)
        res = ray.get(ref)[run.owner_id]
        if res["error"]:
            raise RuntimeError(f"owner {run.owner_id} of tenant {run.tenant_id} failed: {res['error']}")
        run.tokens, run.token_times = list(res["tokens"]), list(res["token_times"])
        self.released.append(self.scheduler.release.remote(run.owner_id))
        return run


def drive(cluster, trace: TenantTrace, timeout_s: float = 600.0) -> list[OwnerRun]:
    """Run the trace on a started cluster; every owner, in finishing order. A steady owner that
    finishes is replaced at once, so steady keeps `steady_inflight` owners until its prompts run out."""
    import ray

    driver, queue, runs = _Driver(cluster.scheduler, trace, timeout_s), deque(trace.steady), []
    driver.launch(FLOOD, list(trace.flood))
    driver.launch(STEADY, [queue.popleft() for _ in range(min(trace.steady_inflight, len(queue)))])
    while driver.busy:
        finished = driver.step()
        runs += finished
        num_new = min(len(queue), sum(r.tenant_id == STEADY for r in finished))
        driver.launch(STEADY, [queue.popleft() for _ in range(num_new)])
    ray.get(driver.released)
    return runs


# -- figures -----------------------------------------------------------------------------------
def backlogged_window(runs: list[OwnerRun], trace: TenantTrace) -> tuple[float, float]:
    """(start, end): from the last tenant's first submission until the first moment a tenant has
    fewer unfinished owners than its slot share (it could no longer use all it is owed)."""
    start = max(min(r.submit_s for r in runs if r.tenant_id == t) for t in TENANTS)
    ends = [_share_lost(start, [r for r in runs if r.tenant_id == t], trace.slot_share(t)) for t in TENANTS]
    return start, max(start, min(ends))


def _share_lost(start: float, runs: list[OwnerRun], share: int) -> float:
    """The first time at or after `start` the owners submitted and not finished are fewer than `share`."""
    deltas: dict[float, int] = {}
    for r in runs:
        deltas[r.submit_s] = deltas.get(r.submit_s, 0) + 1
        deltas[r.finish_s] = deltas.get(r.finish_s, 0) - 1
    unfinished = 0
    for when in sorted(deltas):        # NOTE: everything at one instant first (tokens share a phase's stamp)
        unfinished += deltas[when]
        if when >= start and unfinished < share:
            return when
    return max(deltas)


def tenant_figures(runs: list[OwnerRun], window: tuple[float, float]) -> dict:
    """One tenant's figures; `tokens` counts only tokens served inside the window."""
    start, end = window
    inside = sum(start <= t <= end for r in runs for t in r.token_times)
    ttft = [r.token_times[0] - r.submit_s for r in runs]
    # NOTE: per owner, not per gap: a phase's tokens share one stamp, so most gaps are 0
    tpot = [(r.token_times[-1] - r.token_times[0]) / (len(r.token_times) - 1) for r in runs if len(r.token_times) > 1]
    return {"owners": len(runs), "tokens": inside, "tokens_total": sum(len(r.tokens) for r in runs),
            "tok_per_s": round(inside / max(end - start, 1e-9), 2),
            "ttft_p50_ms": _ms(ttft, 50), "ttft_p99_ms": _ms(ttft, 99),
            "tpot_p50_ms": _ms(tpot, 50), "tpot_p99_ms": _ms(tpot, 99)}


def _ms(values_s: list[float], q: float) -> float:
    return round(1e3 * percentile(values_s, q), 2)


def summarize(runs: list[OwnerRun], trace: TenantTrace) -> dict:
    """Per tenant figures plus its share of the window's tokens against its weight share."""
    window = backlogged_window(runs, trace)
    tenants = {t: tenant_figures([r for r in runs if r.tenant_id == t], window) for t in TENANTS}
    total = max(1, sum(f["tokens"] for f in tenants.values()))
    for t, f in tenants.items():
        f.update(weight_share=round(trace.weight_share(t), 4), share=round(f["tokens"] / total, 4))
    steady = tenants[STEADY]
    return {"window_s": round(window[1] - window[0], 3), "tenants": tenants,
            "steady_share_vs_weight": round(steady["share"] / steady["weight_share"], 3),
            "fair": abs(steady["share"] / steady["weight_share"] - 1) <= FAIR_TOLERANCE}


def token_mismatches(runs: list[OwnerRun], gen_len: int, reference_fn: Callable,
                     per_tenant: int = SAMPLED_OWNERS) -> list[str]:
    """Owners (the first `per_tenant` of each tenant) whose tokens differ from the sequential
    reference; `reference_fn(Request) -> tokens`."""
    sample = [r for t in TENANTS for r in [x for x in runs if x.tenant_id == t][:per_tenant]]
    return [r.owner_id for r in sample
            if r.tokens != list(reference_fn(Request(r.owner_id, r.prompt, gen_len)))]


# -- the CLI entry -----------------------------------------------------------------------------
def policy_name(fairness: str, eviction: str) -> str:
    return f"{fairness}+{eviction}"


def table(results: Mapping[str, dict]) -> str:
    head = (f"{'policy':<16}{'tenant':<8}{'weight':>8}{'share':>8}{'tokens':>8}{'tok/s':>9}"
            f"{'TTFT p50 ms':>13}{'TTFT p99 ms':>13}{'TPOT p50 ms':>13}{'TPOT p99 ms':>13}")
    lines = [head, "-" * len(head)]
    for name, res in results.items():
        for t, f in res["tenants"].items():
            lines.append(f"{name:<16}{t:<8}{f['weight_share']:>8.2f}{f['share']:>8.2f}{f['tokens']:>8}"
                         f"{f['tok_per_s']:>9.1f}{f['ttft_p50_ms']:>13.1f}{f['ttft_p99_ms']:>13.1f}"
                         f"{f['tpot_p50_ms']:>13.2f}{f['tpot_p99_ms']:>13.2f}")
        lines.append(f"{'':<16}steady share / weight share = {res['steady_share_vs_weight']:.3f} "
                     f"over {res['window_s']:.2f} s both backlogged ({'fair' if res['fair'] else 'UNFAIR'})")
    return "\n".join(lines)


class _CachedReference:
    """The sequential reference's tokens, once per prompt (both policies run the same prompts)."""

    def __init__(self, model) -> None:
        from rwttt_ray.ttt.reference import SequentialReference

        self.reference, self.known = SequentialReference(model, record_logits=False), {}

    def __call__(self, req: Request) -> list[int]:
        if req.prompt not in self.known:
            self.known[req.prompt] = self.reference.run(req).tokens
        return self.known[req.prompt]


def _run_policy(config: RwtttConfig, trace: TenantTrace) -> list[OwnerRun]:
    """The trace on a fresh local (or --address) cluster with `config`'s policies, warmed up first."""
    from actors.cluster import RwtttCluster

    cluster = RwtttCluster(config=config.replace(tenant_limits=tenant_limits(trace)))
    try:
        cluster.run([Request("warmup", (5, 6, 7), 4)])
        return drive(cluster, trace)
    finally:
        cluster.shutdown()


def run_tenants(config: RwtttConfig, opts: BenchOptions, model) -> int:
    """`rwttt bench --backend ray --tenants`: both policy pairs, the table, the JSON; 3 on a token mismatch."""
    from rwttt_ray.bench.report import write_json

    trace = make_tenant_trace(config.cluster.workers * config.batching.max_states_per_worker, opts.prompt_len,
                              opts.gen_len, opts.tenant_weights, opts.seed)
    reference, results, mismatched, checked = _CachedReference(model), {}, [], 0
    for fairness, eviction in POLICY_PAIRS:
        runs = _run_policy(config.replace(fairness_policy=fairness, eviction_policy=eviction), trace)
        results[policy_name(fairness, eviction)] = summarize(runs, trace)
        mismatched += token_mismatches(runs, trace.gen_len, reference)
        checked += sum(min(SAMPLED_OWNERS, sum(r.tenant_id == t for r in runs)) for t in TENANTS)
    match = f"{checked - len(mismatched)}/{checked}"
    print(table(results))
    print(f"token match vs the sequential reference (sampled owners): {match}")
    if opts.json:
        doc = {"slots": trace.num_slots, "flood_owners": len(trace.flood), "steady_owners": len(trace.steady),
               "steady_inflight": trace.steady_inflight, "weights": dict(trace.weights),
               "prompt_len": opts.prompt_len, "gen_len": opts.gen_len,
               "quantum_steps": config.batching.quantum_steps}
        write_json(opts.json, {"config": doc, "policies": results, "token_match": match})
    return 3 if mismatched else 0
