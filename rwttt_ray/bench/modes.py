"""The benchmark's modes on one trace and one model: each returns a ModeResult.

sequential (the oracle, batch 1), replicas (per-stream processes), naive shared-state batching,
RW-TTT in-process, and the static-weights ceiling (TTT off) batched and at batch 1. The batched
modes run the serving loop (`ttt.local.LocalLoop`: SchedulerCore + WorkerCore, as the Ray actors do).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from rwttt_ray.bench.measure import peak_rss, percentile
from rwttt_ray.bench.traces import Trace
from rwttt_ray.ttt.baselines import naive_loop, run_replicas, static_model
from rwttt_ray.ttt.capacity import plan_worker
from rwttt_ray.ttt.local import LocalLoop, OwnerOutcome
from rwttt_ray.ttt.model import TTTModel
from rwttt_ray.ttt.reference import SequentialReference


@dataclass
class ModeResult:
    """One mode's run: per-owner tokens (and logits), wall time, latency, memory."""

    name: str
    tokens: dict[str, list[int]]
    wall_s: float
    peak_rss_bytes: int = 0
    logits: dict[str, list[torch.Tensor]] = field(default_factory=dict, repr=False)
    deltas: dict[str, list[torch.Tensor] | None] = field(default_factory=dict, repr=False)
    versions: dict[str, int] = field(default_factory=dict)
    ttft_s: list[float] = field(default_factory=list)
    token_gaps_s: list[float] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    @property
    def num_tokens(self) -> int:
        return sum(len(t) for t in self.tokens.values())

    @property
    def tok_per_s(self) -> float:
        return self.num_tokens / self.wall_s if self.wall_s > 0 else 0.0

    def summary(self) -> dict:
        return {"mode": self.name, "tokens": self.num_tokens, "wall_s": round(self.wall_s, 4),
                "tok_per_s": round(self.tok_per_s, 2), "peak_rss_mib": round(self.peak_rss_bytes / 2**20, 1),
                "ttft_p50_ms": round(1e3 * percentile(self.ttft_s, 50), 3),
                "tpot_p50_ms": round(1e3 * percentile(self.token_gaps_s, 50), 3),
                "tpot_p99_ms": round(1e3 * percentile(self.token_gaps_s, 99), 3), **self.extra}


def from_outcomes(name: str, outcomes: dict[str, OwnerOutcome], wall_s: float, rss: int, **extra) -> ModeResult:
    res = ModeResult(name, {o: r.tokens for o, r in outcomes.items()}, wall_s, rss, extra=extra)
    for o, r in outcomes.items():
        res.logits[o], res.deltas[o], res.versions[o] = r.logits, r.deltas, r.version
        if r.token_times_s:
            res.ttft_s.append(r.token_times_s[0] - r.arrival_s)
            res.token_gaps_s.extend(b - a for a, b in zip(r.token_times_s, r.token_times_s[1:]))
    return res


def run_loop_mode(name: str, loop: LocalLoop, trace: Trace) -> ModeResult:
    """The trace through the in-process serving loop; arrival steps are the scheduler's steps."""
    with peak_rss() as rss:
        t0 = time.perf_counter()
        outcomes = loop.run(list(trace.requests), list(trace.arrival_steps))
        wall = time.perf_counter() - t0
    st = loop.stats
    res = from_outcomes(name, outcomes, wall, rss.peak_bytes, steps=loop.core.step, phases=st.phases,
                        mean_group_size=round(sum(st.group_sizes) / max(1, len(st.group_sizes)), 2),
                        writes_committed=st.writes_committed)
    profile = getattr(loop, "profile", None)      # seconds per part of a step (report.PROFILE_PARTS)
    if profile is not None:
        res.extra["profile"] = profile()
    return res


def run_sequential(name: str, model: TTTModel, trace: Trace, keep_state: bool = True) -> ModeResult:
    ref = SequentialReference(model, record_logits=True)
    res = ModeResult(name, {}, 0.0)
    with peak_rss() as rss:
        t0 = time.perf_counter()
        for req in trace.requests:   # all arrive at t0 and queue behind each other
            out = ref.run(req)
            res.tokens[req.owner_id], res.logits[req.owner_id] = out.tokens, out.logits
            res.deltas[req.owner_id], res.versions[req.owner_id] = out.deltas, out.num_writes
            res.ttft_s.append(out.token_times_s[0] - t0)
            res.token_gaps_s.extend(b - a for a, b in zip(out.token_times_s, out.token_times_s[1:]))
        res.wall_s = time.perf_counter() - t0
    res.peak_rss_bytes = rss.peak_bytes
    return res


def loop_options(model: TTTModel, batching, owners: int, graphs: bool = True) -> dict:
    """The WorkerCore options a bench loop runs with: its capacity plan (the batching config's
    memory knobs, slots for `owners`), CUDA graphs on or off, the host tier's limit."""
    mem = {**batching.memory(), "max_states_per_worker": owners}
    plan = plan_worker(model, device=str(next(model.hf.parameters()).device), max_group_size=batching.max_group_size,
                       **mem)
    return dict(capacity=plan, graphs=graphs, swap_space=batching.swap_space)


def run_rwttt(model: TTTModel, trace: Trace, worker_options: dict | None = None, **scheduling) -> ModeResult:
    """RW-TTT in-process, with every issued group and the ledger's audit log of committed WRITEs;
    `scheduling`: LocalLoop's planning knobs (BatchingConfig.scheduling(): B, w, k, alignment, policies)."""
    loop = LocalLoop(model=model, max_states_per_worker=len(trace.requests), record_logits=True, keep_state=True,
                     audit_groups=True, worker_options=worker_options, **scheduling)
    res = run_loop_mode("rwttt_inproc", loop, trace)
    res.extra["groups_issued"] = len(loop.stats.issued)
    res.extra["audit"] = loop.core.ledger.history
    return res


def run_naive(model: TTTModel, trace: Trace) -> ModeResult:
    loop = naive_loop(model, max_states_per_worker=len(trace.requests), record_logits=True)
    return run_loop_mode("naive_shared", loop, trace)


def run_static(model: TTTModel, trace: Trace, worker_options: dict | None = None, **scheduling) -> ModeResult:
    """The static ceiling: the same loop, knobs and decode path with TTT off (no WRITEs, one shape class)."""
    loop = LocalLoop(model=static_model(model), max_states_per_worker=len(trace.requests),
                     worker_options=worker_options, **scheduling)
    return run_loop_mode("static_ceiling", loop, trace)


def run_replica_mode(model: TTTModel, trace: Trace, num_replicas: int) -> ModeResult:
    with peak_rss(tree=True) as rss:
        tokens, wall = run_replicas(model, list(trace.requests), num_replicas)
    return ModeResult("replicas", tokens, wall, rss.peak_bytes, extra={"replicas": num_replicas})
