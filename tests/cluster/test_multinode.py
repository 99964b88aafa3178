"""Multi-node on one machine: a head and two worker nodes on loopback, a worker actor on each; a
whole node is removed mid-generation and every owner still ends with its reference output.

The scenario runs in a subprocess (tests/cluster/multinode_scenario.py): one process can be
connected to only one Ray cluster, and this session's Ray (tests/conftest.py) must stay as it is.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ttt.oracle import make_requests

pytestmark = pytest.mark.ray

ROOT = Path(__file__).resolve().parents[2]
SEED = 41


def run_scenario(timeout_s: float = 300.0) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, str(ROOT / "tests/cluster/multinode_scenario.py"), str(SEED)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s)
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 0 and lines, f"scenario failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    return json.loads(lines[-1])


def test_node_removed_mid_generation_loses_no_request(reference):
    result = run_scenario()
    before, victim, outputs = result["before"], result["victim"], result["outputs"]
    assert set(before.values()) == set(result["workers"])          # owners ran on both nodes
    for req in make_requests(4, prompt_lens=[6, 11], gen_lens=[150], seed=SEED):
        want, got = reference.run(req), outputs[req.owner_id]
        assert got["error"] is None, got["error"]
        assert got["worker_id"] != victim                           # replayed on the surviving node
        assert got["tokens"] == want.tokens, f"{req.owner_id}: tokens differ"
        assert got["version"] == want.num_writes
