"""A real Serve app (the rwttt ingress) on a loopback port, over the session's Ray and Redis."""
import pytest

from actors.redis_server import free_port
from rwttt_ray.config import RwtttConfig
from rwttt_ray.ttt.reference import SequentialReference

KEYS = {"sk-alpha": {"tenant": "alpha"}, "sk-beta": {"tenant": "beta"},
        "sk-tiny": {"tenant": "tiny", "max_sessions": 1, "max_active": 1}}


@pytest.fixture(scope="session")
def http_config():
    return RwtttConfig(ttt_chunk=8)


@pytest.fixture(scope="session")
def server(ray_session, redis_srv, http_config):
    import ray
    from ray import serve

    from rwttt_ray.app import build_app

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    args = {"config": {"ttt_chunk": 8}, "api_keys": KEYS, "redis_url": redis_srv.url, "service_name": "rwttt-test"}
    serve.run(build_app(args), name="rwttt", route_prefix="/")
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()
    try:
        manager = ray.get_actor("rwttt-test")
        ray.get(manager.shutdown.remote())
        ray.kill(manager)
    except ValueError:
        pass


@pytest.fixture(scope="session")
def http_reference(http_config):
    return SequentialReference(http_config.load_model())
