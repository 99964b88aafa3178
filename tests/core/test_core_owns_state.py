"""SchedulerCore is the only writer of owner, worker and ledger state: no module under actors/
assigns into it, deletes from it, or calls anything on it but a known reader (checked on the
source with `ast`; the checker itself is tested on snippets, so it can fail)."""
from __future__ import annotations

import ast
from dataclasses import fields
from pathlib import Path

import pytest

from rwttt_ray.core.scheduler import OwnerRecord, WorkerRecord

ACTORS = Path(__file__).resolve().parents[2] / "actors"
# calls allowed on core state (owners, workers, ledger, records, or what a core method returned)
READERS = {"get", "items", "keys", "values", "committed", "pending", "snapshot", "owners", "writes_of",
           "to_dict", "copy", "index", "count", "expires_at", "__contains__"}
FIELDS = {f.name for cls in (OwnerRecord, WorkerRecord) for f in fields(cls)}
RECORD_PARAMS = {"rec", "record"}    # a parameter so named is taken for a core record
NOT_SCHEDULER_CORE = {"worker.py"}   # its `core` is the WorkerCore the worker actor owns


class _Checker(ast.NodeVisitor):
    """Per function (flow-insensitive): names bound from the core or from its state are tainted;
    writes through them, and calls of non-reader methods on its state, are violations."""

    def __init__(self, where: str) -> None:
        self.where, self.violations = where, []
        self.core: set[str] = {"core"}        # names that are the core
        self.state: set[str] = set()          # names bound to (part of) its state
        self.params: set[str] = set()         # the function's parameters (but self / cls)

    # -- what an expression is ---------------------------------------------------------------
    def kind(self, node: ast.AST) -> str | None:
        """'core', 'state' or None for an expression."""
        if isinstance(node, ast.Name):
            return "core" if node.id in self.core else "state" if node.id in self.state else None
        if isinstance(node, ast.Attribute):
            if node.attr == "core":
                return "core"
            return "state" if self.kind(node.value) else None
        if isinstance(node, ast.Subscript):
            return "state" if self.kind(node.value) else None
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Attribute) and self.kind(node.func.value):
                return "state"      # a core method's result, or a reader's (a record, a list of them)
            return None
        if isinstance(node, ast.NamedExpr):
            return self.kind(node.value)
        if isinstance(node, (ast.BoolOp,)):
            return next((k for v in node.values if (k := self.kind(v))), None)
        if isinstance(node, ast.IfExp):
            return self.kind(node.body) or self.kind(node.orelse)
        return None

    def bind(self, target: ast.AST, value: ast.AST | None, kind: str | None = None) -> None:
        kind = kind if value is None else self.kind(value)
        if isinstance(target, (ast.Tuple, ast.List)):
            if isinstance(value, (ast.Tuple, ast.List)) and len(value.elts) == len(target.elts):
                for t, v in zip(target.elts, value.elts):
                    self.bind(t, v)
            else:
                for t in target.elts:
                    self.bind(t, None, "state" if kind else None)
        elif isinstance(target, ast.Starred):
            self.bind(target.value, None, kind and "state")
        elif isinstance(target, ast.Name) and kind:
            (self.core if kind == "core" else self.state).add(target.id)

    # -- collecting names first, then checking -----------------------------------------------
    def collect(self, body: ast.AST) -> None:
        if isinstance(body, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            a = body.args
            for arg in (*a.posonlyargs, *a.args, *a.kwonlyargs):
                note = ast.unparse(arg.annotation) if arg.annotation is not None else ""
                if arg.arg in RECORD_PARAMS or "OwnerRecord" in note or "WorkerRecord" in note:
                    self.state.add(arg.arg)
                if arg.arg not in ("self", "cls"):
                    self.params.add(arg.arg)
        for _ in range(4):       # a fixed point: aliases of aliases
            for node in ast.walk(body):
                if isinstance(node, ast.Assign):
                    for t in node.targets:
                        self.bind(t, node.value)
                elif isinstance(node, (ast.AnnAssign, ast.AugAssign)) and node.value is not None:
                    self.bind(node.target, node.value)
                elif isinstance(node, ast.NamedExpr):
                    self.bind(node.target, node.value)
                elif isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension)):
                    self.bind(node.target, None, "state" if self.kind(node.iter) else None)
                elif isinstance(node, (ast.With, ast.AsyncWith)):
                    for item in node.items:
                        if item.optional_vars is not None:
                            self.bind(item.optional_vars, item.context_expr)

    def flag(self, node: ast.AST, what: str) -> None:
        self.violations.append(f"{self.where}:{node.lineno}: {what}: {ast.unparse(node)[:90]}")

    def written(self, target: ast.AST, node: ast.AST, verb: str) -> None:
        if isinstance(target, (ast.Tuple, ast.List)):
            for t in target.elts:
                self.written(t, node, verb)
        elif isinstance(target, ast.Starred):
            self.written(target.value, node, verb)
        elif isinstance(target, (ast.Attribute, ast.Subscript)) and self.kind(target.value):
            self.flag(node, f"{verb} core state")
        elif isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) \
                and target.value.id in self.params and target.attr in FIELDS:
            self.flag(node, f"{verb} a record field of a parameter")

    def check(self, body: ast.AST) -> None:
        for node in ast.walk(body):
            if isinstance(node, ast.Assign):
                for t in node.targets:
                    self.written(t, node, "assigns into")
            elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
                self.written(node.target, node, "assigns into")
            elif isinstance(node, ast.Delete):
                for t in node.targets:
                    self.written(t, node, "deletes from")
            elif isinstance(node, ast.Call):
                f = node.func
                if isinstance(f, ast.Attribute) and self.kind(f.value) == "state" and f.attr not in READERS:
                    self.flag(node, f"calls {f.attr}() on core state")
                elif isinstance(f, ast.Name) and f.id in ("setattr", "delattr") and node.args \
                        and self.kind(node.args[0]):
                    self.flag(node, f"{f.id} on core state")


def violations(source: str, where: str = "<src>") -> list[str]:
    tree = ast.parse(source)
    found = []
    scopes = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))]
    module = ast.Module([n for n in tree.body if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                                    ast.ClassDef))], [])
    for scope in [module, *scopes]:
        c = _Checker(where)
        c.collect(scope)
        c.check(scope)
        found += c.violations
    return sorted(set(found))


@pytest.mark.parametrize("path", sorted(p for p in ACTORS.glob("*.py") if p.name not in NOT_SCHEDULER_CORE),
                         ids=lambda p: p.name)
def test_no_actor_writes_core_state(path):
    found = violations(path.read_text(), f"actors/{path.name}")
    assert not found, "write through SchedulerCore's methods instead:\n" + "\n".join(found)


BAD = {
    "attribute of a record": "def f(self, o):\n    rec = self.core.owners[o]\n    rec.error = 'x'\n",
    "record from get": "def f(self, o):\n    if (rec := self.core.owners.get(o)) is not None:\n        rec.resident = False\n",
    "chained": "def f(s, w):\n    s.core.workers[w].alive = False\n",
    "bare core name": "def f(core, w):\n    core.workers[w].draining = True\n",
    "alias of core": "def f(h, w):\n    core, moved = h.core, []\n    core.workers[w].draining = True\n",
    "alias of a map": "def f(s, o):\n    owners = s.core.owners\n    owners[o].error = 'refused'\n",
    "tuple target": "def f(s, o):\n    rec = s.core.owners[o]\n    rec.request, rec.tokens = 1, []\n",
    "aug assign": "def f(s, w):\n    s.core.workers[w].capacity += 1\n",
    "list filtered": "def f(s, w, o):\n    w = s.core.workers[w]\n    w.commits = [x for x in w.commits if x != o]\n",
    "ledger mutator": "def f(s, o):\n    s.core.ledger.rollback(o)\n",
    "ledger reset": "def f(self, o, v):\n    self.core.ledger.reset(o, v)\n",
    "pop": "def f(self, o):\n    rec = self.core.owners.pop(o, None)\n",
    "del": "def f(self, o):\n    del self.core.owners[o]\n",
    "loop variable": "def f(s):\n    for o, r in s.core.owners.items():\n        r.error = 'x'\n",
    "planner": "def f(s, w, o):\n    s.core.workers[w].planner.withdraw(o)\n",
    "a core method's record": "def f(s, r):\n    new = s.core.admit(r, 'w')\n    new.resident = True\n",
    "setattr": "def f(s, o):\n    setattr(s.core.owners[o], 'error', 'x')\n",
    "core attribute": "def f(s):\n    s.core.step = 3\n",
    "record parameter": "def f(self, rec, req):\n    rec.request, rec.tokens = req, []\n",
    "annotated parameter": "def f(self, r: OwnerRecord):\n    r.progress = 1\n",
    "field of a parameter": "def f(self, item, req):\n    item.stop_reason = None\n",
    "list append": "def f(s, w, o):\n    s.core.workers[w].commits.append(o)\n",
}
GOOD = {
    "reads": "def f(s, o):\n    rec = s.core.owners.get(o)\n    return rec.tokens, s.core.ledger.committed(o)\n",
    "core methods": "def f(s, o, w):\n    s.core.move(o, w)\n    s.core.fail([o], 'x', rollback=True)\n",
    "own state": "def f(self, o):\n    session = self.book.get(o)\n    session.kept = []\n    self.leases[o] = 1\n",
    "own fields on self": "def f(self):\n    self.draining = True\n    self.error = None\n",
    "a fresh dict": "def f(s):\n    out = {o: 1 for o in s.core.owners}\n    return out\n",
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_the_checker_finds_each_kind_of_write(name):
    assert violations(BAD[name]), name


@pytest.mark.parametrize("name", sorted(GOOD))
def test_the_checker_allows_reads_and_core_methods(name):
    assert violations(GOOD[name]) == [], name
