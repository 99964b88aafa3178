"""The `rwttt` command: `rwttt bench`, `rwttt serve`, `rwttt eval`.

Every bad flag, path or setting ends in one readable line on stderr and a non-zero exit,
never a traceback.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from rwttt_ray.bench.options import BenchOptions
from rwttt_ray.bench.presets import PRESET_NAMES, apply_preset
from rwttt_ray.flags import (VERSION, Help, add_config_flags, add_workload_flags, config_from, csv, positive,
                             positive_list, weights)
from rwttt_ray.serve_cli import add_serve_parser

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage + line)
        raise SystemExit(_fail(f"{self.prog}: error: {message}", 2))


def _fail(message: str, code: int = 1) -> int:
    print(message.splitlines()[0] if message else "rwttt: error", file=sys.stderr)
    return code


SKIPPABLE = ("static_batch1", "replicas", "naive_shared", "static_ceiling", "rwttt_ray", "rwttt_http")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rwttt", description="RW-TTT serving on Ray: batched, owner-safe test-time training.")
    parser.add_argument("--version", action="version", version=f"rwttt-ray {VERSION}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _section = sub.add_parser

    def add_parser(name, **kw):
        p = _section(name, formatter_class=Help, **kw)
        p.set_defaults(command=name)
        return p
    sub.add_parser = add_parser
    b = sub.add_parser("bench", help="throughput benchmark of every mode on one trace")
    b.add_argument("--backend", default="inproc", choices=("inproc", "ray", "http"))
    b.add_argument("--skip", action="append", choices=SKIPPABLE, metavar="MODE",
                   help=f"mode to skip (repeatable): {', '.join(SKIPPABLE)}")
    b.add_argument("--json", help="write the figures to this JSON file")
    b.add_argument("--tenants", action="store_true",
                   help="ray backend: the two-tenant fairness benchmark (one floods 4x the slots, one steady) "
                        "under vtc+tenant_lru and fcfs+lru, instead of the mode table")
    b.add_argument("--tenant-weights", type=weights, default=(1.0, 1.0),
                   help="--tenants: weights FLOOD,STEADY (default 1,1)")
    b.add_argument("--preset", choices=PRESET_NAMES,
                   help="the RW-TTT paper's setting: paper (Qwen3-4B shapes, random weights, 8 owners, 4096 + 512 "
                        "tokens, chunk 128, bf16, cuda when available) or paper-16k (16384 + 512, 7 owners); "
                        "flags given override it")
    b.add_argument("--profile", action="store_true",
                   help="the in-process modes' per-step profile (forward, planning, sampling, write, host sync, "
                        "idle as seconds and fractions of wall) in the table and the JSON")
    add_workload_flags(b)
    add_config_flags(b)
    add_serve_parser(sub)
    _add_eval_parser(sub)
    for p in sub.choices.values():       # --help shows every default, described or not
        for action in p._actions:
            if action.help is None and action.option_strings:
                action.help = action.dest.replace("_", " ")
    return parser


def _add_eval_parser(sub) -> None:
    e = sub.add_parser("eval", help="the evaluation suite: every mode, traces, scaling sweep, gates, plots, report")
    e.add_argument("--quick", action="store_true", help="small preset: finishes in minutes on 2 CPU cores")
    e.add_argument("--out", default="results", help="results dir: eval.json, PNG plots, report.md")
    e.add_argument("--traces", type=csv, help="comma-separated traces of the per-trace table")
    e.add_argument("--sweep-owners", type=positive_list("--sweep-owners"), help="e.g. 1,2,4,8,16,32,64")
    e.add_argument("--backends", type=csv, help="opt-in: ray,http (slower: a local Ray cluster, Serve)")
    e.add_argument("--ruler-tasks", type=csv, help="RULER task names or families (default: all)")
    e.add_argument("--ruler-examples", type=positive("--ruler-examples"), help="examples per task")
    e.add_argument("--ruler-context", type=positive("--ruler-context"), help="prompt length in tokens")
    e.add_argument("--ruler-gen-len", type=positive("--ruler-gen-len"), help="cap on each task's generation")
    e.add_argument("--quality-configs", type=csv, help="NLL/drift configurations, or 'all'")
    e.add_argument("--quality-tokens", type=positive("--quality-tokens"), help="held-out tokens per stream")
    add_workload_flags(e, preset=True)
    add_config_flags(e)
    e.set_defaults(max_states_per_worker=None)     # the preset's (the Ray sweep goes past them: spill)


def given_dests(parser: argparse.ArgumentParser, argv: list[str]) -> set[str]:
    """The dests `argv` gives (not left to their defaults): `parser` re-run with every default suppressed."""
    saved = [(action, action.default) for action in parser._actions]
    for action, _ in saved:
        action.default = argparse.SUPPRESS
    try:
        return set(vars(parser.parse_args(argv)))
    finally:
        for action, default in saved:
            action.default = default


def _config(args):
    """The config of the flags; a setting it refuses is a bad flag: one line, exit 2."""
    try:
        return config_from(args)
    except ValueError as exc:
        raise SystemExit(_fail(f"rwttt: error: {exc}", 2)) from None


def bench_options(args) -> BenchOptions:
    return BenchOptions(**{f.name: getattr(args, f.name) for f in dataclasses.fields(BenchOptions)
                           if f.name != "skip"}, skip=tuple(args.skip or ()))


def _bench(args) -> int:
    opts, config = bench_options(args), _config(args)
    if opts.tenants and opts.backend != "ray":
        return _fail("rwttt: error: --tenants needs --backend ray", 2)
    model = config.model.load_model()
    if opts.prompt_len + opts.gen_len > model.max_seq_len:
        return _fail(f"rwttt: error: prompt ({opts.prompt_len}) + gen ({opts.gen_len}) exceeds the model's "
                     f"context limit {model.max_seq_len}", 2)
    if opts.tenants:
        from rwttt_ray.bench.tenants import run_tenants

        return run_tenants(config, opts, model)
    from rwttt_ray.bench.inproc import run_inproc

    extra = {}
    if opts.backend != "inproc":
        from rwttt_ray.bench.backends import backend_modes

        extra = backend_modes(config, opts)
    doc = run_inproc(model, config.batching, opts, extra, graphs=not config.model.enforce_eager)
    return 0 if doc["gates"].get("passed") else 3


def _eval(args) -> int:
    from rwttt_ray.bench.eval import run_eval
    from rwttt_ray.bench.eval_options import fill_preset, resolve

    fill_preset(args)          # first: the preset's slots and repeats where the flags left them unset
    config = _config(args)
    opts = resolve(args, config)
    doc = run_eval(config.model.load_model(), opts, config)
    return 0 if doc["gates"]["passed"] else 3


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The parsed flags, `rwttt bench --preset`'s values filled in where `argv` gives none."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "preset", None):          # bench is argv's first word (the top level has only --version)
        bench = parser._subparsers._group_actions[0].choices["bench"]
        apply_preset(args, given_dests(bench, argv[argv.index("bench") + 1:]))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else list(argv))
    try:
        if args.command == "bench":
            return _bench(args)
        if args.command == "eval":
            return _eval(args)
        if args.command == "serve":
            from rwttt_ray.serve_cli import resolve_serve_args, serve_main

            return serve_main(args, config_from(resolve_serve_args(args)))
    except KeyboardInterrupt:
        return _fail("rwttt: interrupted", 130)
    except (ValueError, OSError, RuntimeError) as exc:
        return _fail(f"rwttt: error: {exc}")
    except Exception as exc:  # never a traceback: one line naming what broke
        return _fail(f"rwttt: internal error: {type(exc).__name__}: {exc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
