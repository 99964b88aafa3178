"""RwtttConfig: the one validated configuration of rwttt-ray, made of four sub-configs.

`model` (ModelConfig, in rwttt_ray.model_config: checkpoint or built-in architecture, TTT overrides, dtype, device, CUDA graphs,
context, chat template, seed), `batching` (BatchingConfig: slots and the memory budget, B, w, k,
quantum, admission, policies), `cluster`
(ClusterConfig: workers, autoscaling, placement, Ray address, Redis, resources) and `service`
(ServiceConfig: session TTL, tenant limits). Every knob has ONE name, unique across the
sub-configs, used as the field, the flag (`--max-group-size`) and the parameter; so
`config.replace(workers=2, rounds_per_call=4)` finds each knob's sub-config by its name.

Construction validates values only (pure: a config can be built anywhere); `check_environment()`
checks what the machine must have (CUDA, the model dir, the template file), where the config is
used to load a model or start a cluster. `ModelConfig.load_model()` turns the model part into a
TTTModel.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from policies.eviction import EVICTION_NAMES
from policies.fairness import FAIRNESS_NAMES
from policies.grouping import GROUPING_NAMES
from policies.placement import PLACEMENT_NAMES
from rwttt_ray.model_config import BUILTIN_ARCHS, QWEN3_4B_ARCH, ModelConfig, _at_least, _one_of
from rwttt_ray.ttt.model import ModelError

MEMORY_KNOBS = ("max_states_per_worker", "gpu_memory_utilization", "memory_budget_gib", "swap_space", "kv_block_size")
SCHEDULING_KNOBS = ("max_group_size", "wait_budget_steps", "align_rounds", "rounds_per_call", "quantum_steps",
                    "grouping_policy", "eviction_policy", "fairness_policy")


@dataclass(frozen=True, kw_only=True)
class BatchingConfig:
    max_states_per_worker: int = 64
    """Device slots per worker: owners it holds at once; more spill to the host tier. With a memory
    budget (gpu_memory_utilization or memory_budget_gib) it caps the slots the budget gives."""
    gpu_memory_utilization: float | None = None
    """Fraction of the device's memory a worker may use, 0 < x <= 1 (vLLM's name; on CPU: of the host
    RAM); after loading the model the worker sizes its slots, WRITE reserve and KV blocks from it."""
    memory_budget_gib: float | None = None
    """The same budget in GiB (> 0); give this or gpu_memory_utilization, not both (neither: the
    slots are max_states_per_worker)."""
    swap_space: float = 4.0
    """GiB of host memory per worker for spilled owners' state (vLLM's name), >= 0."""
    kv_block_size: int = 16
    """Tokens per paged-KV block, >= 1."""
    max_group_size: int = 64
    """B: target (and largest) group size."""
    wait_budget_steps: int = 0
    """w: steps a ready step may wait for partners; 0 = greedy."""
    align_rounds: int | None = None
    """READ rounds an owner at a WRITE boundary may sit out so owners that arrived apart WRITE
    together (phases stay long); None = C/2, 0 = never."""
    rounds_per_call: int = 64
    """k: most READ rounds one worker call (a phase) runs before the scheduler replans."""
    quantum_steps: int | None = None
    """Rounds a resident may keep its slot while others wait for one (spill rotation); None = no rotation."""
    admit_window_ms: float = 10.0
    """An idle worker woken by a new turn starts its first phase once no other turn arrived for
    this long (ten windows at most), so a burst of requests starts in step; 0 = at once."""
    grouping_policy: str = "greedy"
    """'greedy', 'wait_budget' or 'skew_aware'; greedy with wait_budget_steps > 0 waits as wait_budget does."""
    eviction_policy: str = "lru"
    """Who holds device slots when short: 'lru' or 'tenant_lru' (by tenant weight)."""
    fairness_policy: str = "vtc"
    """Order across tenants: 'vtc' (virtual token counter, weighted) or 'fcfs'."""

    def scheduling(self) -> dict:
        """The knobs the scheduler's core plans with, by their names here (SchedulerCore.from_policies
        and LocalLoop take the same keywords), so serving and the in-process loop plan alike."""
        return {name: getattr(self, name) for name in SCHEDULING_KNOBS}

    def memory(self) -> dict:
        """The knobs a worker sizes its slots, KV blocks and host tier with, by their names here."""
        return {name: getattr(self, name) for name in MEMORY_KNOBS}

    def __post_init__(self) -> None:
        _at_least(self, 1, "max_states_per_worker", "max_group_size", "rounds_per_call", "quantum_steps",
                  "kv_block_size")
        _at_least(self, 0, "wait_budget_steps", "align_rounds", "admit_window_ms", "swap_space")
        _at_least(self, 0, "gpu_memory_utilization", "memory_budget_gib", strict=True)
        if (self.gpu_memory_utilization or 0) > 1:
            raise ValueError(f"gpu memory utilization must be <= 1 (a fraction), got {self.gpu_memory_utilization}")
        if self.gpu_memory_utilization is not None and self.memory_budget_gib is not None:
            raise ValueError("gpu_memory_utilization and memory_budget_gib are one budget two ways: give one")
        _one_of(self, "grouping_policy", GROUPING_NAMES)
        _one_of(self, "eviction_policy", EVICTION_NAMES)
        _one_of(self, "fairness_policy", FAIRNESS_NAMES)


@dataclass(frozen=True, kw_only=True)
class ClusterConfig:
    workers: int = 1
    """Worker actors at start (each a model copy, 1 CPU or 1 GPU)."""
    min_workers: int | None = None
    """Autoscaling: fewest workers (default 1); needs max_workers."""
    max_workers: int | None = None
    """Autoscaling: most workers; None = a fixed worker count."""
    scale_interval_s: float = 0.5
    """Autoscaling: seconds between two looks at the queue."""
    autoscale: dict = field(default_factory=dict)
    """Autoscaling: QueueDepthAutoscaler options (upscale_after_steps, high_occupancy, ...)."""
    placement_policy: str = "least_loaded"
    """Worker for a new owner: 'least_loaded' (= 'spread'), 'pack' or 'affinity' (stay where the state is)."""
    address: str | None = None
    """Ray cluster to join (else RAY_ADDRESS, else a local one)."""
    redis_url: str | None = None
    """The state directory's Redis (else RWTTT_REDIS_URL, else a private redis-server)."""
    worker_cpus: float = 1.0
    """CPUs each worker actor takes (device cpu)."""
    threads_per_worker: int | None = None
    """Torch threads per worker; None = the cores shared out among the workers."""
    worker_resources: tuple[dict, ...] = ()
    """Custom Ray resources per worker (one dict each, in order): pins workers to nodes."""
    scheduler_resources: dict = field(default_factory=dict)
    """Custom Ray resources of the scheduler actor."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "worker_resources", tuple(self.worker_resources))
        _at_least(self, 1, "workers", "min_workers", "max_workers", "threads_per_worker")
        if not self.scale_interval_s > 0 or self.worker_cpus < 0:
            raise ValueError(f"scale interval must be > 0 s and worker cpus >= 0, got "
                             f"{self.scale_interval_s}, {self.worker_cpus}")
        _one_of(self, "placement_policy", PLACEMENT_NAMES)
        if self.max_workers is None and (self.min_workers is not None or self.autoscale):
            raise ValueError("autoscaling needs max_workers")
        if self.max_workers is not None and self.start_workers > self.max_workers:
            raise ValueError(f"workers={self.start_workers} (or min_workers) must be <= max_workers={self.max_workers}")

    @property
    def start_workers(self) -> int:
        """Workers started with the cluster: `workers`, at least `min_workers`."""
        return max(self.workers, self.min_workers or 0)


@dataclass(frozen=True, kw_only=True)
class ServiceConfig:
    session_ttl_s: float = 3600.0
    """Seconds a session may stay idle (no turn running) before it expires and its slots are freed."""
    tenant_limits: dict = field(default_factory=dict)
    """tenant -> {weight, max_sessions, max_active, tokens_per_minute} (API keys add theirs)."""

    def __post_init__(self) -> None:
        if not self.session_ttl_s > 0:
            raise ValueError(f"session ttl must be > 0 s, got {self.session_ttl_s}")


SECTIONS = {"model": ModelConfig, "batching": BatchingConfig, "cluster": ClusterConfig, "service": ServiceConfig}
KNOBS = {f.name: section for section, cls in SECTIONS.items() for f in dataclasses.fields(cls)}
assert len(KNOBS) == sum(len(dataclasses.fields(c)) for c in SECTIONS.values()), "a knob name is not unique"


@dataclass(frozen=True, kw_only=True)
class RwtttConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    service: ServiceConfig = field(default_factory=ServiceConfig)

    @classmethod
    def of(cls, **knobs: Any) -> "RwtttConfig":
        """The defaults with `knobs` (any sub-config's, by name): RwtttConfig.of(ttt_chunk=8, workers=2)."""
        return cls().replace(**knobs)

    def replace(self, **knobs: Any) -> "RwtttConfig":
        """A copy with `knobs` changed, each in the sub-config that holds it."""
        unknown = sorted(set(knobs) - set(KNOBS))
        if unknown:
            raise TypeError(f"unknown config knobs {unknown}")
        parts = {s: {k: v for k, v in knobs.items() if KNOBS[k] == s} for s in SECTIONS}
        return dataclasses.replace(self, **{s: dataclasses.replace(getattr(self, s), **kw)
                                            for s, kw in parts.items() if kw})

    @classmethod
    def from_dict(cls, data: dict | None) -> "RwtttConfig":
        """From {'model': {...}, 'batching': {...}, 'cluster': {...}, 'service': {...}} (Serve
        args, YAML); an unknown section or knob is a ValueError naming it."""
        data = dict(data or {})
        unknown = sorted(set(data) - set(SECTIONS))
        if unknown:
            raise ValueError(f"config: unknown sections {unknown}; known: {sorted(SECTIONS)}")
        parts = {}
        for section, values in data.items():
            names = {f.name for f in dataclasses.fields(SECTIONS[section])}
            bad = sorted(set(values or {}) - names)
            if bad:
                raise ValueError(f"config.{section}: unknown knobs {bad}; known: {sorted(names)}")
            parts[section] = SECTIONS[section](**(values or {}))
        return cls(**parts)

    def to_dict(self) -> dict:
        """The nested plain dict from_dict reads back."""
        return dataclasses.asdict(self)

    def check_environment(self) -> None:
        """What this machine must have to load the model and start workers here."""
        self.model.check_environment()


__all__ = ["RwtttConfig", "ModelConfig", "BatchingConfig", "ClusterConfig", "ServiceConfig", "ModelError", "KNOBS",
           "BUILTIN_ARCHS", "QWEN3_4B_ARCH"]
