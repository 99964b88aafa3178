"""The deployment files' checkers (loading, Ray's cluster schema, pip pins, Serve configs, the
app's args), pure: no Ray cluster, no network. Their tests: tests/test_deploy_files.py.
"""
from __future__ import annotations

import copy
import importlib
import json
import os
import re
import shlex
import typing
from pathlib import Path

import jsonschema
import pydantic
import yaml

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster.yaml"
SERVE = ROOT / "deploy" / "serve.yaml"
RAYSERVICE = ROOT / "deploy" / "rayservice.yaml"
REDIS = ROOT / "deploy" / "redis.yaml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
YAML_FILES = [CLUSTER, SERVE, RAYSERVICE, REDIS]


# -- loading ------------------------------------------------------------------------------
def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def load_all(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def pinned(package: str) -> str:
    """The exact version pyproject.toml pins for `package` (e.g. torch -> '2.13.0')."""
    found = re.search(rf'"{re.escape(package)}(?:\[[^\]]*\])?==([^"]+)"', (ROOT / "pyproject.toml").read_text())
    assert found, f"pyproject.toml does not pin {package} with =="
    return found.group(1)


def rayservice() -> dict:
    (doc,) = [d for d in load_all(RAYSERVICE) if d.get("kind") == "RayService"]
    return doc


def rayservice_serve_config(doc: dict | None = None) -> dict:
    text = (doc or rayservice())["spec"]["serveConfigV2"]
    assert isinstance(text, str), "serveConfigV2 must be a YAML string"
    return yaml.safe_load(text)


# -- checkers (each returns a list of problems; empty = fine) ------------------------------
def ray_schema() -> dict:
    import ray.autoscaler

    with open(os.path.join(os.path.dirname(ray.autoscaler.__file__), "ray-schema.json")) as f:
        return json.load(f)


def cluster_problems(cfg: dict) -> list[str]:
    """Schema errors, then the checks `ray up` makes after filling in its defaults."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    errors = [f"schema: {'.'.join(map(str, e.absolute_path)) or '<top>'}: {e.message}"
              for e in jsonschema.Draft7Validator(ray_schema()).iter_errors(cfg)]
    if errors:
        return errors
    try:
        validate_config(prepare_config(copy.deepcopy(cfg)))
    except Exception as exc:   # ValueError / jsonschema.ValidationError from Ray's own checks
        return [f"validate_config: {exc}"]
    return []


def pip_installs(command: str) -> list[list[str]]:
    """The argument lists of every `pip install` in a shell line (split on ; && ||)."""
    out = []
    for part in re.split(r"&&|\|\||;|\n", command):
        words = shlex.split(part)
        for i in range(len(words) - 1):
            if words[i].endswith("pip") and words[i + 1] == "install":   # pip, pip3, python -m pip
                out.append(words[i + 2:])
    return out


def install_problems(commands: list[str], torch_version: str) -> list[str]:
    """The project must be installed by ONE pip command that also pins torch (as the Makefile)."""
    installs = [args for c in commands for args in pip_installs(c)]
    project = [a for a in installs if "." in a or any(w.startswith(".[") for w in a) or "~/rwttt-ray" in a]
    if not project:
        return ["no `pip install ... -e .` of the project"]
    problems = []
    for args in project:
        if f"torch=={torch_version}" not in args:
            problems.append(f"pip install {' '.join(args)}: torch=={torch_version} not pinned in the same command")
    for args in installs:
        for word in args:
            if word.startswith("torch") and word != f"torch=={torch_version}":
                problems.append(f"pip install {' '.join(args)}: {word} differs from pyproject's torch=={torch_version}")
    return problems


def _model_in(annotation) -> type[pydantic.BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def unknown_keys(model: type[pydantic.BaseModel], data: dict, where: str = "") -> list[str]:
    """Keys of `data` (recursively, through nested models and lists of them) that `model` lacks.
    Ray Serve's schemas ignore unknown keys, so a typo would otherwise pass silently."""
    names = set(model.model_fields) | {f.alias for f in model.model_fields.values() if f.alias}
    out = []
    for key, value in data.items():
        if key not in names:
            out.append(f"{where}{key}: not a field of {model.__name__}")
            continue
        sub = _model_in(model.model_fields[key].annotation)
        if sub is None:
            continue
        if isinstance(value, dict):
            out += unknown_keys(sub, value, f"{where}{key}.")
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, dict):
                    out += unknown_keys(sub, item, f"{where}{key}[{i}].")
    return out


def deployment_names(app) -> set[str]:
    """Names of every deployment bound into a Serve Application (the ingress and its children)."""
    from ray.serve.deployment import Application

    names, todo = set(), [app]
    while todo:
        node = todo.pop()
        if isinstance(node, Application):
            bound = node._bound_deployment
            names.add(bound.name)
            todo += list(bound.init_args) + list(bound.init_kwargs.values())
        elif isinstance(node, (list, tuple)):
            todo += list(node)
        elif isinstance(node, dict):
            todo += list(node.values())
    return names


def strict_problems(model: type[pydantic.BaseModel], data: dict, where: str = "") -> list[str]:
    """`data` against `model`: its validation error alone (named by the model), else its unknown keys."""
    try:
        model.model_validate(data)
    except pydantic.ValidationError as exc:
        return [f"{model.__name__}: {exc}"]
    return unknown_keys(model, data, where)


def serve_config_problems(doc: dict) -> list[str]:
    """A whole Serve config: Ray Serve's schema, strictly, and each application against our app."""
    from ray.serve.schema import ServeDeploySchema

    problems = strict_problems(ServeDeploySchema, doc)
    if problems and problems[0].startswith("ServeDeploySchema:"):
        return problems
    for app in doc.get("applications", []):
        problems += application_problems(app)
    return problems


def application_problems(app: dict) -> list[str]:
    from ray.serve.schema import ServeApplicationSchema

    from rwttt_ray.app import APP_ARG_KEYS
    from rwttt_ray.config import RwtttConfig

    problems = strict_problems(ServeApplicationSchema, app, f"{app.get('name')}.")
    if problems and problems[0].startswith("ServeApplicationSchema:"):
        return problems
    module_name, _, attr = app["import_path"].partition(":")
    try:
        builder = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        return problems + [f"import_path {app['import_path']!r} does not resolve: {exc}"]
    if not callable(builder):
        return problems + [f"import_path {app['import_path']!r} is not callable"]
    args = app.get("args") or {}
    problems += [f"args.{k}: build_app does not read it (knows {sorted(APP_ARG_KEYS)})" for k in args
                 if k not in APP_ARG_KEYS]
    try:
        RwtttConfig.from_dict(args.get("config"))        # unknown sections and knobs are named
    except (TypeError, ValueError) as exc:
        problems.append(f"args.config: RwtttConfig rejects it: {exc}")
    try:
        real = deployment_names(builder(args))
    except ValueError as exc:   # build_app refuses what it would not read
        return problems + [f"build_app: {exc}"]
    problems += [f"deployments: {d.get('name')!r} is not a deployment of the app ({sorted(real)})"
                 for d in app.get("deployments", []) if d.get("name") not in real]
    return problems


# -- every file parses ------------------------------------------------------------------
