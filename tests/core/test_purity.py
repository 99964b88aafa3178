"""rwttt_ray.core and policies import the standard library only (checked in a fresh interpreter)."""
import pkgutil
import subprocess
import sys
from pathlib import Path

import policies
import rwttt_ray.core

HEAVY = ("torch", "ray", "redis", "numpy", "msgpack", "transformers")


def module_names() -> list[str]:
    names = []
    for pkg in (rwttt_ray.core, policies):
        names += [f"{pkg.__name__}.{m.name}" for m in pkgutil.iter_modules(pkg.__path__)]
    return names


def test_core_and_policies_import_only_stdlib():
    names = module_names()
    assert "rwttt_ray.core.ledger" in names and "policies.grouping" in names
    code = (f"import importlib, sys\nfor n in {names!r}: importlib.import_module(n)\n"
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"core/policies pulled in: {out.stdout.strip()}"
