"""The two-tenant benchmark: one tenant floods, one stays steady. Under vtc+tenant_lru, on a real
cluster, the steady tenant's share of tokens while both are backlogged stays within 10% of its
weight share, and the sampled owners' tokens equal the sequential reference. No timings asserted."""
import subprocess
import sys

import pytest

from rwttt_ray.bench.tenants import (FLOOD, STEADY, OwnerRun, backlogged_window, drive, make_tenant_trace,
                                     summarize, tenant_limits, token_mismatches)


def test_window_ends_when_a_tenant_can_no_longer_use_its_share():
    trace = make_tenant_trace(num_slots=2, prompt_len=4, gen_len=2, flood_factor=1)   # shares: 1 slot each
    runs = [OwnerRun("f0", FLOOD, (1,), 0.0, [1, 2], [1.0, 2.0]), OwnerRun("f1", FLOOD, (1,), 0.0, [1, 2], [3.0, 4.0]),
            OwnerRun("s0", STEADY, (1,), 0.1, [1, 2], [1.0, 5.0]), OwnerRun("s1", STEADY, (1,), 5.1, [1, 2], [6.0, 7.0])]
    assert backlogged_window(runs, trace) == (0.1, 4.0)     # flood's last owner finished at 4.0
    res = summarize(runs, trace)
    assert res["tenants"][FLOOD]["tokens"] == 4 and res["tenants"][STEADY]["tokens"] == 1   # in [0.1, 4.0]
    assert res["tenants"][STEADY]["share"] == 0.2 and not res["fair"]


@pytest.mark.parametrize("args, needle", [(["--tenants"], "needs --backend ray"),
                                          (["--backend", "ray", "--tenants", "--tenant-weights", "0,1"],
                                           "two positive numbers")])
def test_bad_tenant_flags_are_one_line_nonzero(args, needle):
    res = subprocess.run([sys.executable, "-m", "rwttt_ray.cli", "bench", *args], capture_output=True, text=True,
                         timeout=120)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 2 and len(lines) == 1 and needle in lines[0], res.stderr


@pytest.mark.ray
def test_vtc_keeps_the_steady_tenant_at_its_weight_share(make_cluster, reference, config):
    trace = make_tenant_trace(num_slots=4, prompt_len=8, gen_len=16, seed=3, flood_factor=4)
    cluster = make_cluster(max_states_per_worker=4, fairness_policy="vtc", eviction_policy="tenant_lru",
                           quantum_steps=8, rounds_per_call=16, tenant_limits=tenant_limits(trace))
    runs = drive(cluster, trace, timeout_s=120)
    assert len(runs) == len(trace.flood) + len(trace.steady)
    assert all(len(r.tokens) == trace.gen_len for r in runs)
    res = summarize(runs, trace)
    steady = res["tenants"][STEADY]
    assert steady["weight_share"] == 0.5 and steady["tokens"] > 0
    assert abs(steady["share"] - steady["weight_share"]) <= 0.1 * steady["weight_share"], res
    assert res["fair"]
    assert token_mismatches(runs, trace.gen_len, lambda req: reference.run(req).tokens, per_tenant=3) == []
