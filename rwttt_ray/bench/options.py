"""BenchOptions: what one `rwttt bench` run does beyond the config: the workload, the modes, the output.

The CLI builds it once from the flags (as it builds the RwtttConfig) and passes both down; the
bench functions take these objects, never the parsed flags. `rwttt eval` has EvalOptions.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class BenchOptions:
    backend: str = "inproc"                  # inproc, ray (the actors) or http (the actors behind Serve)
    trace: str = "uniform"                   # rwttt_ray.bench.traces.TRACES
    owners: int = 8                          # owners (streams)
    prompt_len: int = 128
    gen_len: int = 128
    seed: int = 0                            # of the workload
    repeat: int = 3                          # runs of the batched modes; the median is kept
    replicas: int | None = None              # per-stream replica processes; None: min(owners, cores)
    step_ms: float = 3.0                     # ms per arrival step of non-uniform traces (ray/http)
    skip: tuple[str, ...] = ()               # modes not run
    json: str | None = None                  # write the figures to this file
    tenants: bool = False                    # the two-tenant fairness benchmark instead of the modes
    tenant_weights: tuple[float, float] = (1.0, 1.0)   # FLOOD, STEADY
    preset: str | None = None                # rwttt_ray.bench.presets: applied to the flags before these options
    profile: bool = False                    # the in-process modes' per-step profile in the table and the JSON
