"""Benchmark modes beyond the process: RW-TTT through the Ray actors, and through HTTP.

Each takes the RwtttConfig (the cluster, the batching knobs) and the run's options (BenchOptions
or EvalOptions: `repeat`, `step_ms`). The cluster is started (or joined with --address) and
warmed up before the clock starts; the trace's requests are submitted at once (uniform) or
spaced by their arrival steps.
"""
from __future__ import annotations

import time
from dataclasses import replace

import torch

from rwttt_ray.bench.modes import ModeResult
from rwttt_ray.bench.traces import Trace
from rwttt_ray.config import BatchingConfig, RwtttConfig
from rwttt_ray.core.request import Request


def _inproc_wall(batching: BatchingConfig, model, trace: Trace) -> float:
    """One in-process RW-TTT run right beside a backend pass: the pair's ratio is not moved by
    the machine getting faster or slower between the modes (see report.ratios)."""
    from rwttt_ray.bench import modes

    return modes.run_rwttt(model, trace, **batching.scheduling()).wall_s


def _submit_trace(cluster, trace: Trace, step_s: float) -> list[str]:
    ids, t0 = [], time.perf_counter()
    for req, step in sorted(zip(trace.requests, trace.arrival_steps), key=lambda x: x[1]):
        delay = t0 + step * step_s - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        ids += cluster.submit([req])
    return ids


def _timed_run(cluster, trace: Trace, step_s: float, tag: str) -> tuple[dict, float, float]:
    """One timed pass; then each owner's logits are fetched and the owners released."""
    import ray

    renamed = Trace(trace.name, tuple(replace(r, owner_id=f"{r.owner_id}{tag}") for r in trace.requests),
                    trace.arrival_steps)
    start = time.time()
    ids = cluster.submit(list(renamed.requests)) if not any(trace.arrival_steps) else \
        _submit_trace(cluster, renamed, step_s)
    out = cluster.wait(ids)
    wall = time.time() - start
    for o, r in out.items():
        r["logits"] = [torch.tensor(x) for x in ray.get(cluster.workers[r["worker_id"]].logits.remote(o))]
    cluster.release(ids)
    return {o.removesuffix(tag): r for o, r in out.items()}, wall, start


def run_ray(config: RwtttConfig, opts, model, trace: Trace) -> ModeResult:
    """The trace through the actors, `opts.repeat` times on one warm cluster; the median run is kept."""
    import ray

    from actors.cluster import RwtttCluster

    cluster = RwtttCluster(config=config, record_logits=True)
    try:
        cluster.run([Request("warmup", (5, 6, 7), 4)])
        runs, paired = [], []
        for i in range(max(1, opts.repeat)):
            before = cluster.stats()
            out, wall, start = _timed_run(cluster, trace, opts.step_ms / 1e3, f"#{i}")
            runs.append((wall, out, start, before, cluster.stats(), i))
            paired.append(_inproc_wall(config.batching, model, trace))
        wall, out, start, before, after, i = sorted(runs, key=lambda r: r[0])[len(runs) // 2]
        res = ModeResult("rwttt_ray", {o: r["tokens"] for o, r in out.items()}, wall)
        res.versions = {o: r["version"] for o, r in out.items()}
        res.logits = {o: r["logits"] for o, r in out.items()}
        for r in out.values():
            res.ttft_s.append(r["token_times"][0] - start)
            res.token_gaps_s.extend(b - a for a, b in zip(r["token_times"], r["token_times"][1:]))
        wstats = ray.get([w.stats.remote() for w in cluster.workers.values()])
        res.peak_rss_bytes = max(s["peak_rss_bytes"] for s in wstats)
        spills, reloads = sum(s["spills"] for s in wstats), sum(s["reloads"] for s in wstats)
        res.extra.update(spills=spills, reloads=reloads,
                         spill_ms_each=round(1e3 * sum(s["spill_s"] for s in wstats) / max(1, spills), 3),
                         reload_ms_each=round(1e3 * sum(s["reload_s"] for s in wstats) / max(1, reloads), 3))
        calls = after["calls"] - before["calls"]
        overhead = (after["call_s"] - before["call_s"]) - (after["compute_s"] - before["compute_s"])
        res.extra.update(workers=config.cluster.workers, calls=calls,
                         rounds_per_call_max=config.batching.rounds_per_call,
                         tokens_per_call=round(res.num_tokens / max(1, calls), 1),
                         ray_overhead_ms_per_call=round(1e3 * overhead / max(1, calls), 3), repeats=len(runs),
                         worker_compute_s=round(after["compute_s"] - before["compute_s"], 4),
                         all_walls_s=[round(r[0], 4) for r in runs],
                         paired_inproc_walls_s=[round(w, 4) for w in paired])
        return res
    finally:
        cluster.shutdown()


BENCH_MODEL = "rwttt-bench"          # the name the bench's HTTP app serves its model under


def backend_modes(config: RwtttConfig, opts) -> dict:
    """ray: the actors; http: the actors and the HTTP ingress (the Ray mode runs too, to compare)."""
    modes = {"rwttt_ray": lambda model, trace: run_ray(config, opts, model, trace)}
    if opts.backend == "http":
        modes["rwttt_http"] = lambda model, trace: run_http(config, opts, model, trace)
    return modes


def _stream_one(client, url: str, prompt: str, max_tokens: int, start: float) -> dict:
    import json

    times, text, ids = [], "", []
    body = {"model": BENCH_MODEL, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "return_token_ids": True, "ignore_eos": True}     # every stream its full length, as in-process
    with client.stream("POST", f"{url}/v1/completions", json=body, timeout=600) as res:
        for line in res.iter_lines():
            if line.startswith("data: {"):
                chunk = json.loads(line[6:])
                if chunk.get("choices"):
                    text += chunk["choices"][0]["text"]
                    ids += chunk["choices"][0].get("token_ids", [])
                    times += [time.time()] * max(1, len(chunk["choices"][0].get("token_ids", [])))
    return {"text": text, "ids": ids, "times": times, "ttft": times[0] - start if times else float("nan")}


def _http_pass(client, url: str, prompts: list[str], max_tokens: int) -> tuple[float, list[dict]]:
    """All streams at once, one client thread each over one keep-alive pool; (wall, outputs)."""
    import concurrent.futures as cf

    with cf.ThreadPoolExecutor(len(prompts)) as pool:
        start, cpu0 = time.time(), time.process_time()
        outs = list(pool.map(lambda p: _stream_one(client, url, p, max_tokens, start), prompts))
        wall = time.time() - start
    outs[0]["client_cpu_s"] = time.process_time() - cpu0   # the clients share this machine's cores
    return wall, outs


def run_http(config: RwtttConfig, opts, model, trace: Trace) -> ModeResult:
    """The trace through HTTP: one concurrent streaming client per stream against a local Serve app,
    `opts.repeat` passes on the warm service (connections kept alive, as real clients do); median kept."""
    import httpx
    from ray import serve

    from actors.cluster import init_ray
    from actors.local_ports import spare_ports
    from rwttt_ray.app import app_args, build_app

    init_ray(config.cluster.address)
    port = spare_ports()[0]       # reserved by this process: no other bind takes it before HAProxy's
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(app_args(config, served_model_name=[BENCH_MODEL], service_name="rwttt-bench-http")),
              name="rwttt-bench", route_prefix="/")
    url, tok = f"http://127.0.0.1:{port}", model.tokenizer
    prompts = [tok.decode(r.prompt) for r in trace.requests]
    limits = httpx.Limits(max_connections=len(prompts) + 4, max_keepalive_connections=len(prompts) + 4)
    try:
        with httpx.Client(limits=limits) as client:
            _http_pass(client, url, ["warm up"] * len(prompts), 4)   # service, model, connections: warm
            runs, paired = [], []
            for _ in range(max(1, opts.repeat)):
                runs.append(_http_pass(client, url, prompts, trace.requests[0].max_new_tokens))
                paired.append(_inproc_wall(config.batching, model, trace))
    finally:
        serve.delete("rwttt-bench")
        _stop_service("rwttt-bench-http")
    wall, outs = sorted(runs, key=lambda r: r[0])[len(runs) // 2]
    res = ModeResult("rwttt_http", {r.owner_id: o["ids"] for r, o in zip(trace.requests, outs)}, wall)
    res.ttft_s = [o["ttft"] for o in outs]
    res.token_gaps_s = [b - a for o in outs for a, b in zip(o["times"], o["times"][1:])]
    res.extra.update(clients=len(prompts), repeats=len(runs), all_walls_s=[round(r[0], 4) for r in runs],
                     paired_inproc_walls_s=[round(w, 4) for w in paired],
                     client_cpu_s=round(outs[0]["client_cpu_s"], 3),
                     note="token ids from the stream; logits stay on the workers")
    return res


def _stop_service(name: str) -> None:
    import ray

    try:
        manager = ray.get_actor(name)
        ray.get(manager.shutdown.remote())
        ray.kill(manager)
    except ValueError:
        pass
