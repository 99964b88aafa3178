"""Session-wide real components (one local Ray cluster, dashboard off; one redis-server), the
unit/integration split, and one torch thread per test in this process.

The split, like Ray's own suite: a test is `integration` when it needs real Ray, a redis-server
or a served app (it uses one of INTEGRATION_FIXTURES, even through another fixture; it lives in
an integration folder or module; or it is marked `integration`, `ray` or `slow`), else `unit`.
Unit tests run first, and each fails if it finds Ray initialised, calls `ray.init` or starts a
redis-server.
`pytest -m unit` runs the fast half alone (`make test-unit`); `make test` runs both.
"""
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from actors.redis_server import EmbeddedRedis

ROOT = Path(__file__).parent
# fixtures that start (or hand out) real Ray, redis-server or a served app
INTEGRATION_FIXTURES = frozenset({"ray_session", "redis_srv", "redis_server", "redis_url", "make_cluster",
                                  "server", "bpe_server", "bpe_client"})
INTEGRATION_MARKERS = ("integration", "ray", "slow")
INTEGRATION_DIRS = ("http", "cluster")
# modules whose tests start a redis-server themselves (EmbeddedRedis)
INTEGRATION_MODULES = frozenset({"actors/test_redis_server.py", "actors/test_directory.py"})


def is_integration(item: pytest.Item) -> bool:
    """Whether a collected test needs real Ray, a redis-server or a served app."""
    if any(item.get_closest_marker(name) for name in INTEGRATION_MARKERS):
        return True
    if INTEGRATION_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    try:
        rel = Path(str(item.path)).resolve().relative_to(ROOT.resolve())
    except ValueError:
        return False
    return rel.parts[0] in INTEGRATION_DIRS or rel.as_posix() in INTEGRATION_MODULES


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test `unit` or `integration` before `-m` selects (hence tryfirst), and put the
    unit tests first (a stable sort: each half keeps its order), before any session Ray starts."""
    integration = {item.nodeid for item in items if is_integration(item)}
    for item in items:
        item.add_marker(pytest.mark.integration if item.nodeid in integration else pytest.mark.unit)
    items.sort(key=lambda item: item.nodeid in integration)


def _refuse(what: str) -> Callable[..., None]:
    """A stand-in that fails the unit test calling it, saying what it must not do."""
    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError(f"a unit test must not {what}: use a fake, or let it be an integration test "
                           "(a fixture of tests/conftest.py INTEGRATION_FIXTURES, or @pytest.mark.integration)")
    return refuse


@pytest.fixture(autouse=True)
def unit_isolation(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A unit test finds no Ray running, and fails if it calls `ray.init` or starts a redis-server."""
    if request.node.get_closest_marker("unit") is None:
        yield
        return
    import ray

    assert not ray.is_initialized(), "Ray is initialised before a unit test (did an integration test run first?)"
    monkeypatch.setattr(ray, "init", _refuse("call ray.init"))
    monkeypatch.setattr(EmbeddedRedis, "start", _refuse("start a redis-server"))
    yield
    assert not ray.is_initialized(), "a unit test left Ray initialised"


@pytest.fixture(scope="session")
def ray_session():
    import ray

    from actors.cluster import init_ray

    init_ray(num_cpus=4)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def redis_srv():
    server = EmbeddedRedis()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tests run tiny matmuls beside Ray actors on 2 cores: one thread is fastest, and two OpenMP
    threads on busy cores spin-wait (measured ~30x slower). Restored after each test."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
