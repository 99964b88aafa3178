"""Session-wide real components: one local Ray cluster (dashboard off) and one redis-server."""
import pytest

from actors.redis_server import EmbeddedRedis


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
