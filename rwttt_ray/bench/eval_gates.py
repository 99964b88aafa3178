"""`rwttt eval` gates (the paper's Table 6, stricter): quality over configurations, RULER-style
task behaviour, and the summary of every gate.

Quality: `bench.quality.quality_gates` (teacher-forced NLL/perplexity and top-5 relative drift
vs the sequential reference) on each named configuration: chunk sizes, target input_embed, no
projection, other TTT layer sets, grouping under a wait budget, staggered arrivals.
RULER: every example through the sequential reference and through the batched engine (all
examples as concurrent owners), scored by string match; the gate wants identical predictions,
hence identical per-task scores (on the random default model the scores are near zero).
"""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from rwttt_ray.bench.eval_modes import Hooks, build_loop, progress_bar
from rwttt_ray.bench.gates import tie_flip
from rwttt_ray.bench.eval_options import EvalOptions
from rwttt_ray.bench.quality import quality_gates
from rwttt_ray.bench.ruler import make_tasks, task_scores, to_request
from rwttt_ray.ttt.model import TTTModel
from rwttt_ray.ttt.reference import SequentialReference


# -- quality over configurations ------------------------------------------------------------------
def quality_config(model: TTTModel, name: str, num_streams: int) -> tuple[TTTModel, dict[str, Any]]:
    """The model variant and engine arguments of configuration `name` (see QUALITY_CONFIGS)."""
    s, n = model.settings, model.hf.config.num_hidden_layers
    settings = {"chunk_8": {"chunk": 8}, "chunk_16": {"chunk": 16}, "input_embed": {"target": "input_embed"},
                "no_proj": {"use_proj": False}, "even_layers": {"layers": tuple(range(0, n, 2))},
                "all_layers": {"layers": tuple(range(n))}}.get(name, {})
    engine_kw = {"grouped_w2_B3": {"max_group_size": 3, "wait_budget_steps": 2},
                 "staggered": {"arrival_steps": [3 * i for i in range(num_streams)]}}.get(name, {})
    return model.with_settings(replace(s, **settings)), engine_kw


def describe(model: TTTModel) -> str:
    s = model.settings
    return (f"C={s.chunk} layers={list(s.layers)} target={s.target} proj={'on' if s.use_proj else 'off'}")


def quality_section(model: TTTModel, opts: EvalOptions, hooks: Hooks = Hooks()) -> dict[str, Any]:
    """NLL and drift gates on every configuration in `opts.quality_configs`."""
    n = opts.quality_tokens
    prefixes = [min(n - 1, max(1, n // 4 + 5 * i)) for i in range(opts.quality_streams)]   # phase skew
    configs = {}
    for name in progress_bar(opts.quality_configs, "quality"):
        variant, kw = quality_config(model, name, opts.quality_streams)
        try:
            rep = quality_gates(variant, opts.quality_streams, opts.quality_tokens, prefixes, seed=opts.seed,
                                runner_cls=hooks.runner_cls, **kw).as_dict()
        except Exception as exc:  # a broken engine may crash: the gate fails
            rep = {"passed": False, "error": f"{type(exc).__name__}: {exc}"}
        configs[name] = {"settings": describe(variant), **{k: str(v) for k, v in kw.items()}, **rep}
    passed = sum(c["passed"] for c in configs.values())
    return {"configs": configs, "passed": passed == len(configs), "pass_count": f"{passed}/{len(configs)}",
            "top5_min": min((c["drift"]["top5_min"] for c in configs.values() if "drift" in c), default=None),
            "max_nll_delta": max((c["nll"]["delta"] for c in configs.values() if "nll" in c), default=None),
            "tokens_per_config": max((c["nll"]["num_tokens"] for c in configs.values() if "nll" in c), default=0)}


# -- RULER-style tasks ----------------------------------------------------------------------------
def ruler_section(model: TTTModel, opts: EvalOptions, hooks: Hooks = Hooks()) -> dict[str, Any]:
    """Per-task scores via the sequential path and via RW-TTT, their difference, and the gate."""
    examples = make_tasks(opts.ruler_tasks, opts.ruler_examples, opts.ruler_context, opts.seed)
    reqs = [to_request(ex, f"ruler-{i}", model.tokenizer) for i, ex in enumerate(examples)]
    if opts.ruler_gen_len:
        reqs = [replace(r, max_new_tokens=min(r.max_new_tokens, opts.ruler_gen_len)) for r in reqs]
    t0 = time.perf_counter()
    ref = SequentialReference(model)
    seq_runs = [ref.run(r) for r in progress_bar(reqs, "ruler (sequential)")]
    seq = [run.tokens for run in seq_runs]
    seq_s, t0 = time.perf_counter() - t0, time.perf_counter()
    try:
        out = build_loop(model, hooks, len(reqs), opts.max_group_size, opts.wait_budget_steps,
                         record_logits=True).run(reqs)
        rw, error = [out[r.owner_id].tokens for r in reqs], None
        ties = sum(tie_flip(w.tokens, w.logits, out[r.owner_id].tokens, out[r.owner_id].logits)
                   for r, w in zip(reqs, seq_runs))
    except Exception as exc:  # a broken engine may crash: the gate fails
        rw, error, ties = [[] for _ in reqs], f"{type(exc).__name__}: {exc}", 0
    rw_s = time.perf_counter() - t0
    decode = model.tokenizer.decode
    a, b = task_scores(examples, [decode(t) for t in seq]), task_scores(examples, [decode(t) for t in rw])
    tasks = {t: {"sequential": round(a[t], 2), "rwttt": round(b[t], 2), "diff": round(b[t] - a[t], 2)} for t in a}
    same = sum(x == y for x, y in zip(seq, rw))
    return {"tasks": tasks, "examples": len(examples), "context_len": opts.ruler_context,
            "mean_sequential": round(sum(a.values()) / len(a), 2), "mean_rwttt": round(sum(b.values()) / len(b), 2),
            "predictions_identical": f"{same}/{len(reqs)}", "tie_flips": ties,
            "sequential_s": round(seq_s, 2), "rwttt_s": round(rw_s, 2),
            "passed": error is None and same + ties == len(reqs) and all(v["diff"] == 0 for v in tasks.values()),
            **({"error": error} if error else {})}


# -- the summary (Table 6) ------------------------------------------------------------------------
def _all_runs(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Every RW-TTT in-process gate dict: the modes run, each trace, each sweep point."""
    runs = [doc["modes_gates"]] + [t["gates"] for t in doc["traces"].values()]
    return runs + list(doc["sweep"]["gates"].values())


def _sig(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"


def _row(check: str, scope: str, result: str, passed: bool) -> dict[str, Any]:
    return {"check": check, "scope": scope, "result": result, "passed": bool(passed)}


def summary_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per gate, like the paper's Table 6."""
    runs = _all_runs(doc)
    writes = sum(g.get("writes_audited", 0) for g in runs)
    owners = [tuple(int(x) for x in g["token_match"].split("/")) for g in runs]
    q, f, r = doc["quality"], doc["faults"], doc["ruler"]
    drift_ok = all(c.get("drift", {}).get("passed", False) for c in q["configs"].values())
    rows = [_row("Owner/version contract", f"every committed WRITE ({writes} in {len(runs)} runs)",
                 "audit gap-free, versions = sequential" if all(g["contract_held"] for g in runs) else "violated",
                 all(g["contract_held"] for g in runs)),
            _row("Token and logit match vs sequential", f"{len(runs)} runs (modes, traces, sweep)",
                 f"tokens {sum(s for s, _ in owners)}/{sum(n for _, n in owners)} owners, max logit diff "
                 f"{_sig(max((g['max_logit_diff'] or 0.0) for g in runs))} (tol 1e-4)", all(g["passed"] for g in runs)),
            _row("NLL/PPL gate", f"{len(q['configs'])} config(s) x {q['tokens_per_config']} tokens",
                 f"{q['pass_count']} pass, max abs dNLL {_sig(q['max_nll_delta'])}", q["passed"]),
            _row("Relative-drift gate", "alpha = 1.0, top-5", f"top5_min {q['top5_min']}", drift_ok),
            _row("State-contract stress", f"{len(f['faults'])} injected failures", f"{f['caught']} caught",
                 f["passed"]),
            _row("Task behaviour (RULER-style)", f"{len(r['tasks'])} tasks x {r['examples'] // max(1, len(r['tasks']))}"
                 f" at {r['context_len']} tokens", f"predictions identical {r['predictions_identical']}, near-tie flips {r.get('tie_flips', 0)}", r["passed"])]
    for name, g in doc.get("backend_gates", {}).items():
        rows.append(_row(f"{name}: tokens and versions", "the modes run", f"{g['token_match']} owners", g["passed"]))
    ray_rows = doc["sweep"]["modes"].get("rwttt_ray", [])
    if ray_rows:
        pairs = [tuple(int(x) for x in r["token_match"].split("/")) for r in ray_rows]
        rows.append(_row("rwttt_ray sweep: token match", f"{len(ray_rows)} owner counts, past "
                         f"{doc['sweep']['ray_slots']} device slots (spill)", f"{sum(a for a, _ in pairs)}/"
                         f"{sum(b for _, b in pairs)} owners", all(a == b for a, b in pairs)))
    return rows
