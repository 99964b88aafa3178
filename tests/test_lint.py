"""Lint and type checks in CI: `ruff check .` and `mypy` (rwttt_ray/core, policies), configured in
pyproject.toml, run with this interpreter's ruff and mypy (`make lint` runs the same); a finding
fails the test with the tools' own report."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_tool(*args: str) -> subprocess.CompletedProcess:
    """`python -m TOOL ARGS...` in the repository root, its output captured."""
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("command", [("ruff", "check", "."), ("mypy",)], ids=["ruff", "mypy"])
def test_clean(command: tuple[str, ...]) -> None:
    res = run_tool(*command)
    if f"No module named {command[0]}" in res.stderr:
        pytest.fail(f"{command[0]} is missing: install the `test` extras (make install)\n{res.stderr}", pytrace=False)
    if res.returncode != 0:
        pytest.fail(f"`{' '.join(command)}` found problems (exit {res.returncode}):\n{res.stdout}{res.stderr}",
                    pytrace=False)
