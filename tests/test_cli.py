"""The CLI: bad input ends in one readable line and a non-zero exit; a small bench runs end to end."""
import json
import os
import subprocess
import sys

import pytest

ENV = {**os.environ, "PYTHONWARNINGS": "ignore"}


def rwttt(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "rwttt_ray.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=ENV)


@pytest.mark.parametrize("args,needle", [
    (["bench", "--owners", "0"], "--owners must be >= 1"),
    (["bench", "--ttt-chunk", "0"], "--ttt-chunk must be >= 1"),
    (["bench", "--owners", "x"], "integer"),
    (["bench", "--trace", "nope"], "invalid choice"),
    (["bench", "--model", "/no/such/dir"], "does not exist"),
    (["bench", "--prompt-len", "5000"], "context limit"),
    (["bench", "--wait-budget-steps", "-1"], "wait budget must be >= 0"),
    (["bench", "--streams", "3"], "unrecognized arguments: --streams"),      # one name a knob: --owners
    (["bench", "--min-workers", "2"], "autoscaling needs max_workers"),
    (["bench", "--workers", "3", "--max-workers", "2"], "must be <= max_workers"),

    (["bench", "--skip", "sequential"], "invalid choice"),          # the reference every gate needs
    (["bench", "--align-rounds", "-1"], "--align-rounds must be >= 0"),
    (["bench", "--admit-window-ms", "-3"], "admit window must be >= 0"),
    (["serve", "--align-rounds", "x"], "integer"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_input_is_one_line_nonzero(args, needle):
    res = rwttt(*args)
    assert res.returncode != 0
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert needle in lines[0] and "Traceback" not in res.stderr


@pytest.mark.parametrize("args,needle", [
    (["--gpu-memory-utilization", "1.5"], "--gpu-memory-utilization must be > 0 and <= 1"),
    (["--gpu-memory-utilization", "0"], "--gpu-memory-utilization must be > 0"),
    (["--memory-budget-gib", "x"], "--memory-budget-gib must be a number"),
    (["--memory-budget-gib", "0"], "--memory-budget-gib must be > 0"),
    (["--swap-space", "-1"], "--swap-space must be >= 0"),
    (["--kv-block-size", "0"], "--kv-block-size must be >= 1"),
    (["--builtin-arch", "big"], "invalid choice"),
    (["--preset", "paper-1m"], "invalid choice"),
    (["--gpu-memory-utilization", "0.5", "--memory-budget-gib", "4"], "gpu_memory_utilization and memory_budget_gib"),
    (["--builtin-arch", "qwen3-4b", "--model", "/no/such/dir"], "builtin_arch 'qwen3-4b' is the built-in model's"),
])
def test_bad_memory_and_model_flags_are_one_line_exit_2(args, needle, capsys):
    """In-process (no model is built): argparse's refusals and the config's, each one line, exit 2."""
    from rwttt_ray.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["bench", *args])
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert exc.value.code == 2 and len(lines) == 1, lines
    assert needle in lines[0]


def test_model_dir_without_config(tmp_path):
    res = rwttt("bench", "--model", str(tmp_path))
    assert res.returncode != 0 and "config.json" in res.stderr and "Traceback" not in res.stderr


def test_small_bench_runs_and_passes_gates(tmp_path):
    out = tmp_path / "bench.json"
    res = rwttt("bench", "--owners", "3", "--prompt-len", "12", "--gen-len", "10", "--ttt-chunk", "8",
                "--replicas", "1", "--json", str(out))
    assert res.returncode == 0, res.stderr[-2000:]
    doc = json.loads(out.read_text())
    assert doc["gates"]["passed"] and doc["gates"]["naive_diverges"]
    assert doc["gates"]["token_match"] == "3/3"
    assert set(doc["modes"]) >= {"sequential", "replicas", "naive_shared", "static_ceiling", "rwttt_inproc"}
    assert "rwttt_vs_static_ceiling" in doc["ratios"]
    assert "rwttt_inproc" in res.stdout


@pytest.mark.integration                                  # starts a local Ray cluster and Serve
def test_small_http_bench_runs(tmp_path):
    """The main job's path (`make bench` is `rwttt bench --backend http`), small: local Ray,
    private Redis, Serve and the HTTP clients; the HTTP tokens match the reference."""
    out = tmp_path / "bench.json"
    res = rwttt("bench", "--backend", "http", "--owners", "2", "--prompt-len", "8", "--gen-len", "6", "--ttt-chunk", "8",
                "--repeat", "1", "--skip", "replicas", "--skip", "static_batch1", "--skip", "naive_shared",
                "--skip", "rwttt_ray", "--json", str(out), timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    doc = json.loads(out.read_text())
    assert doc["gates"]["rwttt_http_token_match"] == "2/2" and doc["gates"]["passed"] and "rwttt_ray" not in doc["modes"]
