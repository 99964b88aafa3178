"""`rwttt bench --backend inproc`: every mode on one trace, the table, the gates, the JSON
(with --profile, the in-process modes' per-step profile in both)."""
from __future__ import annotations

import os
import sys
from dataclasses import asdict

import torch
from tqdm import tqdm

from rwttt_ray.bench import modes
from rwttt_ray.bench.decode_cost import decode_costs
from rwttt_ray.bench.gates import gates
from rwttt_ray.bench.options import BenchOptions
from rwttt_ray.bench.report import document, gates_lines, profile_table, ratios, table, write_json
from rwttt_ray.bench.traces import make_trace
from rwttt_ray.config import BatchingConfig
from rwttt_ray.ttt.baselines import static_model
from rwttt_ray.ttt.capacity import host_tier_owners
from rwttt_ray.ttt.model import TTTModel


REPEATED = ("static_ceiling", "rwttt_inproc")   # fast batched modes: interleaved repeats, median kept


def _run_steps(steps, repeat: int) -> dict:
    order = [s for s in steps if s[0] not in REPEATED] + [s for _ in range(repeat) for s in steps if s[0] in REPEATED]
    runs: dict[str, list] = {}
    bar = tqdm(order, desc="bench", unit="run", file=sys.stderr,
               disable=not sys.stderr.isatty() and not os.environ.get("RWTTT_PROGRESS"))
    for name, fn in bar:
        bar.set_postfix_str(name)
        runs.setdefault(name, []).append(fn())
    results = {}
    for name, _ in steps:
        ordered = sorted(runs[name], key=lambda r: r.tok_per_s)
        results[name] = ordered[len(ordered) // 2]
        results[name].extra["runs"] = len(ordered)
    return results


def run_inproc(model: TTTModel, batching: BatchingConfig, opts: BenchOptions, extra_modes=None,
               graphs: bool = True) -> dict:
    """Runs the modes `opts` names; `extra_modes` (name -> fn(model, trace)) adds backends;
    `graphs`: CUDA graphs for the static decode rounds (off: --enforce-eager)."""
    b, w = batching.max_group_size, batching.wait_budget_steps
    trace = make_trace(opts.trace, opts.owners, opts.prompt_len, opts.gen_len, model.settings.chunk, opts.seed)
    wopts = modes.loop_options(model, batching, len(trace.requests), graphs)
    tokens = opts.prompt_len + opts.gen_len
    host = host_tier_owners(model, batching.swap_space, tokens)
    print(wopts["capacity"].describe(tokens, host))
    steps = [("sequential", lambda: modes.run_sequential("sequential", model, trace)),
             ("static_batch1", lambda: modes.run_sequential("static_batch1", static_model(model), trace)),
             ("replicas", lambda: modes.run_replica_mode(model, trace, opts.replicas or min(opts.owners, os.cpu_count() or 1))),
             ("naive_shared", lambda: modes.run_naive(model, trace)),
             ("static_ceiling", lambda: modes.run_static(model, trace, wopts, **batching.scheduling())),
             ("rwttt_inproc", lambda: modes.run_rwttt(model, trace, wopts, **batching.scheduling()))]
    steps += [(name, (lambda fn=fn: fn(model, trace))) for name, fn in (extra_modes or {}).items()]
    results = _run_steps([s for s in steps if s[0] not in opts.skip], max(1, opts.repeat))
    gate = gates(results["rwttt_inproc"], results.get("naive_shared"), results["sequential"])
    for name, res in results.items():
        if name.startswith("rwttt_") and name != "rwttt_inproc":
            gate.update({f"{name}_{k}": v for k, v in gates(res, None, results["sequential"]).items()})
    if not opts.profile:
        for res in results.values():
            res.extra.pop("profile", None)
    param = next(model.hf.parameters())
    config = {"model": model.name, "ttt": asdict(model.settings), "trace": opts.trace, "owners": opts.owners,
              "prompt_len": opts.prompt_len, "gen_len": opts.gen_len, "seed": opts.seed,
              "max_group_size": b, "wait_budget_steps": w, "repeat": opts.repeat,
              "torch_threads": torch.get_num_threads(), "preset": opts.preset,
              "dtype": str(param.dtype).removeprefix("torch."), "device": str(param.device),
              "memory": batching.memory()}
    doc = document(config, results, gate)
    doc["capacity"] = {**asdict(wopts["capacity"]), "host_owners": host, "tokens_per_owner": tokens}
    if "decode_cost" not in opts.skip:
        doc["decode_forward"] = decode_costs(model, batch=min(opts.owners, 64), context=opts.prompt_len + opts.gen_len // 2)
    print(table(results))
    if "decode_forward" in doc:
        d = doc["decode_forward"]
        print(f"decode forward, batch {d['batch']} at context {d['context']}: plain torch {d['plain_ms']} ms "
              f"({d['plain_no_ttt_ms']} ms without the fast-weight READ), "
              f"static round {d['static_ms']} ms ({d['static_vs_plain']}x), eager groups {d['eager_ms']} ms "
              f"({d['eager_vs_plain']}x)")
    if opts.profile:
        print(profile_table(results))
    print("ratios: " + ", ".join(f"{k}={v}" for k, v in ratios(results).items()))
    print("gates:\n" + gates_lines(gate))
    if opts.json:
        write_json(opts.json, doc)
        print(f"wrote {opts.json}")
    return doc
