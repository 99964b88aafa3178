"""`rwttt bench --preset`: the RW-TTT paper's settings by name, under the flags the user gives.

paper: Qwen3-4B's shapes (`--builtin-arch qwen3-4b`: 36 layers, hidden 2560, intermediate 9728,
32 heads, 8 KV heads, head_dim 128, vocab 151936, tied embeddings) with random weights built in
memory (offline), 8 owners of 4096 prompt + 512 generated tokens, TTT chunk 128 on layers 0, 6,
..., 30, bf16 compute (fast weights are fp32 anyway), on CUDA when there is one. paper-16k: the same
with 16384 + 512 tokens and 7 owners. The served context (`--max-model-len`) is prompt + generated,
so every owner's KV is sized to the run, not to Qwen3-4B's 40960 positions.

The preset skips replicas (a 4B model copy per stream) and static_batch1 (a second batch-1 pass as
long as sequential). A flag given on the command line wins over the preset's value, as `rwttt eval
--quick` does: `--skip` replaces the preset's skips, `--model` replaces the built-in shapes, and
`--prompt-len`/`--gen-len` move the context with them. Light (torch only inside preset_values).
"""
from __future__ import annotations

from typing import Any

PAPER_TTT_LAYERS = (0, 6, 12, 18, 24, 30)
PAPER: dict[str, Any] = dict(builtin_arch="qwen3-4b", owners=8, prompt_len=4096, gen_len=512, ttt_chunk=128,
                             ttt_layers=PAPER_TTT_LAYERS, dtype="bfloat16", skip=("replicas", "static_batch1"))
PRESETS: dict[str, dict[str, Any]] = {"paper": PAPER, "paper-16k": dict(PAPER, owners=7, prompt_len=16384)}
PRESET_NAMES = tuple(PRESETS)


def preset_values(name: str) -> dict[str, Any]:
    """The preset's flag values by dest, its device resolved here: cuda when available, else cpu."""
    import torch

    return {**PRESETS[name], "device": "cuda" if torch.cuda.is_available() else "cpu"}


def apply_preset(args: Any, given: set[str]) -> None:
    """`args.preset`'s values into the parsed flags `args`, except the dests in `given` (the flags
    the command line gave); then the served context, unless given: prompt + generated tokens."""
    name = getattr(args, "preset", None)
    if name is None:
        return
    values = preset_values(name)
    if "model" in given:                      # a checkpoint brings its own architecture
        values.pop("builtin_arch")
    for dest, value in values.items():
        if dest not in given:
            setattr(args, dest, value)
    if "max_model_len" not in given:
        args.max_model_len = args.prompt_len + args.gen_len
