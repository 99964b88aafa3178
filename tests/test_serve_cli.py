"""`rwttt serve` as a user starts it, vllm-style: a positional checkpoint, --api-key,
--served-model-name, --max-model-len, --chat-template, --seed, --log-level; one start-up line
says what is served; the official client works; SIGTERM stops it and everything it started."""
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
from openai import APIStatusError, AuthenticationError, OpenAI

from actors.redis_server import free_port
from tests.checkpoints import build_bpe_checkpoint

pytestmark = pytest.mark.slow
TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def wait_for(proc, needle, timeout_s):
    lines, deadline = [], time.time() + timeout_s
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        lines.append(line)
        if needle in line:
            return lines
    raise AssertionError(f"no {needle!r} in:\n{''.join(lines)[-3000:]}")


def test_rwttt_serve_speaks_vllm_serve(tmp_path):
    ckpt = build_bpe_checkpoint(tmp_path / "tiny")
    (tmp_path / "t.jinja").write_text(TEMPLATE)
    port = free_port()
    cmd = [sys.executable, "-m", "rwttt_ray.cli", "serve", str(ckpt), "--port", str(port), "--api-key", "sk-one",
           "--served-model-name", "tiny-chat", "tiny", "--max-model-len", "128", "--chat-template",
           str(tmp_path / "t.jinja"), "--seed", "7", "--log-level", "warning", "--grace-s", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            env={**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONUNBUFFERED": "1"})
    try:
        lines = wait_for(proc, "serving on", 300)
        start = next(ln for ln in lines if ln.startswith("rwttt-ray: serving 'tiny-chat'"))
        for part in ("TTT layers [0] chunk 8 lr 0.3", "dtype float32", "context 128", "eos ids [2, 0]",
                     f"chat template {tmp_path / 't.jinja'}"):
            assert part in start, start
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-one", max_retries=0)
        models = client.models.list().data
        assert [m.id for m in models] == ["tiny-chat", "tiny"] and models[0].model_extra["max_model_len"] == 128
        msgs = [{"role": "user", "content": "héllo"}]
        out = client.chat.completions.create(model="tiny", messages=msgs, max_tokens=8, temperature=0)
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(ckpt))
        assert out.usage.prompt_tokens == len(tok.encode(
            "<|im_start|>user\nhéllo<|im_end|>\n<|im_start|>assistant\n", add_special_tokens=False))
        with pytest.raises(APIStatusError) as err:
            client.completions.create(model="tiny-chat", prompt="hi", max_tokens=200)
        assert err.value.status_code == 413
        with pytest.raises(AuthenticationError):
            OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-two", max_retries=0).models.list()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rest = proc.communicate(timeout=90)[0]
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    assert proc.returncode == 0 and "rwttt-ray: stopped" in rest, rest[-2000:]
    deadline = time.time() + 30
    while time.time() < deadline and _session_processes(proc.pid):
        time.sleep(0.5)
    assert _session_processes(proc.pid) == [], "processes outlived rwttt serve"
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)


def _session_processes(sid: int) -> list[str]:
    out = subprocess.run(["ps", "-eo", "sid=,pid=,comm="], capture_output=True, text=True).stdout
    return [ln for ln in out.splitlines() if ln.split() and ln.split()[0] == str(sid)]


def test_bad_serve_flags_are_one_line():
    from tests.test_cli import rwttt

    for args, needle in ((["serve", "--max-model-len", "1"], "--max-model-len must be >= 2"),
                         (["serve", "--chat-template", "/no/such.jinja"], "chat template file"),
                         (["serve", "--generation-config", "/no/such"], "generation config"),
                         (["serve", "--max-model-len", "9999"], "over the model's context"),
                         (["serve", "--dtype", "int8"], "invalid choice")):
        res = rwttt(*args)
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert res.returncode != 0 and len(lines) == 1 and needle in lines[0], res.stderr
