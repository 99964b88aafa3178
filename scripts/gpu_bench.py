"""`rwttt bench` on a GPU, plus a warm-up and the GPU's peak memory.

    python3 scripts/gpu_bench.py [--no-warmup] -- bench --backend inproc --device cuda --dtype bfloat16 ...

Everything after `--` is passed to `rwttt` unchanged. Before the first timed mode it runs one short
owner through the sequential reference and two through the serving loop (TTT on and off, one WRITE
each), so CUDA context, cuBLAS handles and kernel loading are not charged to `sequential`, which
runs first. After the run it prints torch.cuda.max_memory_allocated/reserved over the timed modes
and adds them (and the GPU's name, the rwttt arguments and the total seconds, model build included)
to the --json file as "gpu_bench". scripts/gpu_check.sh runs every bench step through it.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

import rwttt_ray.bench.inproc as inproc  # noqa: E402
from rwttt_ray.cli import main as rwttt_main  # noqa: E402


def warmup(model) -> float:
    from rwttt_ray.ttt.baselines import static_model
    from rwttt_ray.ttt.local import LocalLoop
    from rwttt_ray.ttt.reference import SequentialReference
    from rwttt_ray.ttt.sampling import Request

    t0 = time.perf_counter()
    c = model.settings.chunk
    reqs = [Request(f"warm{i}", tuple(40 + (i + j) % 50 for j in range(c + 3)), 4) for i in range(2)]
    SequentialReference(model, record_logits=True).run(reqs[0])
    for m in (model, static_model(model)):
        LocalLoop(model=m, max_states_per_worker=2, record_logits=True, keep_state=True).run(reqs)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main() -> int:
    argv = sys.argv[1:]
    do_warm = "--no-warmup" not in argv
    argv = [a for a in argv if a != "--no-warmup"]
    if "--" in argv:
        argv = argv[argv.index("--") + 1:]
    original = inproc.run_inproc

    def run_inproc(model, batching, opts, extra_modes=None):
        if do_warm:
            print(f"warm-up {warmup(model):.1f} s (not timed)", flush=True)
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        return original(model, batching, opts, extra_modes)

    inproc.run_inproc = run_inproc
    t0 = time.perf_counter()
    rc = rwttt_main(argv)
    info = {"total_s": round(time.perf_counter() - t0, 1), "argv": argv}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        info.update(gpu=torch.cuda.get_device_name(0),
                    peak_alloc_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2),
                    peak_reserved_gib=round(torch.cuda.max_memory_reserved() / 2**30, 2))
    print("gpu_bench: rc", rc, json.dumps(info), flush=True)
    if "--json" in argv:
        path = Path(argv[argv.index("--json") + 1])
        if path.is_file():
            doc = json.loads(path.read_text())
            doc["gpu_bench"] = info
            path.write_text(json.dumps(doc, indent=2, default=str))
    return rc


if __name__ == "__main__":
    sys.exit(main())
