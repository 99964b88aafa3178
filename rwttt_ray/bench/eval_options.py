"""`rwttt eval` options: the flags resolved against the quick or full preset, then checked.

A flag left unset takes the preset's value (`QUICK` for `--quick`, else `FULL`); the config's
knobs (B, w, slots, the cluster) stay in the RwtttConfig the CLI builds beside these options. `check` refuses
impossible settings before anything runs, with one readable ValueError: a context too long for
the model, RULER prompts that do not fit, or more owners than memory allows (per-owner state
bytes, as the engine preallocates them, times the most owners alive at once, vs MemAvailable).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from rwttt_ray.bench.ruler import TASKS, expand_families, make_tasks
from rwttt_ray.bench.traces import TRACES
from rwttt_ray.config import RwtttConfig
from rwttt_ray.ttt.model import TTTModel

QUALITY_CONFIGS = ("base", "chunk_8", "chunk_16", "input_embed", "no_proj", "even_layers", "all_layers",
                   "grouped_w2_B3", "staggered")     # nine, as the paper's NLL/PPL gate
BACKENDS = ("ray", "http")

QUICK: dict[str, Any] = dict(owners=4, sweep_owners=(1, 2, 4, 8), prompt_len=32, gen_len=32,
                             traces=("uniform", "bursty", "all_update"), repeat=1, ruler_examples=1,
                             ruler_context=768, ruler_gen_len=24, quality_configs=("base",), quality_tokens=96,
                             max_states_per_worker=4)
FULL: dict[str, Any] = dict(owners=8, sweep_owners=(1, 2, 4, 8, 16, 32, 64), prompt_len=128, gen_len=128,
                            traces=TRACES, repeat=3, ruler_examples=4, ruler_context=1024, ruler_gen_len=None,
                            quality_configs=QUALITY_CONFIGS, quality_tokens=256, max_states_per_worker=16)


@dataclass(frozen=True, slots=True)
class EvalOptions:
    """Everything one `rwttt eval` run does beyond the config (RwtttConfig: B, w, slots, Ray)."""

    out: Path                          # results directory (JSON, PNG plots, report.md)
    quick: bool                        # the small preset
    trace: str                         # trace of the modes run and the scaling sweep
    traces: tuple[str, ...]            # traces of the per-trace table (the paper's Table 4 rows)
    owners: int                        # owners (streams) of the modes run
    sweep_owners: tuple[int, ...]      # owner counts of the scaling sweep
    prompt_len: int
    gen_len: int
    max_group_size: int                # B (the config's batching.max_group_size)
    wait_budget_steps: int             # w (the config's batching.wait_budget_steps)
    replicas: int | None               # None: memory-matched (see eval_modes.memory_matched)
    repeat: int                        # runs of the fast batched modes; the median is kept
    seed: int
    backends: tuple[str, ...]          # opt-in: ray, http
    ruler_tasks: tuple[str, ...]
    ruler_examples: int                # per task
    ruler_context: int                 # prompt length in byte tokens
    ruler_gen_len: int | None          # cap on each task's generation budget (None: RULER's)
    quality_configs: tuple[str, ...]
    quality_tokens: int                # held-out tokens per stream
    step_ms: float = 3.0               # ms per arrival step of non-uniform traces (ray/http)
    quality_streams: int = 4

    def as_dict(self) -> dict[str, Any]:
        return {f.name: (str(v) if isinstance(v := getattr(self, f.name), Path) else v) for f in fields(self)}


def _names(flag: str, given: tuple[str, ...], choices: tuple[str, ...]) -> tuple[str, ...]:
    if given == ("all",):
        return choices
    unknown = [g for g in given if g not in choices]
    if unknown:
        raise ValueError(f"{flag}: unknown {', '.join(map(repr, unknown))}; choose from {', '.join(choices)}")
    return given


def fill_preset(args: Any) -> None:
    """The preset's `repeat` and `max_states_per_worker` into the parsed flags where unset,
    before the CLI builds the config of them."""
    preset = QUICK if args.quick else FULL
    for name in ("repeat", "max_states_per_worker"):
        if getattr(args, name, None) is None:
            setattr(args, name, preset[name])


def resolve(args: Any, config: RwtttConfig) -> EvalOptions:
    """The parsed flags over the preset, as the options the eval functions take."""
    fill_preset(args)
    preset = QUICK if args.quick else FULL
    for flag, name, choices in (("--traces", "traces", TRACES), ("--backends", "backends", BACKENDS),
                                ("--quality-configs", "quality_configs", QUALITY_CONFIGS)):
        if getattr(args, name, None) is not None:
            setattr(args, name, _names(flag, tuple(getattr(args, name)), choices))
    pick = lambda name: preset[name] if getattr(args, name, None) is None else getattr(args, name)  # noqa: E731
    return EvalOptions(out=Path(args.out), quick=args.quick, trace=args.trace, traces=tuple(pick("traces")),
                       owners=pick("owners"), sweep_owners=tuple(sorted(set(pick("sweep_owners")))),
                       prompt_len=pick("prompt_len"), gen_len=pick("gen_len"),
                       max_group_size=config.batching.max_group_size,
                       wait_budget_steps=config.batching.wait_budget_steps, replicas=args.replicas,
                       repeat=pick("repeat"), seed=args.seed, step_ms=args.step_ms,
                       backends=tuple(args.backends or ()),
                       ruler_tasks=tuple(expand_families(args.ruler_tasks or TASKS)),
                       ruler_examples=pick("ruler_examples"), ruler_context=pick("ruler_context"),
                       ruler_gen_len=pick("ruler_gen_len"), quality_configs=tuple(pick("quality_configs")),
                       quality_tokens=pick("quality_tokens"))


# -- memory ----------------------------------------------------------------------------------
def state_bytes_per_owner(model: TTTModel) -> int:
    """Bytes the engine preallocates per owner: KV cache at the full context, two fast-weight
    slots (committed + WRITE candidate, fp32), and the chunk buffers of every TTT layer."""
    cfg, s = model.hf.config, model.settings
    item = next(model.hf.parameters()).element_size()
    kv = cfg.num_hidden_layers * 2 * cfg.num_key_value_heads * cfg.head_dim * model.max_seq_len * item
    fast = 2 * len(s.layers) * cfg.hidden_size * cfg.intermediate_size * 4
    sources = 2 if s.target == "input_embed" else 1
    chunk = len(s.layers) * s.chunk * (sources * cfg.hidden_size + cfg.intermediate_size) * item
    return kv + fast + chunk


def available_bytes() -> int:
    """MemAvailable (psutil, else /proc/meminfo); 0 when unknown."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:   # psutil missing: read the kernel's estimate
        try:
            with open("/proc/meminfo") as f:
                line = next(ln for ln in f if ln.startswith("MemAvailable:"))
            return int(line.split()[1]) * 1024
        except (OSError, StopIteration):
            return 0


def max_concurrent_owners(opts: EvalOptions) -> int:
    ruler = opts.ruler_examples * len(opts.ruler_tasks)
    return max(opts.owners, max(opts.sweep_owners), ruler, opts.quality_streams)


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def check_memory(model: TTTModel, opts: EvalOptions, available: int | None = None) -> None:
    """ValueError when the most owners alive at once need more state than 80% of available memory."""
    available = available_bytes() if available is None else available
    owners, each = max_concurrent_owners(opts), state_bytes_per_owner(model)
    if available and owners * each > 0.8 * available:
        raise ValueError(f"{owners} owners need ~{_gib(owners * each)} of TTT state ({each / 2**20:.1f} MiB each: "
                         f"KV cache, fast weights, chunk buffers); only {_gib(available)} is available")


# -- the rest ----------------------------------------------------------------------------------
def check(model: TTTModel, opts: EvalOptions) -> None:
    """Every impossible setting, as one ValueError, before the run starts."""
    limit = model.max_seq_len
    if opts.prompt_len + opts.gen_len > limit:
        raise ValueError(f"prompt ({opts.prompt_len}) + gen ({opts.gen_len}) exceeds the model's context limit {limit}")
    if opts.ruler_context + (opts.ruler_gen_len or 160) > limit:
        raise ValueError(f"--ruler-context {opts.ruler_context} + its generation exceeds the context limit {limit}")
    if not 2 <= opts.quality_tokens <= limit:
        raise ValueError(f"--quality-tokens must be in 2..{limit}, got {opts.quality_tokens}")
    if opts.wait_budget_steps < 0:
        raise ValueError("wait budget must be >= 0")
    if opts.ruler_examples:
        make_tasks(opts.ruler_tasks, 1, opts.ruler_context, opts.seed)   # raises if the context is too small
    check_memory(model, opts)


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
