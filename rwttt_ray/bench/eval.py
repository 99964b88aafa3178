"""`rwttt eval`: the paper's experiments, reproduced and extended, as one command.

Flow: options (quick or full preset, checked) -> every mode on one trace (sequential, memory-matched
replicas, naive shared-state batching, static ceiling, RW-TTT in-process, and over Ray/HTTP when
asked) -> the per-trace table -> the scaling sweep over owners -> the gates (contract audit, token
match, NLL/PPL and drift over configurations, injected faults, RULER-style tasks) -> `--out`:
eval.json, PNG plots and report.md, and a summary on the terminal. Progress bars go to stderr.
"""
from __future__ import annotations

import os
import platform
import warnings
from dataclasses import asdict
from typing import Any

import torch

from rwttt_ray.bench.eval_faults import run_faults
from rwttt_ray.bench.eval_gates import describe, quality_section, ruler_section, summary_rows
from rwttt_ray.bench.eval_modes import Hooks, progress_bar, run_modes, run_sweep, run_traces
from rwttt_ray.bench.eval_options import EvalOptions, check, cores
from rwttt_ray.bench.eval_plots import write_plots
from rwttt_ray.bench.eval_report import terminal_summary, write_report
from rwttt_ray.bench.gates import gates
from rwttt_ray.bench.modes import ModeResult
from rwttt_ray.bench.report import document, ratios, table, write_json
from rwttt_ray.config import RwtttConfig
from rwttt_ray.ttt.model import TTTModel

BACKEND_MODES = ("rwttt_ray", "rwttt_http")


def run_config(model: TTTModel, config: RwtttConfig) -> dict[str, Any]:
    return {"model": model.name, "ttt": asdict(model.settings), "ttt_settings": describe(model),
            "dtype": config.model.dtype, "device": config.model.device, "torch_threads": torch.get_num_threads(),
            "cores": cores(), "torch": torch.__version__, "python": platform.python_version(),
            "ray_address": config.cluster.address or os.environ.get("RAY_ADDRESS")}


def modes_gates(results: dict[str, ModeResult]) -> tuple[dict[str, Any], dict[str, Any]]:
    """RW-TTT in-process vs sequential (with naive batching's divergence), and each backend's gates."""
    g = gates(results["rwttt_inproc"], results["naive_shared"], results["sequential"])
    g["writes_audited"] = len(results["rwttt_inproc"].extra.get("audit", []))
    backends = {n: gates(results[n], None, results["sequential"]) for n in BACKEND_MODES if n in results}
    return g, backends


def _modes_section(model: TTTModel, opts: EvalOptions, config: RwtttConfig, hooks: Hooks, doc: dict) -> dict:
    results, doc["memory_budget"] = run_modes(model, opts, config, hooks)
    doc["modes"], doc["ratios"] = document({}, results, {})["modes"], ratios(results)
    doc["modes_gates"], doc["backend_gates"] = modes_gates(results)
    return results


def sweep_section(model, opts: EvalOptions, config: RwtttConfig) -> dict:
    """The owner sweep in-process, and over Ray (spill included) if asked."""
    out = run_sweep(model, opts, config)
    if "ray" in opts.backends:
        from rwttt_ray.bench.eval_ray import sweep_ray

        out["modes"]["rwttt_ray"], out["ray_slots"] = sweep_ray(model, opts, config)
    return out


SECTIONS = {"traces": lambda model, opts, config, hooks: run_traces(model, opts, hooks),
            "sweep": lambda model, opts, config, hooks: sweep_section(model, opts, config),
            "quality": lambda model, opts, config, hooks: quality_section(model, opts, hooks),
            "faults": lambda model, opts, config, hooks: run_faults(model, hooks),
            "ruler": lambda model, opts, config, hooks: ruler_section(model, opts, hooks)}


def run_eval(model: TTTModel, opts: EvalOptions, config: RwtttConfig, hooks: Hooks = Hooks()) -> dict[str, Any]:
    """Runs every section, writes eval.json, the plots and report.md into `opts.out`, prints the
    summary, and returns the document."""
    check(model, opts)
    opts.out.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {"config": run_config(model, config), "options": opts.as_dict(), "out": str(opts.out)}
    sections = progress_bar(("modes", *SECTIONS), "eval")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)   # transformers' cache deprecation, once per forward
        for name in sections:
            sections.set_postfix_str(name)
            if name == "modes":
                results = _modes_section(model, opts, config, hooks, doc)
            else:
                doc[name] = SECTIONS[name](model, opts, config, hooks)
    rows = summary_rows(doc)
    doc["gates"] = {"rows": rows, "passed": all(r["passed"] for r in rows)}
    doc["plots"] = write_plots(doc, opts.out)
    write_json(opts.out / "eval.json", doc)
    write_report(doc, opts.out)
    print(terminal_summary(doc, table(results)), flush=True)
    return doc
