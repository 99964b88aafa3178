"""The benchmark report: ratios between modes, a terminal table, the per-step profile, and the JSON document."""
from __future__ import annotations

import json
from pathlib import Path

from rwttt_ray.bench.modes import ModeResult

PROFILE_PARTS = ("forward", "planning", "sampling", "write", "host_sync", "idle")   # LocalLoop.profile()'s keys


def ratios(results: dict[str, ModeResult]) -> dict[str, float]:
    def r(a: str, b: str) -> float | None:
        if a in results and b in results and results[b].tok_per_s > 0:
            return round(results[a].tok_per_s / results[b].tok_per_s, 3)
        return None

    out = {"rwttt_vs_sequential": r("rwttt_inproc", "sequential"),
           "rwttt_vs_replicas": r("rwttt_inproc", "replicas"),
           "rwttt_vs_static_ceiling": r("rwttt_inproc", "static_ceiling"),
           "static_ceiling_vs_static_batch1": r("static_ceiling", "static_batch1"),
           "naive_vs_sequential": r("naive_shared", "sequential")}
    for name in results:
        if name.startswith("rwttt_") and name != "rwttt_inproc":
            out[f"{name}_vs_inproc"] = r(name, "rwttt_inproc")
            out[f"{name}_vs_inproc_paired"] = paired_ratio(results[name])
    return {k: v for k, v in out.items() if v is not None}


def paired_ratio(res: ModeResult) -> float | None:
    """Median over a backend's passes of (in-process wall / backend wall), each in-process run
    made right after its pass: the ratio to read on a machine whose speed drifts."""
    walls, inproc = res.extra.get("all_walls_s"), res.extra.get("paired_inproc_walls_s")
    if not walls or not inproc or len(walls) != len(inproc):
        return None
    pairs = sorted(i / w for w, i in zip(walls, inproc) if w > 0)
    return round(pairs[len(pairs) // 2], 3) if pairs else None


def table(results: dict[str, ModeResult]) -> str:
    head = f"{'mode':<16}{'tok/s':>10}{'vs seq':>8}{'wall s':>9}{'TTFT p50 ms':>13}{'tok p50 ms':>12}{'tok p99 ms':>12}{'peak MiB':>10}"
    lines = [head, "-" * len(head)]
    seq = results.get("sequential")
    for name, res in results.items():
        s = res.summary()
        vs = f"{res.tok_per_s / seq.tok_per_s:.2f}x" if seq and seq.tok_per_s else "-"

        def ms(v: float, w: int, p: int) -> str:
            return f"{v:>{w}.{p}f}" if v == v else f"{'-':>{w}}"   # nan -> '-'
        lines.append(f"{name:<16}{s['tok_per_s']:>10.1f}{vs:>8}{s['wall_s']:>9.2f}{ms(s['ttft_p50_ms'], 13, 1)}"
                     f"{ms(s['tpot_p50_ms'], 12, 2)}{ms(s['tpot_p99_ms'], 12, 2)}{s['peak_rss_mib']:>10.0f}")
    return "\n".join(lines)


def profile_of(res: ModeResult) -> dict | None:
    """A mode's per-step profile (LocalLoop.profile(): seconds per part) as seconds and fractions of
    its wall time; None when the mode has none."""
    raw = res.extra.get("profile")
    if not raw:
        return None
    seconds = {part: round(float(raw.get(part, 0.0)), 4) for part in PROFILE_PARTS}
    wall = res.wall_s
    fractions = {part: round(s / wall, 4) if wall > 0 else None for part, s in seconds.items()}
    return {"seconds": seconds, "fractions": fractions, "wall_s": round(wall, 4)}


def profile_table(results: dict[str, ModeResult]) -> str:
    """The modes that have a profile, each part as a percentage of the mode's wall time."""
    head = f"{'profile % wall':<16}" + "".join(f"{p:>11}" for p in PROFILE_PARTS) + f"{'sum':>8}"
    lines = [head, "-" * len(head)]
    for name, res in results.items():
        prof = profile_of(res)
        if prof is None or res.wall_s <= 0:
            continue
        fr = prof["fractions"]
        lines.append(f"{name:<16}" + "".join(f"{100 * fr[p]:>10.1f}%" for p in PROFILE_PARTS)
                     + f"{100 * sum(fr.values()):>7.1f}%")
    return "\n".join(lines) if len(lines) > 2 else "profile: no mode reported one"


def gates_lines(g: dict) -> str:
    return "\n".join(f"  {k}: {v}" for k, v in g.items())


def document(config: dict, results: dict[str, ModeResult], gate: dict) -> dict:
    modes = {}
    for name, res in results.items():
        s = res.summary()
        s.pop("audit", None)
        if "profile" in s:
            s["profile"] = profile_of(res)
        modes[name] = s
    return {"config": config, "modes": modes, "ratios": ratios(results), "gates": gate}


def write_json(path: str | Path, doc: dict) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(doc, indent=2, default=str))
