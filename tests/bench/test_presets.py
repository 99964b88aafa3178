"""`rwttt bench --preset`: the paper's settings resolve to the config and options, the flags given
win over them, the Qwen3-4B shapes are Qwen3-4B's (checked as numbers: the 4B model is never
built here), and scripts/gpu_check.sh is a runnable script naming every step."""
import os
import subprocess
from pathlib import Path

import pytest
import torch

from rwttt_ray.bench.presets import PAPER_TTT_LAYERS, PRESETS, preset_values
from rwttt_ray.cli import bench_options, build_parser, parse_args
from rwttt_ray.config import BUILTIN_ARCHS, QWEN3_4B_ARCH
from rwttt_ray.flags import config_from

ROOT = Path(__file__).resolve().parents[2]


def resolved(*argv):
    args = parse_args(["bench", *argv])
    return config_from(args), bench_options(args)


@pytest.mark.parametrize("name, owners, prompt", [("paper", 8, 4096), ("paper-16k", 7, 16384)])
def test_a_preset_resolves_to_the_papers_setting(name, owners, prompt):
    config, opts = resolved("--preset", name)
    m = config.model
    assert (m.model, m.builtin_arch, m.ttt_chunk, m.ttt_layers, m.dtype) == \
        (None, "qwen3-4b", 128, PAPER_TTT_LAYERS, "bfloat16")
    assert m.device == ("cuda" if torch.cuda.is_available() else "cpu")
    assert m.max_model_len == prompt + 512                 # KV sized to the run, not to 40960 positions
    assert (opts.preset, opts.owners, opts.prompt_len, opts.gen_len) == (name, owners, prompt, 512)
    assert opts.skip == ("replicas", "static_batch1")
    assert config.batching == config_from(build_parser().parse_args(["bench"])).batching   # untouched


def test_the_device_is_cuda_when_there_is_one(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert preset_values("paper")["device"] == "cuda"
    assert resolved("--preset", "paper")[0].model.device == "cuda"
    assert resolved("--preset", "paper", "--device", "cpu")[0].model.device == "cpu"


def test_flags_given_win_over_the_preset():
    config, opts = resolved("--preset", "paper-16k", "--owners", "8", "--dtype", "float32", "--ttt-chunk", "64",
                            "--skip", "naive_shared", "--prompt-len", "1024", "--profile")
    assert (opts.owners, opts.prompt_len, opts.gen_len, opts.skip, opts.profile) == \
        (8, 1024, 512, ("naive_shared",), True)     # 8 is bench's default, given: it still wins over 7
    assert (config.model.dtype, config.model.ttt_chunk, config.model.max_model_len) == ("float32", 64, 1536)
    assert resolved("--preset", "paper", "--max-model-len", "9000")[0].model.max_model_len == 9000
    assert resolved("--preset", "paper", "--own", "3")[1].owners == 3          # argparse's abbreviations too
    assert resolved("--preset", "paper", "--ttt-layers", "1,2")[0].model.ttt_layers == (1, 2)


def test_a_checkpoint_replaces_the_built_in_shapes(tmp_path):
    config, opts = resolved("--preset", "paper", "--model", str(tmp_path))
    assert (config.model.model, config.model.builtin_arch, config.model.ttt_chunk) == (str(tmp_path), "tiny", 128)
    assert opts.owners == 8


def test_no_preset_leaves_the_defaults():
    config, opts = resolved()
    assert (opts.preset, opts.owners, opts.prompt_len, opts.skip, opts.profile) == (None, 8, 128, (), False)
    assert (config.model.builtin_arch, config.model.max_model_len, config.model.dtype) == ("tiny", None, "float32")


def test_preset_keys_are_bench_flag_dests():
    parser = build_parser()._subparsers._group_actions[0].choices["bench"]
    dests = {a.dest for a in parser._actions}
    for values in PRESETS.values():
        assert set(values) <= dests, set(values) - dests


def test_the_qwen3_4b_shapes_are_qwen3_4bs():
    from transformers import AutoConfig

    a = QWEN3_4B_ARCH
    assert BUILTIN_ARCHS["qwen3-4b"] is a
    assert (a["num_hidden_layers"], a["hidden_size"], a["intermediate_size"]) == (36, 2560, 9728)
    assert (a["num_attention_heads"], a["num_key_value_heads"], a["head_dim"], a["vocab_size"]) == (32, 8, 128, 151936)
    assert a["tie_word_embeddings"] and a["max_position_embeddings"] >= 16384 + 512
    cfg = AutoConfig.for_model("qwen3", **a)                 # transformers takes every key (a config, no weights)
    assert (cfg.num_hidden_layers, cfg.num_key_value_heads, cfg.head_dim) == (36, 8, 128)
    d, f, h, kv, hd = a["hidden_size"], a["intermediate_size"], a["num_attention_heads"], a["num_key_value_heads"], 128
    layer = d * h * hd * 2 + d * kv * hd * 2 + 3 * d * f + 2 * d + 2 * hd
    params = a["vocab_size"] * d + a["num_hidden_layers"] * layer + d      # tied embeddings: the head is the table
    assert 4.0e9 < params < 4.05e9                                          # Qwen3-4B: 4.02 B
    assert all(i < a["num_hidden_layers"] for i in PAPER_TTT_LAYERS)


SCRIPT = ROOT / "scripts" / "gpu_check.sh"


def test_the_gpu_check_script_is_runnable_and_names_every_step():
    assert SCRIPT.is_file() and os.access(SCRIPT, os.X_OK)
    res = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    text = SCRIPT.read_text()
    for needle in ("gates_fp32", "--dtype float32", "--preset paper", "scale_32", "--owners 32", "scale_64",
                   "--owners 64", "--backend \"$backend\"", "backend=ray", "paper_eager", "--enforce-eager",
                   "paper_backends", "scripts/gpu_bench.py", "--profile", "timeout", "gpu_check.json",
                   "gpu_check.md", "${OUT:-results/gpu_check}", "--no-deps --no-build-isolation", "RWTTT_GPU_SKIP"):
        assert needle in text, needle
