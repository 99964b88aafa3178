"""Build a random Qwen3-4B-shaped In-Place TTT checkpoint with the project's own code.

The paper's setting (rwttt_paper.md): Qwen3-4B shapes (hidden 2560, 36 layers, 32 heads, 8 KV heads,
head_dim 128, intermediate 9728, vocab 151936, tied embeddings, rope theta 1e6) with the project's
default TTT layer pattern (every 6th layer from 0: 0, 6, 12, 18, 24, 30 of 36) and chunk 128.
Weights are seeded random (`build_default_model`), written with `save_checkpoint` (official
In-Place-TTT layout), so `rwttt bench --model DIR` reads it like any local checkpoint.

    python3 scripts/make_qwen3_4b_shaped.py --out /tmp/qwen3-4b-shaped            # ~8 GB in bf16
    python3 scripts/make_qwen3_4b_shaped.py --out /tmp/q-small --scale-down       # CPU smoke test

max_position_embeddings is set to --max-pos (default 4608 = 4096 prompt + 512 generated, the
paper's longest request) rather than Qwen3-4B's 40960: the engine preallocates every owner's KV
cache to the model's context limit, so 40960 would cost ~6 GB of KV per owner. RoPE does not
depend on it. With --check DEVICE the script also runs one owner through the sequential
reference (prompt 2 chunks + 8 tokens) and prints whether the logits are finite and how far the
WRITEs moved the fast weight (||dW|| / ||W0|| of the first TTT layer).
"""
from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from rwttt_ray.ttt.checkpoint import save_checkpoint  # noqa: E402
from rwttt_ray.ttt.model import DEFAULT_TTT, build_default_model  # noqa: E402

QWEN3_4B = dict(vocab_size=151936, hidden_size=2560, intermediate_size=9728, num_hidden_layers=36,
                num_attention_heads=32, num_key_value_heads=8, head_dim=128, tie_word_embeddings=True,
                rope_theta=1000000.0, rms_norm_eps=1e-6)
# same ratios, tiny: for a CPU smoke test of this script only
SMALL = dict(QWEN3_4B, vocab_size=1024, hidden_size=128, intermediate_size=384, num_hidden_layers=12,
             num_attention_heads=4, num_key_value_heads=2, head_dim=32)
DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32, "float16": torch.float16}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="checkpoint directory to write")
    p.add_argument("--dtype", default="bfloat16", choices=tuple(DTYPES), help="dtype of the saved weights")
    p.add_argument("--chunk", type=int, default=128, help="TTT chunk size C")
    p.add_argument("--max-pos", type=int, default=4608, help="max_position_embeddings (context limit)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads for the init (0: torch's default)")
    p.add_argument("--scale-down", action="store_true", help="tiny shapes (smoke test of this script)")
    p.add_argument("--check", metavar="DEVICE", help="run one owner through the sequential reference on DEVICE")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    arch = dict(SMALL if args.scale_down else QWEN3_4B, max_position_embeddings=args.max_pos)
    num_layers = arch["num_hidden_layers"]
    settings = DEFAULT_TTT.with_overrides(chunk=args.chunk)   # layers 0, 6, ..., 30; validate_for trims
    t0 = time.perf_counter()
    model = build_default_model(settings, seed=args.seed, dtype=DTYPES[args.dtype], **arch)
    # build_default_model makes conv/proj for every layer; only the TTT layers are saved and used
    model.conv = {i: model.conv[i] for i in model.settings.layers}
    model.proj = {i: model.proj[i] for i in model.settings.layers}
    t_build = time.perf_counter() - t0
    n_params = sum(t.numel() for t in model.hf.parameters())
    # one file: save_checkpoint rewrites model.safetensors (transformers 5 defaults to 50GB shards)
    model.hf.save_pretrained = functools.partial(model.hf.save_pretrained, max_shard_size="200GB")
    t1 = time.perf_counter()
    out = save_checkpoint(model, args.out)
    t_save = time.perf_counter() - t1
    size = sum(f.stat().st_size for f in Path(out).iterdir())
    cfg = json.loads((Path(out) / "config.json").read_text())
    print(f"wrote {out}: {n_params / 1e9:.3f} B params, {size / 2**30:.2f} GiB, {num_layers} layers, "
          f"ttt_layers {cfg['ttt_layers']}, chunk {cfg['ttt_chunk']}, lr {cfg['ttt_lr']}, "
          f"max_pos {cfg['max_position_embeddings']}, dtype {args.dtype}; build {t_build:.1f} s, save {t_save:.1f} s")
    if args.check:
        check(model, args.check, args.chunk)
    return 0


def check(model, device: str, chunk: int) -> None:
    from rwttt_ray.ttt.reference import SequentialReference
    from rwttt_ray.ttt.sampling import Request

    model.hf.to(device)
    model.conv = {i: t.to(device) for i, t in model.conv.items()}
    model.proj = {i: t.to(device) for i, t in model.proj.items()}
    prompt = tuple(35 + (7 * i) % 90 for i in range(2 * chunk))
    out = SequentialReference(model, record_logits=True).run(Request("check", prompt, 8))
    finite = all(bool(torch.isfinite(x).all()) for x in out.logits)
    w0 = model.hf.model.layers[model.settings.layers[0]].mlp.down_proj.weight.float()
    rel = float(out.deltas[0].norm() / w0.norm()) if out.deltas else 0.0
    print(f"check on {device}: writes {out.num_writes}, logits finite {finite}, "
          f"|logit| max {max(float(x.abs().max()) for x in out.logits):.3g}, ||dW||/||W0|| layer "
          f"{model.settings.layers[0]} = {rel:.3g}, tokens {out.tokens}")


if __name__ == "__main__":
    sys.exit(main())
