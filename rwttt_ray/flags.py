"""Command-line flags shared by `rwttt bench`, `serve` and `eval`: value parsers that refuse
bad input in one line, the flag groups (model, batching, cluster, service, bench workload),
each declared once, and the help format (every default shown). A config flag's dest is its
knob's name in RwtttConfig, so `config_from` builds the one config of parsed flags by name.
Light on purpose (no torch): the defaults written here are the config's (a test checks)."""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rwttt_ray.config import RwtttConfig


def version_string() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rwttt-ray")
    except PackageNotFoundError:
        return "unknown"


VERSION = version_string()


class Help(argparse.ArgumentDefaultsHelpFormatter):
    """Every flag with its default (flags with none given, or whose help names it, as they are)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default is None or action.default is argparse.SUPPRESS \
                or action.default is False or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)".strip()


def positive(kind: str, least: int = 1):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{kind} must be an integer, got {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"{kind} must be >= {least}, got {value}")
        return value
    return parse


def non_negative(kind: str):
    return positive(kind, least=0)


def real(kind: str, least: float = 0.0, strict: bool = False, most: float | None = None):
    """A float >= least (`strict`: > least), at most `most`; else one line naming the flag."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{kind} must be a number, got {text!r}") from None
        if not value == value or (value <= least if strict else value < least) or (most is not None and value > most):
            bounds = f"{'>' if strict else '>='} {least:g}" + (f" and <= {most:g}" if most is not None else "")
            raise argparse.ArgumentTypeError(f"{kind} must be {bounds}, got {text}")
        return value
    return parse


def layers(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--ttt-layers takes comma-separated ints, got {text!r}") from None


def csv(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def positive_list(kind: str):
    def parse(text: str) -> tuple[int, ...]:
        values = tuple(positive(kind)(x) for x in csv(text))
        if not values:
            raise argparse.ArgumentTypeError(f"{kind} needs at least one value")
        return values
    return parse


def weights(text: str) -> tuple[float, float]:
    try:
        values = tuple(float(x) for x in csv(text))
    except ValueError:
        values = ()
    if len(values) != 2 or not all(0 < v < float("inf") for v in values):
        raise argparse.ArgumentTypeError(f"--tenant-weights takes two positive numbers FLOOD,STEADY, got {text!r}")
    return values


TRACES = ("uniform", "staggered", "all_update", "mixed", "poisson", "bursty")   # rwttt_ray.bench.traces
POLICIES = {"grouping_policy": ("greedy", "wait_budget", "skew_aware"), "eviction_policy": ("lru", "tenant_lru"),
            "fairness_policy": ("vtc", "fcfs"), "placement_policy": ("least_loaded", "spread", "pack", "affinity")}
CONFIG_GROUPS = ("model", "batching", "cluster", "service")
BUILTIN_ARCHS = ("tiny", "qwen3-4b")                                         # rwttt_ray.model_config.BUILTIN_ARCHS


def add_model_flags(p: argparse.ArgumentParser, dtype: str = "float32", seed: bool = False) -> None:
    """ModelConfig's knobs (vLLM's names where vLLM has one); `seed`: --seed is the model's
    (serve; in bench and eval --seed is the workload's)."""
    g = p.add_argument_group("model")
    g.add_argument("--model", help="local checkpoint dir (default: the built-in random model, --builtin-arch)")
    g.add_argument("--builtin-arch", default="tiny", choices=BUILTIN_ARCHS,
                   help="the built-in model's shapes, without --model: tiny, or qwen3-4b (Qwen3-4B's, ~4 B random "
                        "parameters initialised on the CPU: 16 GB of RAM, a minute or two)")
    g.add_argument("--ttt-layers", type=layers, help="comma-separated TTT layer indices (must exist)")
    g.add_argument("--ttt-chunk", type=positive("--ttt-chunk"), help="TTT chunk size C (default: the checkpoint's)")
    g.add_argument("--ttt-lr", type=float, help="TTT learning rate eta")
    g.add_argument("--ttt-target", choices=("hidden_states", "input_embed"), help="source of the TTT values V")
    g.add_argument("--ttt-init", default="checkpoint", choices=("checkpoint", "random"),
                   help="TTT conv/projection: the checkpoint's (missing ones are an error) or seeded random ones")
    g.add_argument("--dtype", default=dtype, choices=("auto", "float32", "bfloat16", "float16"),
                   help="compute dtype ('auto': the checkpoint's); fast weights are always float32")
    g.add_argument("--device", default="cpu", help="cpu or cuda")
    g.add_argument("--enforce-eager", action="store_true",
                   help="decode rounds run eagerly: no CUDA graphs (on CPU rounds are always eager)")
    g.add_argument("--max-model-len", type=positive("--max-model-len", 2),
                   help="context served (prompt + generated), at most the model's (default: the model's)")
    g.add_argument("--chat-template", help="Jinja chat template file overriding the tokenizer's own")
    g.add_argument("--generation-config", default="auto",
                   help="'auto' (the model's generation_config.json), 'vllm' (none) or a folder holding one")
    if seed:
        g.add_argument("--seed", dest="model_seed", type=int, metavar="SEED",
                       help="seed of the built-in weights (default 1234), of --ttt-init random, and of requests "
                            "sent without one")


def add_batching_flags(p: argparse.ArgumentParser) -> None:
    """BatchingConfig's knobs: slots, B, w, alignment, k, quantum, admission, policies."""
    g = p.add_argument_group("batching")
    g.add_argument("--max-states-per-worker", type=positive("--max-states-per-worker"), default=64,
                   help="device slots per worker; more owners than slots spill to the host tier (with a memory "
                        "budget: the most slots the budget may give)")
    g.add_argument("--gpu-memory-utilization", type=real("--gpu-memory-utilization", strict=True, most=1.0),
                   help="fraction (0, 1] of the device's memory a worker may use (CPU: of the host RAM); the worker "
                        "sizes slots, WRITE reserve and KV blocks from it after loading the model")
    g.add_argument("--memory-budget-gib", type=real("--memory-budget-gib", strict=True),
                   help="the same budget in GiB (give one of the two)")
    g.add_argument("--swap-space", type=real("--swap-space"), default=4.0,
                   help="GiB of host memory per worker for spilled owners' state")
    g.add_argument("--kv-block-size", type=positive("--kv-block-size"), default=16,
                   help="tokens per paged-KV block")
    g.add_argument("--max-group-size", type=positive("--max-group-size"), default=64, help="B: most owners in one group")
    g.add_argument("--wait-budget-steps", type=int, default=0, help="w: steps a ready step may wait for partners")
    g.add_argument("--align-rounds", type=non_negative("--align-rounds"),
                   help="READ rounds an owner at a WRITE boundary may sit out so owners that arrived apart "
                        "WRITE together (ray/http; default C/2, 0 = never)")
    g.add_argument("--rounds-per-call", type=positive("--rounds-per-call"), default=64,
                   help="k: most READ rounds one worker call runs (ray/http)")
    g.add_argument("--quantum-steps", type=positive("--quantum-steps"),
                   help="rounds a resident may keep its slot while others wait (spill rotation)")
    g.add_argument("--admit-window-ms", type=float, default=10.0,
                   help="an idle worker starts once no request arrived for this long (ray/http; 0 = at once)")
    for name, default in (("grouping_policy", "greedy"), ("eviction_policy", "lru"), ("fairness_policy", "vtc")):
        g.add_argument(f"--{name.replace('_', '-')}", default=default, choices=POLICIES[name])


def add_cluster_flags(p: argparse.ArgumentParser) -> None:
    """ClusterConfig's knobs (autoscaling, resources per actor: in the config, not flags)."""
    g = p.add_argument_group("cluster")
    g.add_argument("--workers", type=positive("--workers"), default=1, help="worker actors (each a model copy)")
    g.add_argument("--min-workers", type=positive("--min-workers"), help="autoscaling: fewest workers (default 1)")
    g.add_argument("--max-workers", type=positive("--max-workers"), help="autoscaling: most workers (default: off)")
    g.add_argument("--scale-interval-s", type=float, default=0.5, help="autoscaling: seconds between two looks")
    g.add_argument("--placement-policy", default="least_loaded", choices=POLICIES["placement_policy"])
    g.add_argument("--address", help="Ray cluster address; default: RAY_ADDRESS or a local cluster")
    g.add_argument("--redis-url", help="the state directory's Redis (else RWTTT_REDIS_URL, else a private "
                                       "redis-server that ends with this process, sessions with it)")
    g.add_argument("--worker-cpus", type=float, default=1.0, help="CPUs per worker actor (device cpu)")
    g.add_argument("--threads-per-worker", type=positive("--threads-per-worker"),
                   help="torch threads per worker (default: the cores shared out)")


def add_service_flags(p: argparse.ArgumentParser) -> None:
    """ServiceConfig's knobs (tenant limits come with the API keys)."""
    g = p.add_argument_group("service")
    g.add_argument("--session-ttl-s", type=float, default=3600.0,
                   help="seconds a session may stay idle before it expires (a session's own ttl_s overrides)")


def add_config_flags(p: argparse.ArgumentParser, dtype: str = "float32", seed: bool = False) -> None:
    """Every RwtttConfig flag group."""
    add_model_flags(p, dtype=dtype, seed=seed)
    add_batching_flags(p)
    add_cluster_flags(p)
    add_service_flags(p)


def add_workload_flags(p: argparse.ArgumentParser, preset: bool = False) -> None:
    """The bench workload (`rwttt bench`, `rwttt eval`); `preset`: unset flags take eval's preset."""
    dflt = (lambda value: None) if preset else (lambda value: value)   # noqa: E731
    g = p.add_argument_group("workload")
    g.add_argument("--trace", default="uniform", choices=TRACES, help="arrival and length pattern of the owners")
    g.add_argument("--owners", type=positive("--owners"), default=dflt(8), help="owners (streams)")
    g.add_argument("--prompt-len", type=positive("--prompt-len"), default=dflt(128))
    g.add_argument("--gen-len", type=positive("--gen-len"), default=dflt(128))
    g.add_argument("--seed", type=int, default=0, help="seed of the workload")
    g.add_argument("--repeat", type=positive("--repeat"), default=dflt(3),
                   help="runs of the batched modes (interleaved; the median is reported)")
    g.add_argument("--replicas", type=positive("--replicas"), help="per-stream replica processes (default: "
                                                                   "memory-matched in eval, min(owners, cores) in bench)")
    g.add_argument("--step-ms", type=float, default=3.0, help="ms per arrival step of non-uniform traces (ray/http)")


def config_from(args) -> "RwtttConfig":
    """The one RwtttConfig of parsed flags (bench, serve, eval): each flag's dest is its knob's name."""
    from rwttt_ray.config import KNOBS, RwtttConfig

    names = {**{k: k for k in KNOBS if k != "seed"}, "model_seed": "seed"}   # --seed: the workload's, or serve's
    return RwtttConfig.of(**{knob: getattr(args, dest) for dest, knob in names.items()
                             if getattr(args, dest, None) is not None})
