"""A multi-node scenario, run as a script in its own process (pytest's session Ray stays apart).

It starts a Ray cluster of a head and two worker nodes on loopback (ray.cluster_utils.Cluster,
each node with its own custom resource), pins the scheduler to the head and one worker actor to
each worker node, runs owners on both, removes node B mid-generation, waits for every owner and
prints one JSON line: {"before": owner -> worker, "victim": worker, "outputs": owner -> result}.
Usage: python tests/cluster/multinode_scenario.py SEED
"""
from __future__ import annotations

import json
import sys
import time

import ray
from ray.cluster_utils import Cluster

from actors.cluster import RwtttCluster, init_ray
from rwttt_ray.config import RwtttConfig
from tests.ttt.oracle import make_requests

NODE_ARGS = {"num_cpus": 1, "object_store_memory": 100 * 1024 * 1024}


def wait_for_progress(cluster: RwtttCluster, owner_id: str, tokens: int = 8, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        res = ray.get(cluster.scheduler.poll.remote(owner_id, 0))
        if res["finished"]:
            raise RuntimeError(f"{owner_id} finished before node B was removed")
        if len(res["tokens"]) >= tokens:
            return
        time.sleep(0.02)
    raise RuntimeError(f"{owner_id} made no progress")


def run(seed: int) -> dict:
    nodes = Cluster(initialize_head=True, head_node_args=dict(NODE_ARGS, num_cpus=0, resources={"head": 1}))
    nodes.add_node(**NODE_ARGS, resources={"node_a": 1})
    node_b = nodes.add_node(**NODE_ARGS, resources={"node_b": 1})
    nodes.wait_for_nodes()
    init_ray(address=nodes.address)
    cluster = RwtttCluster(config=RwtttConfig.of(ttt_chunk=8, workers=2, rounds_per_call=4, threads_per_worker=1,
                                                 worker_resources=[{"node_a": 1}, {"node_b": 1}],
                                                 scheduler_resources={"head": 1}))
    try:
        reqs = make_requests(4, prompt_lens=[6, 11], gen_lens=[150], seed=seed)
        ids = cluster.submit(reqs)
        before = {o: ray.get(cluster.scheduler.poll.remote(o, 0))["worker_id"] for o in ids}
        victim = cluster.worker_names[1]                      # the worker on node B
        wait_for_progress(cluster, next(o for o in ids if before[o] == victim))
        nodes.remove_node(node_b)
        out = cluster.wait(ids, timeout_s=180)
        outputs = {o: {k: r[k] for k in ("tokens", "version", "worker_id", "error")} for o, r in out.items()}
        return {"before": before, "victim": victim, "workers": cluster.worker_names, "outputs": outputs}
    finally:
        cluster.shutdown()
        ray.shutdown()
        nodes.shutdown()


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 41)), flush=True)
