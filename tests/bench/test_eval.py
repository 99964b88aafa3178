"""`rwttt eval`: the quick run writes its report and passes every gate; each gate fails on a
deliberately broken component of the serving loop; bad flags and impossible settings end in one line, non-zero."""
import contextlib
import io
import json
import subprocess
import sys

import pytest
import torch

from rwttt_ray.bench.eval_faults import FAULTS, run_fault
from rwttt_ray.bench.eval_gates import quality_section, ruler_section
from rwttt_ray.bench.eval_modes import Hooks, check_trace
from rwttt_ray.bench.eval_options import EvalOptions, check_memory, state_bytes_per_owner
from rwttt_ray.bench.traces import make_trace
from rwttt_ray.cli import main
from rwttt_ray.core.ledger import VersionLedger
from rwttt_ray.core.planner import BatchPlanner
from rwttt_ray.core.types import PendingStep
from rwttt_ray.ttt.baselines import NaiveSharedRunner
from rwttt_ray.ttt.worker_core import WorkerCore

PNG = b"\x89PNG\r\n\x1a\n"


# -- the quick run ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out, threads = tmp_path_factory.mktemp("results"), torch.get_num_threads()
    torch.set_num_threads(1)
    stdout = io.StringIO()
    try:
        with contextlib.redirect_stdout(stdout):
            code = main(["eval", "--quick", "--out", str(out)])
    finally:
        torch.set_num_threads(threads)
    return code, out, json.loads((out / "eval.json").read_text()), stdout.getvalue()


def test_quick_run_passes_every_gate(quick):
    code, _, doc, stdout = quick
    assert code == 0
    assert doc["gates"]["passed"] and all(r["passed"] for r in doc["gates"]["rows"])
    checks = [r["check"] for r in doc["gates"]["rows"]]
    assert checks == ["Owner/version contract", "Token and logit match vs sequential", "NLL/PPL gate",
                      "Relative-drift gate", "State-contract stress", "Task behaviour (RULER-style)"]
    assert doc["faults"]["caught"] == "5/5" and set(doc["faults"]["faults"]) == set(FAULTS)
    assert doc["quality"]["top5_min"] == 1.0 and doc["modes_gates"]["naive_diverges"]
    assert all(v["diff"] == 0 for v in doc["ruler"]["tasks"].values()) and len(doc["ruler"]["tasks"]) == 11
    assert "all gates PASSED" in stdout and "rwttt_inproc" in stdout and "sweep tok/s" in stdout


def test_quick_report_structure(quick):
    _, out, doc, _ = quick
    assert set(doc) >= {"config", "options", "modes", "ratios", "memory_budget", "modes_gates", "traces", "sweep",
                        "quality", "faults", "ruler", "gates", "plots"}
    assert set(doc["modes"]) == {"sequential", "replicas", "naive_shared", "static_batch1", "static_ceiling",
                                 "rwttt_inproc"}
    assert set(doc["memory_budget"]) >= {"replicas", "rule", "budget_mib", "replica_mib", "cores"}
    assert doc["sweep"]["owners"] == [1, 2, 4, 8]
    for rows in doc["sweep"]["modes"].values():
        assert [r["owners"] for r in rows] == [1, 2, 4, 8]
        assert all({"tok_per_s", "ttft_p50_ms", "tpot_p50_ms", "tpot_p99_ms", "peak_rss_mib"} <= set(r) for r in rows)
    assert set(doc["traces"]) == {"uniform", "bursty", "all_update"}
    assert len(doc["plots"]) == 3
    for name in doc["plots"]:
        assert (out / name).read_bytes()[:8] == PNG
    report = (out / "report.md").read_text()
    assert all(f"]({name})" in report for name in doc["plots"])
    assert "| check | scope | result | pass |" in report and "## RULER-style tasks" in report


# -- each gate fails on a broken loop --------------------------------------------------------------
def _opts(**kw):
    base = dict(out=None, quick=True, trace="uniform", traces=("uniform",), owners=3, sweep_owners=(1,),
                prompt_len=12, gen_len=10, max_group_size=64, wait_budget_steps=0, replicas=None, repeat=1, seed=0,
                backends=(), ruler_tasks=("niah_single_1", "vt"), ruler_examples=1, ruler_context=768,
                ruler_gen_len=12, quality_configs=("base",), quality_tokens=48)
    return EvalOptions(**{**base, **kw})


class FrozenVersionLedger(VersionLedger):
    """Broken on purpose: a committed WRITE never advances its owner's version."""

    def commit(self, owner_id, candidate_version):
        self._pending.pop(owner_id, None)
        return candidate_version

    def commit_group(self, group):
        for owner_id in group.owner_ids:
            self._pending.pop(owner_id, None)


class StaleAcceptingLedger(VersionLedger):
    """Broken on purpose: begins a WRITE whatever version the step expected."""

    def begin_write(self, owner_id, expected_version):
        return super().begin_write(owner_id, self.committed(owner_id))


class NoRollbackLedger(VersionLedger):
    """Broken on purpose: rollbacks keep the dirty candidate."""

    def rollback(self, owner_id):
        pass

    def rollback_group(self, group):
        pass


class NoDistinctPlanner(BatchPlanner):
    """Broken on purpose: the owner-distinct check removed (a second pending step is kept)."""

    def submit(self, tag, ready_step, steps_to_write=None):
        key = tag.owner_id if tag.owner_id not in self._pending else f"{tag.owner_id}#{self._num_submitted}"
        self._pending[key] = PendingStep(tag, ready_step, self._num_submitted, steps_to_write)
        self._num_submitted += 1


class UnfencedWorker(WorkerCore):
    """Broken on purpose: obeys a plan of any epoch."""

    def run_phase(self, plan):
        self.epoch = min(self.epoch, plan.epoch)
        return super().run_phase(plan)


def _trace_gates(model, hooks):
    trace = make_trace("bursty", 3, 12, 10, model.settings.chunk)
    return check_trace(model, trace, _opts(), hooks)["gates"]


def test_real_loop_passes_the_trace_gates(model_c8):
    g = _trace_gates(model_c8, Hooks())
    assert g["passed"] and g["contract_held"] and g["token_match"] == "3/3" and g["writes_audited"] > 0, \
        f"{g}"                           # in full: token_mismatches says how a failure failed


def test_token_and_logit_match_fails_on_naive_batching(model_c8):
    """Greedy tokens of the random model often survive the corruption; its logits do not."""
    g = _trace_gates(model_c8, Hooks(runner_cls=NaiveSharedRunner))
    assert not g["passed"] and g["max_logit_diff"] > g["logit_tolerance"]


def test_contract_audit_fails_on_a_ledger_that_loses_versions(model_c8):
    g = _trace_gates(model_c8, Hooks(ledger_cls=FrozenVersionLedger))
    assert not g["passed"] and g["contract_held"] is False and "version" in g["error"]


def test_nll_and_drift_gates_fail_on_naive_batching(model_c8):
    q = quality_section(model_c8, _opts(), Hooks(runner_cls=NaiveSharedRunner))
    cfg = q["configs"]["base"]
    assert not q["passed"] and not cfg["nll"]["passed"] and not cfg["drift"]["passed"] and q["top5_min"] < 1.0


def test_ruler_identity_fails_on_naive_batching(model_c8):
    ok = ruler_section(model_c8, _opts())
    assert ok["passed"] and ok["predictions_identical"] == "2/2"
    bad = ruler_section(model_c8, _opts(), Hooks(runner_cls=NaiveSharedRunner))
    assert not bad["passed"] and bad["predictions_identical"] != "2/2"


@pytest.mark.parametrize("fault,hooks", [
    ("stale_version", Hooks(ledger_cls=StaleAcceptingLedger)),
    ("duplicate_owner", Hooks(planner_cls=NoDistinctPlanner)),
    ("failed_write", Hooks(ledger_cls=NoRollbackLedger)),
    ("lost_worker", Hooks(ledger_cls=NoRollbackLedger)),
    ("stale_scheduler", Hooks(worker_cls=UnfencedWorker)),
])
def test_each_injected_fault_is_caught_and_fails_when_its_guard_is_broken(model_c8, fault, hooks):
    assert run_fault(fault, model_c8)["caught"]
    assert not run_fault(fault, model_c8, hooks)["caught"]


# -- bad flags and impossible settings ---------------------------------------------------------------
@pytest.mark.parametrize("args,needle", [
    (["--owners", "0"], "--owners must be >= 1"),
    (["--ttt-chunk", "0"], "--ttt-chunk must be >= 1"),
    (["--sweep-owners", "1,0,4"], "--sweep-owners must be >= 1"),
    (["--sweep-owners", "1,x"], "integer"),
    (["--traces", "uniform,nope"], "unknown 'nope'"),
    (["--backends", "grpc"], "unknown 'grpc'"),
    (["--quality-configs", "huge"], "unknown 'huge'"),
    (["--trace", "nope"], "invalid choice"),
    (["--prompt-len", "5000"], "context limit"),
    (["--ruler-context", "100"], "too small"),
    (["--ruler-tasks", "qa_squad"], "unknown RULER task"),
    (["--owners", "10000000"], "owners need"),
    (["--wait-budget-steps", "-1"], "wait budget must be >= 0"),
    (["--model", "/no/such/dir"], "does not exist"),
])
def test_bad_input_is_one_line_nonzero(capsys, tmp_path, args, needle):
    try:
        code = main(["eval", "--quick", "--out", str(tmp_path), *args])
    except SystemExit as exc:   # argparse's errors exit from inside the parser
        code = exc.code
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert code != 0 and len(err) == 1, err
    assert needle in err[0] and "Traceback" not in err[0]
    assert not (tmp_path / "eval.json").exists()


def test_bad_flag_from_the_shell_has_no_traceback():
    res = subprocess.run([sys.executable, "-m", "rwttt_ray.cli", "eval", "--owners", "0"], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 2 and res.stderr.strip().count("\n") == 0 and "Traceback" not in res.stderr


def test_memory_check_counts_the_most_owners_alive(model_c8):
    each = state_bytes_per_owner(model_c8)
    opts = _opts(owners=8, sweep_owners=(1, 64))
    check_memory(model_c8, opts, available=100 * 64 * each)
    with pytest.raises(ValueError, match="64 owners need"):
        check_memory(model_c8, opts, available=64 * each)
