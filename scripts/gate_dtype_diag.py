"""Why does the bench's logit gate (1e-4) fail in bf16? Noise floor vs a real bug, measured.

Runs one trace through the modes in fp32 and in a low-precision compute dtype on one device and
prints, per comparison, the token match and the largest |logit difference| up to where tokens
part (the bench's own `token_match` / `max_logit_diff`), plus the fast-weight delta error:

  rwttt16 vs seq16        the bench's gate in the low dtype
  static_b16 vs static1   TTT off, the batched loop vs batch-1 HF forward: no TTT code at all, so
                          this is the dtype's batching noise floor
  seq16 vs seq32          the reference's own low-precision error against fp32
  rwttt16 vs seq32        RW-TTT's low-precision error against fp32 (same size as the line above
                          when the batched path is as exact as the reference)
  naive16 vs seq16        shared-state batching: a real owner-mixing bug, for scale
  rwttt32 vs seq32        the gate in fp32 on this device

    python3 scripts/gate_dtype_diag.py --device cuda --dtype bfloat16 --streams 8
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from rwttt_ray.bench import modes  # noqa: E402
from rwttt_ray.bench.gates import max_logit_diff, token_match  # noqa: E402
from rwttt_ray.bench.traces import make_trace  # noqa: E402
from rwttt_ray.config import ModelConfig  # noqa: E402
from rwttt_ray.ttt.baselines import static_model  # noqa: E402
from rwttt_ray.ttt.local import LocalLoop  # noqa: E402

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def static_batched(model, trace) -> modes.ModeResult:
    loop = LocalLoop(model=static_model(model), max_states_per_worker=len(trace.requests), record_logits=True)
    return modes.run_loop_mode("static_b", loop, trace)


def delta_err(a: modes.ModeResult, b: modes.ModeResult) -> float | None:
    """max over owners and layers of ||dW_a - dW_b|| / ||dW_b||."""
    worst = None
    for o, db in b.deltas.items():
        da = a.deltas.get(o)
        if not db or not da:
            continue
        for x, y in zip(da, db):
            r = float((x.float() - y.float()).norm() / y.float().norm().clamp_min(1e-30))
            worst = r if worst is None else max(worst, r)
    return worst


def divergences(mode: modes.ModeResult, ref: modes.ModeResult) -> list[dict]:
    """Where tokens part: position, the reference's top-2 logit margin there, and the logit
    difference up to that point."""
    out = []
    for o, want in ref.tokens.items():
        got = mode.tokens.get(o) or []
        k = next((i for i, (a, b) in enumerate(zip(want, got)) if a != b), None)
        if k is None:
            continue
        lr, lm = ref.logits[o][k], mode.logits[o][k]
        top2 = torch.topk(lr.float(), 2).values
        out.append({"owner": o, "pos": k, "ref_top2_margin": float(top2[0] - top2[1]),
                    "ref_margin_between_choices": float(lr[want[k]] - lr[got[k]]),
                    "mode_margin_between_choices": float(lm[got[k]] - lm[want[k]]),
                    "max_logit_diff_upto": max(float((a - b).abs().max())
                                               for a, b in zip(ref.logits[o][:k + 1], mode.logits[o][:k + 1]))})
    return out


def line(name: str, mode: modes.ModeResult, ref: modes.ModeResult, deltas: bool = True) -> dict:
    same, total = token_match(mode, ref)
    d = max_logit_diff(mode, ref)
    rec = {"cmp": name, "tokens": f"{same}/{total}", "max_logit_diff": d,
           "delta_rel_err": delta_err(mode, ref) if deltas else None,
           "divergences": divergences(mode, ref)}
    de = rec["delta_rel_err"]
    print(f"{name:<22} tokens {rec['tokens']:>7}  max_logit_diff {'-' if d is None else f'{d:.3e}'}  "
          f"dW rel err {'-' if de is None else f'{de:.2e}'}  divergences {len(rec['divergences'])}", flush=True)
    for dv in rec["divergences"][:4]:
        print(f"    {dv['owner']} at token {dv['pos']}: ref top-2 margin {dv['ref_top2_margin']:.3e}, "
              f"margin between the two choices {dv['ref_margin_between_choices']:.3e} (ref) / "
              f"{dv['mode_margin_between_choices']:.3e} (mode), logit diff up to there {dv['max_logit_diff_upto']:.3e}")
    return rec


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="checkpoint dir (default: the built-in tiny model)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtype", default="bfloat16", choices=tuple(DTYPES))
    p.add_argument("--streams", type=int, default=8)
    p.add_argument("--prompt-len", type=int, default=128)
    p.add_argument("--gen-len", type=int, default=128)
    p.add_argument("--chunk", type=int)
    p.add_argument("--trace", default="uniform")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-fp32-rwttt", action="store_true", help="skip the fp32 RW-TTT run")
    p.add_argument("--json")
    args = p.parse_args()
    model = ModelConfig(model=args.model, ttt_chunk=args.chunk, dtype="float32", device=args.device).load_model()
    trace = make_trace(args.trace, args.streams, args.prompt_len, args.gen_len, model.settings.chunk, args.seed)
    print(f"model {model.name}, {model.settings}, device {args.device}, streams {args.streams}, "
          f"prompt {args.prompt_len}, gen {args.gen_len}, tf32 matmul {torch.backends.cuda.matmul.allow_tf32}, "
          f"cudnn tf32 {torch.backends.cudnn.allow_tf32}", flush=True)
    seq32 = modes.run_sequential("seq32", model, trace)
    recs = []
    if not args.no_fp32_rwttt:
        recs.append(line("rwttt32 vs seq32", modes.run_rwttt(model, trace), seq32))
    model.hf.to(DTYPES[args.dtype])
    seq16 = modes.run_sequential("seq16", model, trace)
    rw16 = modes.run_rwttt(model, trace)
    naive16 = modes.run_naive(model, trace)
    st1 = modes.run_sequential("static1", static_model(model), trace)
    stb = static_batched(model, trace)
    recs += [line("rwttt16 vs seq16", rw16, seq16),
             line("static_b16 vs static1", stb, st1, deltas=False),
             line("seq16 vs seq32", seq16, seq32),
             line("rwttt16 vs seq32", rw16, seq32),
             line("naive16 vs seq16", naive16, seq16)]
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "comparisons": recs}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
