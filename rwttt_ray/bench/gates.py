"""Correctness gates of a benchmark run, each comparing a mode with the sequential reference.

contract: every committed WRITE advanced its owner by exactly one version, in order, and each
owner's final version equals its sequential WRITE count; token_match: identical tokens per owner
(or a near-tie flip, below); max_logit_diff: the largest |logit difference| over all owners and
emitted tokens up to where their tokens part.
"""
from __future__ import annotations

from typing import Sequence

from rwttt_ray.bench.modes import ModeResult

TIE_TOL = 1e-4


def tie_flip(want_tokens: Sequence[int], want_logits: Sequence, got_tokens: Sequence[int],
             got_logits: Sequence, tol: float = TIE_TOL) -> bool:
    """True when two greedy streams part only at a near-tie: every logit up to the first differing
    token agrees within `tol`, and there the two chosen tokens were within `tol` in the reference.
    Batched and batch-1 GEMMs sum in different orders (~1e-7 apart); on a random model two top
    logits can be closer than that, and either choice is then correct to the contract's 1e-4."""
    k = next((i for i, (a, b) in enumerate(zip(want_tokens, got_tokens)) if a != b), None)
    if k is None or k >= min(len(want_logits or ()), len(got_logits or ())):
        return False
    if max(_diff(a, b) for a, b in zip(want_logits[:k + 1], got_logits[:k + 1])) > tol:
        return False
    ref = want_logits[k]
    return float(ref[want_tokens[k]] - ref[got_tokens[k]]) <= tol


def token_match(mode: ModeResult, ref: ModeResult) -> tuple[int, int]:
    """(owners whose tokens equal the reference's, or part from them only at a near-tie, owners)."""
    same = sum(mode.tokens.get(o) == t or tie_flip(t, ref.logits.get(o), mode.tokens.get(o) or [],
                                                   mode.logits.get(o))
               for o, t in ref.tokens.items())
    return same, len(ref.tokens)


def mismatches(mode: ModeResult, ref: ModeResult, most: int = 3) -> list[dict]:
    """For the report: up to `most` owners whose tokens differ (lengths, first differing index,
    whether it was a near-tie flip), so a failed token gate says how it failed."""
    out = []
    for o, want in ref.tokens.items():
        got = mode.tokens.get(o) or []
        if got != want and len(out) < most:
            first = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
            out.append({"owner": o, "ref_len": len(want), "got_len": len(got), "first_diff": first,
                        "tie_flip": tie_flip(want, ref.logits.get(o), got, mode.logits.get(o))})
    return out


def _diff(a, b) -> float:
    """Largest |a - b|, on the host in fp32 (a mode's logits may sit on another device); a NaN
    anywhere is an infinite difference (max() would pass it over, and the gate with it)."""
    d = (a.detach().float().cpu() - b.detach().float().cpu()).abs()
    return float("inf") if bool(d.isnan().any()) else float(d.max())


def max_logit_diff(mode: ModeResult, ref: ModeResult) -> float | None:
    """None when the mode exposes no logits (the HTTP path: they stay on the workers)."""
    if not any(mode.logits.values()):
        return None
    worst = 0.0
    for o, ref_logits in ref.logits.items():
        got, want = mode.tokens.get(o) or [], ref.tokens.get(o) or []
        n = next((i + 1 for i, (a, b) in enumerate(zip(got, want)) if a != b), len(ref_logits))
        for a, b in zip(mode.logits.get(o, [])[:n], ref_logits[:n]):   # past a tie flip the inputs differ
            worst = max(worst, _diff(a, b))
    return worst


def contract_held(mode: ModeResult, ref: ModeResult) -> bool | None:
    """Versions == sequential WRITE counts, and the audit log is gap-free per owner (None: the
    mode exposes no versions)."""
    if not mode.versions:
        return None
    if any(mode.versions.get(o) != v for o, v in ref.versions.items()):
        return False
    if "audit" not in mode.extra:     # modes without an in-process ledger: versions only
        return True
    last: dict[str, int] = {}
    for rec in mode.extra["audit"]:
        if rec.to_version != rec.from_version + 1 or rec.from_version != last.get(rec.owner_id, 0):
            return False
        last[rec.owner_id] = rec.to_version
    return all(last.get(o, 0) == v for o, v in mode.versions.items())


def gates(rwttt: ModeResult, naive: ModeResult | None, ref: ModeResult, tol: float = 1e-4) -> dict:
    same, total = token_match(rwttt, ref)
    out = {"contract_held": contract_held(rwttt, ref), "token_match": f"{same}/{total}",
           "max_logit_diff": max_logit_diff(rwttt, ref), "logit_tolerance": tol}
    diff = out["max_logit_diff"]
    out["passed"] = out["contract_held"] is not False and same == total and (diff is None or diff <= tol)
    if same != total:
        out["token_mismatches"] = mismatches(rwttt, ref)
    if naive is not None:
        nsame, _ = token_match(naive, ref)
        out["naive_token_match"] = f"{nsame}/{total}"
        out["naive_max_logit_diff"] = max_logit_diff(naive, ref)
        out["naive_diverges"] = (out["naive_max_logit_diff"] or 0) > tol
    return out
