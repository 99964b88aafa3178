import pytest

from actors.redis_server import EmbeddedRedis


@pytest.fixture(scope="session")
def redis_server():
    server = EmbeddedRedis()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server):
    return redis_server.url
