"""`rwttt eval` output: the terminal summary and report.md (tables, the plots embedded).

Both read the JSON document `eval.run_eval` builds; nothing here measures anything.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

MODE_COLUMNS = (("tok/s", "tok_per_s"), ("wall s", "wall_s"), ("TTFT p50 ms", "ttft_p50_ms"),
                ("tok p50 ms", "tpot_p50_ms"), ("tok p99 ms", "tpot_p99_ms"), ("peak MiB", "peak_rss_mib"))


def md_table(headers: Iterable[str], rows: Iterable[Iterable[Any]]) -> str:
    head = list(headers)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return "-" if v != v else f"{v:.4g}" if abs(v) < 1e-2 and v else f"{v:,.2f}"
    return "-" if v is None else str(v)


def _ratio(doc: dict, mode: str) -> str:
    seq = doc["modes"]["sequential"]["tok_per_s"]
    return f"{doc['modes'][mode]['tok_per_s'] / seq:.2f}x" if seq else "-"


def headline(doc: dict[str, Any]) -> str:
    c, o = doc["config"], doc["options"]
    return (f"rwttt eval{' --quick' if o['quick'] else ''} on {c['model']} ({c['ttt_settings']}): trace {o['trace']}, "
            f"{o['owners']} owners, prompt {o['prompt_len']} + gen {o['gen_len']}, B={o['max_group_size']}, "
            f"w={o['wait_budget_steps']}, {c['torch_threads']} torch thread(s)")


def budget_line(b: dict[str, Any]) -> str:
    return (f"memory-matched replicas: {b['replicas']} (RW-TTT peak RSS {b['budget_mib']} MiB / one replica "
            f"{b['replica_mib']} MiB -> {b['by_memory']} by memory; {b['cores']} cores); rule: {b['rule']}")


def sweep_lines(sweep: dict[str, Any]) -> list[str]:
    owners = sorted({r["owners"] for rows in sweep["modes"].values() for r in rows})
    lines = [f"{'sweep tok/s  owners:':<22}" + "".join(f"{n:>9}" for n in owners)]
    for mode, rows in sweep["modes"].items():
        by = {r["owners"]: r["tok_per_s"] for r in rows}
        lines.append(f"  {mode:<20}" + "".join(f"{by[n]:>9.1f}" if n in by else f"{'-':>9}" for n in owners))
    return lines


def terminal_summary(doc: dict[str, Any], modes_table: str) -> str:
    lines = [headline(doc), modes_table, budget_line(doc["memory_budget"]), ""]
    lines.append(f"{'trace':<12}{'seq tok/s':>11}{'RW-TTT tok/s':>14}{'speedup':>9}  gates")
    for name, t in doc["traces"].items():
        g = t["gates"]
        lines.append(f"{name:<12}{t['sequential_tok_per_s']:>11.1f}{t.get('rwttt_tok_per_s', 0):>14.1f}"
                     f"{(t.get('speedup') or 0):>8.2f}x  tokens {g['token_match']}, "
                     f"contract {'held' if g['contract_held'] else 'VIOLATED'}")
    lines += [""] + sweep_lines(doc["sweep"]) + ["", "gates (the paper's Table 6, stricter):"]
    lines += [f"  {'PASS' if r['passed'] else 'FAIL'}  {r['check']:<36} {r['result']}  [{r['scope']}]"
              for r in doc["gates"]["rows"]]
    lines.append(f"all gates {'PASSED' if doc['gates']['passed'] else 'FAILED'}; "
                 f"wrote {doc['out']}/{{eval.json, report.md, {', '.join(doc['plots'])}}}")
    return "\n".join(lines)


# -- report.md ------------------------------------------------------------------------------------
def _modes_md(doc: dict[str, Any]) -> str:
    rows = [[name, *[m.get(k) for _, k in MODE_COLUMNS[:1]], _ratio(doc, name),
             *[m.get(k) for _, k in MODE_COLUMNS[1:]]] for name, m in doc["modes"].items()]
    return md_table(["mode", "tok/s", "vs seq", *[h for h, _ in MODE_COLUMNS[1:]]], rows)


def _traces_md(doc: dict[str, Any]) -> str:
    rows = [[n, t["sequential_tok_per_s"], t.get("rwttt_tok_per_s"), t.get("speedup"), t.get("mean_group_size"),
             t["gates"]["token_match"], t["gates"]["contract_held"], t["gates"]["max_logit_diff"]]
            for n, t in doc["traces"].items()]
    return md_table(["trace", "sequential tok/s", "RW-TTT tok/s", "speedup", "mean group", "token match",
                     "contract", "max logit diff"], rows)


def _sweep_md(sweep: dict[str, Any]) -> str:
    rows = [[mode, r["owners"], r["tok_per_s"], r["ttft_p50_ms"], r["tpot_p50_ms"], r["tpot_p99_ms"],
             r["peak_rss_mib"], r.get("spills", "")] for mode, rs in sweep["modes"].items() for r in rs]
    return md_table(["mode", "owners", "tok/s", "TTFT p50 ms", "tok p50 ms", "tok p99 ms", "peak MiB", "spills"], rows)


def _quality_md(q: dict[str, Any]) -> str:
    rows = [[n, c["settings"], c.get("nll", {}).get("ref_ppl"), c.get("nll", {}).get("engine_ppl"),
             c.get("nll", {}).get("delta"), c.get("drift", {}).get("top5_min"), c["passed"]]
            for n, c in q["configs"].items()]
    return md_table(["config", "settings", "ref PPL", "RW-TTT PPL", "abs dNLL", "top5_min", "pass"], rows)


def _faults_md(f: dict[str, Any]) -> str:
    rows = [[n, r["caught"], r["detail"], ", ".join(k for k, v in r["checks"].items() if v)]
            for n, r in f["faults"].items()]
    return md_table(["fault", "caught", "what was injected", "checks held"], rows)


def _ruler_md(r: dict[str, Any]) -> str:
    rows = [[t, v["sequential"], v["rwttt"], v["diff"]] for t, v in r["tasks"].items()]
    rows.append(["**mean**", r["mean_sequential"], r["mean_rwttt"], round(r["mean_rwttt"] - r["mean_sequential"], 2)])
    return md_table(["task", "sequential", "RW-TTT", "diff"], rows)


def report_md(doc: dict[str, Any]) -> str:
    g = doc["gates"]
    parts = [f"# RW-TTT evaluation\n\n{headline(doc)}.\n\nAll gates **{'passed' if g['passed'] else 'FAILED'}**.",
             "## Gates (the paper's Table 6, stricter)\n\n" + md_table(
                 ["check", "scope", "result", "pass"], [[r["check"], r["scope"], r["result"], r["passed"]]
                                                         for r in g["rows"]]),
             "## Modes on one run (same trace, same model)\n\n" + _modes_md(doc) + "\n\n" + budget_line(
                 doc["memory_budget"]) + ". Naive shared-state batching is fast and wrong: tokens "
             f"{doc['modes_gates'].get('naive_token_match')} match sequential.\n\n![modes](modes.png)",
             "## Traces (Table 4 rows)\n\n" + _traces_md(doc),
             "## Scaling sweep\n\n![throughput](throughput_vs_owners.png)\n\n![latency](latency_vs_owners.png)\n\n"
             + _sweep_md(doc["sweep"]),
             "## NLL/PPL and relative drift, per configuration\n\n" + _quality_md(doc["quality"]),
             "## Injected state-contract faults\n\n" + _faults_md(doc["faults"]),
             f"## RULER-style tasks ({doc['ruler']['examples']} examples, {doc['ruler']['context_len']} tokens)\n\n"
             + _ruler_md(doc["ruler"]) + f"\n\nPredictions identical: {doc['ruler']['predictions_identical']}."]
    return "\n\n".join(parts) + "\n"


def write_report(doc: dict[str, Any], out: Path) -> Path:
    path = out / "report.md"
    path.write_text(report_md(doc))
    return path
