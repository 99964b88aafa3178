"""The bench report's per-step profile (`rwttt bench --profile`): LocalLoop.profile()'s seconds as
seconds and fractions of the mode's wall in the JSON, and as a table section; modes without one
are left out; run_loop_mode records the loop's profile when the loop has one."""
from types import SimpleNamespace

from rwttt_ray.bench import modes
from rwttt_ray.bench.modes import ModeResult
from rwttt_ray.bench.report import PROFILE_PARTS, document, profile_of, profile_table
from rwttt_ray.bench.traces import Trace

FAKE = {"forward": 2.0, "planning": 0.5, "sampling": 0.25, "write": 0.75, "host_sync": 0.25, "idle": 0.25}


def results() -> dict[str, ModeResult]:
    seq = ModeResult("sequential", {"a": [1, 2]}, 8.0)
    rw = ModeResult("rwttt_inproc", {"a": [1, 2]}, 5.0, extra={"profile": dict(FAKE)})
    return {"sequential": seq, "rwttt_inproc": rw}


def test_the_profile_is_seconds_and_fractions_of_wall():
    prof = profile_of(results()["rwttt_inproc"])
    assert prof["seconds"] == FAKE and prof["wall_s"] == 5.0
    assert prof["fractions"] == {"forward": 0.4, "planning": 0.1, "sampling": 0.05, "write": 0.15,
                                 "host_sync": 0.05, "idle": 0.05}
    assert profile_of(results()["sequential"]) is None
    partial = profile_of(ModeResult("x", {}, 1.0, extra={"profile": {"forward": 0.5}}))
    assert partial["seconds"]["write"] == 0.0 and partial["fractions"]["forward"] == 0.5


def test_the_json_document_carries_it_per_mode():
    doc = document({}, results(), {"passed": True})
    assert doc["modes"]["rwttt_inproc"]["profile"]["fractions"]["forward"] == 0.4
    assert "profile" not in doc["modes"]["sequential"]


def test_the_table_section_lists_the_profiled_modes():
    text = profile_table(results())
    head, _, row = text.splitlines()
    assert all(part in head for part in PROFILE_PARTS)
    assert row.startswith("rwttt_inproc") and "40.0%" in row and "80.0%" in row     # forward; the sum
    assert "sequential" not in text
    assert "no mode" in profile_table({"sequential": results()["sequential"]})


class FakeLoop:
    """What run_loop_mode reads of a LocalLoop, with a profile."""

    def __init__(self, profile: bool):
        self.core = SimpleNamespace(step=3)
        self.stats = SimpleNamespace(phases=1, group_sizes=[2], writes_committed=0)
        if profile:
            self.profile = lambda: dict(FAKE)

    def run(self, requests, arrivals):
        return {}


def test_run_loop_mode_records_the_loops_profile_when_it_has_one():
    trace = Trace("t", (), ())
    assert modes.run_loop_mode("m", FakeLoop(True), trace).extra["profile"] == FAKE
    assert "profile" not in modes.run_loop_mode("m", FakeLoop(False), trace).extra
