"""Chaos: under 16 concurrent greedy streams, a real SIGKILL of one worker, of the scheduler, of
`redis-server` (restarted after 3 s) and of an ingress replica. For each: no stream hangs (every
one ends within a bound), every stream that completes has the sequential reference's tokens,
and the service answers new requests afterwards without a redeploy. An ingress replica's cut
requests are released by their leases."""
import concurrent.futures as cf
import functools
import json
import os
import signal
import threading
import time

import httpx
import pytest

from actors.redis_server import EmbeddedRedis
from rwttt_ray.core.request import Request
from rwttt_ray.ttt.tokenizer import ByteTokenizer
from tests.http.conftest import KEYS, stop_service

pytestmark = pytest.mark.ray
TOK = ByteTokenizer()
A = {"Authorization": "Bearer sk-alpha"}
NAME, STREAMS, TOKENS, BOUND_S = "rwttt-chaos", 16, 40, 150


@pytest.fixture(scope="module")
def chaos(server):
    """Its own app (route /chaos), two workers and its own redis-server, so the kills hurt nothing else."""
    from ray import serve

    from rwttt_ray.app import build_app

    redis = EmbeddedRedis()
    args = {"config": {"model": {"ttt_chunk": 8}, "cluster": {"redis_url": redis.url, "workers": 2}},
            "api_keys": KEYS, "service_name": NAME}
    serve.run(build_app(args), name=NAME, route_prefix="/chaos")
    yield server + "/chaos", redis
    serve.delete(NAME)
    stop_service(NAME)
    redis.stop()


def scheduler():
    import ray

    return ray.get(ray.get_actor(NAME).scheduler.remote())


def stats() -> dict:
    import ray

    return ray.get(scheduler().stats.remote(), timeout=30)


def stream(base: str, prompt: str, seen: list, tokens: int) -> list[int]:
    """One streamed greedy completion; its token ids (an error event or a cut connection raises)."""
    body = {"model": "rwttt-tiny", "prompt": prompt, "max_tokens": tokens, "temperature": 0, "stream": True,
            "return_token_ids": True, "ignore_eos": True}
    ids: list[int] = []
    with httpx.stream("POST", f"{base}/v1/completions", headers=A, json=body, timeout=BOUND_S) as res:
        assert res.status_code == 200, res.read()
        for line in res.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                raise RuntimeError(chunk["error"]["message"])
            ids += chunk["choices"][0].get("token_ids") or []
            seen.append(1)
    return ids


def storm(base: str, reference, kill, tag: str, tokens: int = TOKENS) -> tuple[int, list]:
    """16 streams; `kill()` once a sixteenth of their tokens are out. Every stream ends within the
    bound; those that complete equal the reference. Returns (completed, errors)."""
    prompts = [f"stream {i} says " for i in range(STREAMS)]         # the same in every storm
    seen: list = []
    with cf.ThreadPoolExecutor(STREAMS) as pool:
        futures = [pool.submit(stream, base, p, seen, tokens) for p in prompts]
        deadline = time.monotonic() + 60
        while len(seen) < STREAMS * tokens // 16 and time.monotonic() < deadline and not all(f.done() for f in futures):
            time.sleep(0.02)
        kill()
        done, hung = cf.wait(futures, timeout=BOUND_S)
        assert not hung, f"{len(hung)} streams hung after the {tag} kill"
    completed, errors = 0, []
    for p, f in zip(prompts, futures):
        if f.exception() is not None:
            errors.append(repr(f.exception()))
            continue
        assert f.result() == expected(reference, p, tokens), (tag, p)
        completed += 1
    return completed, errors


@functools.lru_cache(maxsize=None)
def _expected(reference, prompt: str, tokens: int) -> tuple[int, ...]:
    return tuple(reference.run(Request("r", tuple(TOK.encode(prompt)), tokens)).tokens)


def expected(reference, prompt: str, tokens: int) -> list[int]:
    """The sequential reference's tokens (computed once per prompt and length)."""
    return list(_expected(reference, prompt, tokens))


def answers_again(base: str, within_s: float = 30.0) -> None:
    """/health turns 200 and a new completion is served, without a redeploy."""
    deadline = time.monotonic() + within_s
    while (state := health(base)) != 200:
        assert time.monotonic() < deadline, state
        time.sleep(0.3)
    body = {"model": "rwttt-tiny", "prompt": "after", "max_tokens": 4, "temperature": 0}
    res = httpx.post(f"{base}/v1/completions", headers=A, json=body, timeout=60)
    assert res.status_code == 200, res.text


def health(base: str) -> int | str:
    """/health's status, or why it did not answer (a replica restarting)."""
    try:
        return httpx.get(f"{base}/health", timeout=5).status_code
    except httpx.HTTPError as exc:
        return repr(exc)


def kill_pid(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


def session_turns(base: str, sid: str, n: int) -> list[int]:
    """`n` turns on the session; the version after each."""
    versions = []
    for i in range(n):
        body = {"model": "rwttt-tiny", "prompt": f"turn {i} of {sid[-6:]} ", "max_tokens": 10, "temperature": 0,
                "session_id": sid, "ignore_eos": True}
        res = httpx.post(f"{base}/v1/completions", headers=A, json=body, timeout=60)
        assert res.status_code == 200, res.text
        versions.append(httpx.get(f"{base}/v1/sessions/{sid}", headers=A, timeout=30).json()["version"])
    return versions


def test_a_worker_killed_mid_stream(chaos, http_reference):
    import ray

    base, _ = chaos
    sids = [httpx.post(f"{base}/v1/sessions", headers=A, timeout=30).json()["id"] for _ in range(3)]
    kept = {sid: session_turns(base, sid, 2) for sid in sids}       # idle sessions on both workers
    name = stats()["workers"][0]
    pid = ray.get(ray.get_actor(name).info.remote()).pid
    completed, errors = storm(base, http_reference, lambda: kill_pid(pid), "worker")
    assert completed == STREAMS, errors          # replayed from token logs: a pause, not an error
    answers_again(base)
    assert len(stats()["workers"]) == 2          # capacity restored by a new worker
    for sid, versions in kept.items():           # kept states on the dead worker are gone: a clean 404
        back = httpx.post(f"{base}/v1/sessions/{sid}/rollback", headers=A, json={"version": versions[0]}, timeout=30)
        assert back.status_code in (200, 404), back.text
        session_turns(base, sid, 1)              # and every session takes its next turn


def test_the_scheduler_killed_mid_stream(chaos, http_reference):
    base, _ = chaos
    before = stats()
    completed, errors = storm(base, http_reference, lambda: kill_pid(before["pid"]), "scheduler")
    assert completed == STREAMS, errors          # the new scheduler rebuilt from Redis and the workers
    after = stats()
    assert after["epoch"] > before["epoch"] and after["pid"] != before["pid"]
    answers_again(base)


def test_redis_killed_and_restarted_mid_stream(chaos, http_reference):
    base, redis = chaos
    sid = httpx.post(f"{base}/v1/sessions", headers=A, timeout=30).json()["id"]
    versions = session_turns(base, sid, 2)

    def outage() -> None:
        kill_pid(redis.pid)
        redis.stop()
        threading.Timer(3.0, redis.start).start()
    completed, errors = storm(base, http_reference, outage, "redis")
    assert completed == STREAMS, errors          # commits waited, entries were re-registered
    answers_again(base)
    view = httpx.get(f"{base}/v1/sessions/{sid}", headers=A, timeout=30).json()    # the session survived
    assert view["version"] == versions[-1] and view["kept_versions"] == sorted(set(versions)), view
    back = httpx.post(f"{base}/v1/sessions/{sid}/rollback", headers=A, json={"version": versions[0]}, timeout=30)
    assert back.status_code == 200, back.text
    session_turns(base, sid, 1)


def test_an_ingress_replica_killed_mid_stream(chaos, http_reference):
    import ray

    base, _ = chaos
    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
             if a["namespace"] == "serve" and NAME in a["name"] and "Ingress" in a["name"]]
    assert names, ray.util.list_named_actors(all_namespaces=True)
    pids = [ray.get(ray.get_actor(n, namespace="serve").__ray_call__.remote(lambda self: os.getpid())) for n in names]
    before = stats()["owners"]                    # idle sessions of earlier tests stay
    completed, errors = storm(base, http_reference, lambda: [kill_pid(p) for p in pids], "ingress", tokens=128)
    assert errors, "the streams of a killed replica are cut"      # (long ones: not all sent before the kill)
    deadline = time.monotonic() + 30       # their owners are cancelled when their lease lapses
    while stats()["owners"] > before:
        assert time.monotonic() < deadline, f"{stats()['owners'] - before} owners left behind by the dead replica"
        time.sleep(0.5)
    answers_again(base, within_s=60)


def test_a_turn_nobody_reads_is_cancelled_by_its_lease(chaos):
    import ray

    sched = scheduler()
    started = ray.get(sched.complete.remote("alpha", None, list(TOK.encode("orphan")), 400, lease_s=1.0))
    time.sleep(3.5)
    with pytest.raises(ray.exceptions.RayTaskError, match="not found"):    # released with its lease
        ray.get(sched.next_tokens.remote("alpha", started["owner_id"], 0, 1.0))


def test_a_manager_of_another_config_replaces_this_one(chaos):
    """Last (it stops this service): get_manager never silently reuses a manager started with
    other arguments: it shuts that one down (its cluster too), kills it and starts a new one."""
    import ray
    from ray.exceptions import RayActorError

    from actors.service import config_fingerprint, get_manager
    from rwttt_ray.config import RwtttConfig

    _, redis = chaos
    first, old_scheduler = ray.get_actor(NAME), scheduler()
    other = RwtttConfig.of(ttt_chunk=16, redis_url=redis.url)
    second = get_manager(NAME, other)
    assert second._actor_id != first._actor_id
    assert ray.get(second.fingerprint.remote()) == config_fingerprint(other, f"rwttt-{NAME}")
    assert get_manager(NAME, other)._actor_id == second._actor_id     # same config: reused
    for gone in (first, old_scheduler):                 # the old manager and its cluster are stopped
        with pytest.raises(RayActorError):
            ray.get(gone.ping.remote(), timeout=30)
