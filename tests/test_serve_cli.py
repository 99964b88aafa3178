"""`rwttt serve` as a user starts it, vllm-style: a positional checkpoint, --api-key,
--served-model-name, --max-model-len, --chat-template, --seed, --log-level; one start-up line
says what is served; the official client works; SIGTERM stops it and everything it started.
Two servers on one host share no port, answer only their own keys and requests, and leave no
process or listening socket, also when one's drain fails (its service manager was killed)."""
import os
import signal
import subprocess
import sys
import time

import httpx
import psutil
import pytest
from openai import APIStatusError, AuthenticationError, OpenAI

from actors.local_ports import spare_ports
from tests.checkpoints import build_bpe_checkpoint

pytestmark = pytest.mark.slow
TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
ENV = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONUNBUFFERED": "1"}


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


def serve(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rwttt_ray.cli", "serve", *args, "--log-level", "warning",
                             "--grace-s", "2"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env=ENV)


def tree(pid: int) -> dict[int, tuple[float, str]]:
    """The server and every process under it (Redis too: another session, same parent): pid ->
    (start time, name); the start time tells a pid reused later apart."""
    root = psutil.Process(pid)
    out = {}
    for p in [root, *root.children(recursive=True)]:
        try:
            out[p.pid] = (p.create_time(), p.name())
        except psutil.NoSuchProcess:
            pass
    return out


def living(procs: dict[int, tuple[float, str]]) -> list[str]:
    out = []
    for pid, (started, name) in procs.items():
        try:
            p = psutil.Process(pid)
            if p.create_time() == started and p.status() != psutil.STATUS_ZOMBIE:
                out.append(f"{pid} {name}")
        except psutil.NoSuchProcess:
            pass
    return out


def listening(procs: dict[int, tuple[float, str]]) -> set[tuple[str, int, str]]:
    return {(c.laddr.ip, c.laddr.port, procs[c.pid][1]) for c in psutil.net_connections("inet")
            if c.status == psutil.CONN_LISTEN and c.pid in procs}


def stop(*servers: subprocess.Popen, timeout_s: float = 90) -> list[str]:
    """SIGTERM all (they drain side by side), then each one's output; SIGKILL a group that hangs."""
    for proc in servers:
        proc.send_signal(signal.SIGTERM)
    out = []
    for proc in servers:
        try:
            out.append(proc.communicate(timeout=timeout_s)[0])
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out.append(proc.communicate()[0] + "\n(killed: did not stop in time)")
    return out


def test_rwttt_serve_speaks_vllm_serve(tmp_path):
    ckpt = build_bpe_checkpoint(tmp_path / "tiny")
    (tmp_path / "t.jinja").write_text(TEMPLATE)
    port, port_b = spare_ports()[:2]     # reserved by this process, below the ephemeral range:
    #                                      a free_port() could be taken by the first server's own binds
    #                                      before the second server's HAProxy binds it
    proc = serve(str(ckpt), "--port", str(port), "--api-key", "sk-one", "--served-model-name", "tiny-chat", "tiny",
                 "--max-model-len", "128", "--chat-template", str(tmp_path / "t.jinja"), "--seed", "7",
                 "--metrics-key", "op-key")
    other = serve("--port", str(port_b), "--api-key", "sk-two", "--served-model-name", "other",  # built-in model
                  "--max-states-per-worker", "1", "--swap-space", "0")       # one owner per worker, no host tier
    procs: dict[int, tuple[float, str]] = {}
    try:
        try:
            lines = wait_for(proc, "serving on", 300)
            wait_for(other, "serving on", 300)
            procs, procs_b = tree(proc.pid), tree(other.pid)
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
            with pytest.raises(AuthenticationError):        # the other server's key
                OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-two", max_retries=0).models.list()
            healed = operator_and_worker_kill(port, procs)       # it heals while the next checks run
            two_servers_stay_apart(port, port_b, proc.pid, other.pid)
            a_full_server_answers_429(port_b)
            healed()
            procs = {**procs, **tree(proc.pid), **procs_b, **tree(other.pid)}
            seen = listening(procs)
            manager = next(p for p, (_, name) in procs_b.items() if name == "ray::ServiceManager")
            redis_b = {p: v for p, v in procs_b.items() if v[1] == "redis-server"}
            assert len(redis_b) == 1, procs_b
            os.kill(manager, signal.SIGKILL)              # the other's drain will fail: no manager to ask
            deadline = time.time() + 10
            while living(redis_b) and time.time() < deadline:
                time.sleep(0.1)
            assert not living(redis_b), "Redis outlived its SIGKILLed service manager"
        finally:
            rest, rest_b = stop(proc, other)
        stopped_at = time.time()
        assert proc.returncode == 0 and "rwttt-ray: stopped" in rest, rest[-2000:]
        assert "rwttt-ray: worker" in rest and "lost" in rest, rest[-2000:]       # the console heard of it
        assert "1 sessions NOT kept: the private Redis ends with this process" in rest, rest[-2000:]
        assert other.returncode == 0 and "drain skipped" in rest_b and "rwttt-ray: stopped" in rest_b, rest_b[-2000:]
        deadline = time.time() + 30
        while time.time() < deadline and (living(procs) or _session_processes(proc.pid, other.pid)):
            time.sleep(0.5)
        assert living(procs) == [] and _session_processes(proc.pid, other.pid) == [], "processes outlived rwttt serve"
        left = {(c.laddr.ip, c.laddr.port) for c in psutil.net_connections("inet")
                if c.status == psutil.CONN_LISTEN and c.pid and _started_before(c.pid, stopped_at)}
        assert not left & {(ip, p) for ip, p, _ in seen}, "a listening socket outlived rwttt serve"
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
    finally:
        for line in living(procs):                        # a failed check leaves nothing either
            os.kill(int(line.split()[0]), signal.SIGKILL)


def operator_and_worker_kill(port: int, procs: dict):
    """/metrics opens to the metrics key only; a session is open when its worker is SIGKILLed;
    returns a check that the service heals (a new worker, the session's next turn) unrestarted."""
    base, auth = f"http://127.0.0.1:{port}", {"Authorization": "Bearer sk-one"}
    assert httpx.get(f"{base}/metrics", headers=auth, timeout=30).status_code == 403
    assert httpx.get(f"{base}/metrics", headers={"Authorization": "Bearer op-key"}, timeout=30).status_code == 200
    sid = httpx.post(f"{base}/v1/sessions", headers=auth, timeout=30).json()["id"]
    turn = {"model": "tiny", "prompt": "hi", "max_tokens": 4, "session_id": sid}
    assert httpx.post(f"{base}/v1/completions", headers=auth, json=turn, timeout=60).status_code == 200
    worker = next(p for p, (_, name) in procs.items() if name.startswith("ray::WorkerActo"))
    os.kill(worker, signal.SIGKILL)

    def healed() -> None:
        deadline = time.time() + 60
        while httpx.get(f"{base}/health", timeout=30).status_code != 200 or \
                httpx.post(f"{base}/v1/completions", headers=auth, json=turn, timeout=60).status_code != 200:
            assert time.time() < deadline, httpx.get(f"{base}/health", timeout=30).text
            time.sleep(0.5)
    return healed


def two_servers_stay_apart(port: int, port_b: int, pid: int, pid_b: int) -> None:
    """Each server answers its own key only, always itself (its model names), on ports of its
    own; Serve's HAProxy and the project's Redis listen on 127.0.0.1 only. (The process trees
    are read when checked: Serve may have restarted its HAProxy since the start.)"""
    with httpx.Client(timeout=30) as http:
        for _ in range(20):
            for p, key, names, wrong in ((port, "sk-one", ["tiny-chat", "tiny"], "sk-two"),
                                         (port_b, "sk-two", ["other"], "sk-one")):
                r = http.get(f"http://127.0.0.1:{p}/v1/models", headers={"Authorization": f"Bearer {key}"})
                assert r.status_code == 200 and [m["id"] for m in r.json()["data"]] == names, r.text
                assert http.get(f"http://127.0.0.1:{p}/v1/models",
                                headers={"Authorization": f"Bearer {wrong}"}).status_code == 401
    deadline = time.time() + 15
    while True:
        mine, theirs = listening(tree(pid)), listening(tree(pid_b))
        if (("127.0.0.1", port, "haproxy") in mine and ("127.0.0.1", port_b, "haproxy") in theirs) \
                or time.time() > deadline:
            break
        time.sleep(0.5)
    assert not {p for _, p, _ in mine} & {p for _, p, _ in theirs}, (mine, theirs)
    for ip, p, name in mine | theirs:
        if name in ("haproxy", "redis-server"):
            assert ip == "127.0.0.1", (ip, p, name)
    assert ("127.0.0.1", port, "haproxy") in mine and ("127.0.0.1", port_b, "haproxy") in theirs


def a_full_server_answers_429(port: int) -> None:
    """Sessions hold their owners; once every worker holds all its slots and host tier take, a
    new owner gets 429 (OpenAI error JSON, Retry-After) and the held sessions lose nothing; a
    deleted session makes room again."""
    from openai import RateLimitError

    base, auth = f"http://127.0.0.1:{port}", {"Authorization": "Bearer sk-two"}
    client = OpenAI(base_url=f"{base}/v1", api_key="sk-two", max_retries=0)
    sessions = []
    for _ in range(6):
        sid = httpx.post(f"{base}/v1/sessions", headers=auth, timeout=30).json()["id"]
        try:
            client.completions.create(model="other", prompt="ab", max_tokens=3, extra_body={"session_id": sid})
        except RateLimitError as err:
            assert err.response.headers["retry-after"] == "1", err.response.headers
            body = err.response.json()["error"]
            assert body["type"] == "rate_limit_error" and "--swap-space" in body["message"], body
            break
        sessions.append(sid)
    else:
        raise AssertionError("six held sessions never filled a one-slot, no-host-tier server")
    assert sessions, "the first session was refused"
    with pytest.raises(RateLimitError):
        client.completions.create(model="other", prompt="ab", max_tokens=3)
    held = client.completions.create(model="other", prompt="cd", max_tokens=3, extra_body={"session_id": sessions[0]})
    assert held.choices[0].text is not None                          # a held session's next turn still runs
    assert httpx.delete(f"{base}/v1/sessions/{sessions[0]}", headers=auth, timeout=30).status_code == 200
    deadline = time.time() + 30
    while True:
        try:
            client.completions.create(model="other", prompt="ab", max_tokens=3)
            break
        except RateLimitError:
            assert time.time() < deadline, "a deleted session never made room"
            time.sleep(0.2)


def _started_before(pid: int, t: float) -> bool:
    try:
        return psutil.Process(pid).create_time() < t
    except psutil.NoSuchProcess:
        return False


def _session_processes(*sids: int) -> list[str]:
    out = subprocess.run(["ps", "-eo", "sid=,pid=,comm="], capture_output=True, text=True).stdout
    return [ln for ln in out.splitlines() if ln.split() and ln.split()[0] in map(str, sids)]


def test_bad_serve_flags_are_one_line():
    from concurrent.futures import ThreadPoolExecutor

    from tests.test_cli import rwttt

    cases = ((["serve", "--max-model-len", "1"], "--max-model-len must be >= 2"),
             (["serve", "--chat-template", "/no/such.jinja"], "chat template file"),
             (["serve", "--generation-config", "/no/such"], "generation config"),
             (["serve", "--max-model-len", "9999"], "over the model's context"),
             (["serve", "--dtype", "int8"], "invalid choice"))
    with ThreadPoolExecutor(len(cases)) as pool:        # each is its own process: run them side by side
        results = list(pool.map(lambda case: rwttt(*case[0]), cases))
    for (_, needle), res in zip(cases, results):
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert res.returncode != 0 and len(lines) == 1 and needle in lines[0], res.stderr
