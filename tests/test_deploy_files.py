"""The deployment files (cluster.yaml, deploy/*) checked against the tools that will read them.

Pure: no Ray cluster, no network. cluster.yaml goes through Ray's own ray-schema.json and the
prepare/validate steps `ray up` runs before it contacts a cloud; the Serve configs go through Ray
Serve's pydantic schemas, with unknown keys rejected (Serve itself ignores them silently), and
through rwttt_ray.app (import path, args, RwtttConfig fields, deployment names). Every checker has
a test that feeds it a broken copy and expects the break to be named.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.deploy_checks import (CLUSTER, DOCKERFILE, REDIS, ROOT, SERVE, YAML_FILES, cluster_problems,
                                 install_problems, load, load_all, pinned, rayservice, rayservice_serve_config,
                                 serve_config_problems)


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_yaml_parses(path):
    docs = load_all(path)
    assert docs and all(isinstance(d, dict) for d in docs)


def test_rayservice_embedded_serve_config_parses():
    assert isinstance(rayservice_serve_config(), dict)


# -- cluster.yaml -------------------------------------------------------------------------
def test_cluster_validates_against_ray_schema():
    assert cluster_problems(load(CLUSTER)) == []


@pytest.mark.parametrize("mutate, expect", [
    (lambda c: c.update(max_wokers=3), "max_wokers"),                                    # typo: top level
    (lambda c: c.pop("provider"), "provider"),                                           # required
    (lambda c: c["available_node_types"]["cpu_worker"].update(resources={"CPU": 0.5}), "resources"),
    (lambda c: c["auth"].update(ssh_usr="ubuntu"), "ssh_usr"),
    (lambda c: c.update(head_node_type="nope"), "head_node_type"),                       # Ray's own check
    (lambda c: c.update(max_workers=0), "max_workers"),                                  # < sum of min_workers
], ids=lambda v: v if isinstance(v, str) else None)
def test_cluster_checker_catches_bad_configs(mutate, expect):
    cfg = load(CLUSTER)
    mutate(cfg)
    problems = cluster_problems(cfg)
    assert problems and any(expect in p for p in problems), problems


def test_cluster_installs_project_with_pinned_torch_in_one_pip_command():
    cfg = load(CLUSTER)
    commands = cfg["setup_commands"] + cfg.get("head_setup_commands", []) + cfg.get("worker_setup_commands", [])
    assert install_problems(commands, pinned("torch")) == []
    assert install_problems(["pip install torch==2.13.0 -e ."], "2.13.0") == []   # the Makefile's form


@pytest.mark.parametrize("commands, expect", [
    (["pip install -e .", "pip install torch==2.13.0"], "not pinned in the same command"),
    (["cd ~/rwttt-ray && pip install torch -e ."], "differs"),
    (["pip install torch==2.12.0 -e ."], "differs"),
    (["pip install redis"], "no `pip install"),
])
def test_install_checker_catches_split_or_wrong_pins(commands, expect):
    problems = install_problems(commands, "2.13.0")
    assert any(expect in p for p in problems), problems


def test_cluster_layout():
    cfg = load(CLUSTER)
    types = cfg["available_node_types"]
    head = types[cfg["head_node_type"]]
    assert head["resources"].get("CPU") == 0 and not head["resources"].get("GPU"), "the head does no model work"
    assert any("--num-cpus=0" in c for c in cfg["head_start_ray_commands"])
    workers = [t for name, t in types.items() if name != cfg["head_node_type"]]
    assert any(t["resources"].get("CPU", 0) > 0 and not t["resources"].get("GPU") for t in workers), "a CPU type"
    assert any(t["resources"].get("GPU", 0) >= 1 for t in workers), "a GPU type"
    for t in workers:
        assert 0 <= t["min_workers"] <= t["max_workers"] <= cfg["max_workers"]
    assert all(any("ray start" in c for c in cfg[k]) for k in ("head_start_ray_commands", "worker_start_ray_commands"))


def test_cluster_mounts_the_project_and_matches_the_ray_pin():
    cfg = load(CLUSTER)
    local = [Path(v) for v in cfg["file_mounts"].values()]
    assert any((ROOT / p).resolve() == ROOT and (ROOT / p / "pyproject.toml").is_file() for p in local)
    ray_version = pinned("ray")
    images = [cfg["docker"]["image"]] + [t.get("docker", {}).get("worker_image", "") for t in
                                         cfg["available_node_types"].values()]
    for image in filter(None, images):
        assert image.split(":")[1].startswith(ray_version + "-"), f"{image} is not ray {ray_version}"


def test_cluster_points_every_node_at_external_redis():
    cfg = load(CLUSTER)
    url_lines = [c for c in cfg["setup_commands"] if "RWTTT_REDIS_URL=redis" in c]
    assert url_lines, "RWTTT_REDIS_URL is set in the setup commands"
    host = re.search(r"redis://(?:[^@/]*@)?([^:/]+)", url_lines[0]).group(1)
    assert host not in ("127.0.0.1", "localhost"), "a loopback Redis cannot serve other nodes"
    env_file = re.search(r">\s*(\S+)", url_lines[0]).group(1)
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        assert any(env_file in c and c.index(env_file) < c.index("ray start") for c in cfg[key]), key


# -- Serve configs --------------------------------------------------------------------------
def test_serve_yaml_is_a_valid_serve_config_for_this_app():
    assert serve_config_problems(load(SERVE)) == []


def test_rayservice_serve_config_is_a_valid_serve_config_for_this_app():
    assert serve_config_problems(rayservice_serve_config()) == []


def test_serve_yaml_and_rayservice_run_the_same_app():
    ours, theirs = load(SERVE), rayservice_serve_config()
    assert [(a["name"], a["import_path"], a.get("args"), a.get("route_prefix")) for a in ours["applications"]] == \
           [(a["name"], a["import_path"], a.get("args"), a.get("route_prefix")) for a in theirs["applications"]]


def _app(doc):
    return doc["applications"][0]


@pytest.mark.parametrize("mutate, expect", [
    (lambda d: _app(d)["deployments"][0].update(max_ongoing_request=8), "max_ongoing_request"),
    (lambda d: _app(d)["deployments"][0].update(name="Ingres"), "'Ingres' is not a deployment"),
    (lambda d: _app(d)["deployments"][0]["autoscaling_config"].update(max_replica=2), "autoscaling_config.max_replica"),
    (lambda d: _app(d)["deployments"][0].update(ray_actor_options={"num_cpu": 1}), "ray_actor_options.num_cpu"),
    (lambda d: _app(d)["deployments"][0].update(graceful_shutdown_timeout_s="soon"), "ServeDeploySchema"),
    (lambda d: _app(d)["deployments"][0].update(num_replicas=2), "num_replicas is not allowed"),  # + autoscaling
    (lambda d: _app(d)["args"].update(num_worker=2), "args.num_worker"),
    (lambda d: _app(d)["args"]["config"]["batching"].update(max_group=8), "unknown knobs ['max_group']"),
    (lambda d: _app(d)["args"]["config"].update(batchin={}), "unknown sections ['batchin']"),
    (lambda d: _app(d)["args"]["config"]["batching"].update(max_group_size=0), "RwtttConfig rejects"),
    (lambda d: _app(d)["args"].update(num_workers=2), "args.num_workers"),          # now config.cluster.workers
    (lambda d: _app(d).update(import_path="rwttt_ray.app:build_ap"), "does not resolve"),
    (lambda d: _app(d).update(import_path="rwttt_ray.app:APP_ARG_KEYS"), "not callable"),
    (lambda d: _app(d).update(route_prefx="/"), "route_prefx"),
    (lambda d: d["http_options"].update(hots="0.0.0.0"), "http_options.hots"),
    (lambda d: d.update(proxy_locaton="EveryNode"), "proxy_locaton"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_serve_checker_catches_bad_configs(mutate, expect):
    doc = load(SERVE)
    mutate(doc)
    problems = serve_config_problems(doc)
    assert any(expect in p for p in problems), problems


def test_app_arg_keys_are_the_ingress_keyword_arguments():
    """APP_ARG_KEYS (what the YAML checks allow) == Ingress.__init__'s keyword-only arguments."""
    from rwttt_ray.app import APP_ARG_KEYS

    tree = ast.parse((ROOT / "actors" / "ingress.py").read_text())
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Ingress"]
    (init,) = [n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"]
    assert [a.arg for a in init.args.args] == ["self"] and not init.args.vararg and not init.args.kwarg
    assert {a.arg for a in init.args.kwonlyargs} == set(APP_ARG_KEYS)


# -- the RayService and its Redis -----------------------------------------------------------
def _containers(spec: dict) -> list[dict]:
    return spec["template"]["spec"]["containers"]


def test_rayservice_shape():
    doc = rayservice()
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayService"
    cluster = doc["spec"]["rayClusterConfig"]
    assert cluster["rayVersion"] == pinned("ray")
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    groups = cluster["workerGroupSpecs"]
    assert groups and len({g["groupName"] for g in groups}) == len(groups)
    for g in groups:
        assert 0 <= g["minReplicas"] <= g.get("replicas", g["minReplicas"]) <= g["maxReplicas"], g["groupName"]
        for c in _containers(g):
            assert c["resources"]["requests"] and c["resources"]["limits"], g["groupName"]
    assert any("nvidia.com/gpu" in c["resources"]["limits"] for g in groups for c in _containers(g))


def test_rayservice_redis_wiring_matches_redis_yaml():
    cluster = rayservice()["spec"]["rayClusterConfig"]
    docs = load_all(REDIS)
    secrets = {d["metadata"]["name"]: {**d.get("stringData", {}), **d.get("data", {})}
               for d in docs if d["kind"] == "Secret"}
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    rwttt_secrets = set()
    for spec in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
        for c in _containers(spec):
            env = {e["name"]: e for e in c.get("env", [])}
            ref = env["RWTTT_REDIS_URL"]["valueFrom"]["secretKeyRef"]
            assert ref["key"] in secrets[ref["name"]], ref
            rwttt_secrets.add(ref["name"])
    ft = cluster["gcsFaultToleranceOptions"]
    host = ft["redisAddress"].split(":")[0]
    assert host in services
    gcs_ref = ft["redisPassword"]["valueFrom"]["secretKeyRef"]
    assert gcs_ref["key"] in secrets[gcs_ref["name"]]
    assert gcs_ref["name"] not in rwttt_secrets, "Ray's GCS and rwttt's directory use separate Redis"
    for name in rwttt_secrets:
        url_host = re.search(r"redis://(?:[^@/]*@)?([^:/]+)", secrets[name]["url"]).group(1)
        assert url_host in services and url_host != host


def test_dockerfile_pins_torch_and_ray_like_the_project():
    text = DOCKERFILE.read_text()
    runs = [line.split("RUN", 1)[1] for line in text.splitlines() if line.startswith("RUN")]
    assert install_problems(runs, pinned("torch")) == []
    bases = re.findall(r"rayproject/ray:([\w.]+)-", text)
    assert bases and all(b == pinned("ray") for b in bases)
