"""rwttt_ray.core and policies import the standard library only."""
import subprocess
import sys

CODE = """
import sys
import rwttt_ray.core.types, rwttt_ray.core.ledger, rwttt_ray.core.planner, rwttt_ray.core.progress
import rwttt_ray.core.errors, policies.grouping
heavy = [m for m in ("torch", "ray", "redis", "numpy", "msgpack", "transformers") if m in sys.modules]
print(",".join(heavy))
"""


def test_core_and_policies_import_only_stdlib():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"core pulled in: {out.stdout.strip()}"
