"""A real redis-server for the actor tests (EmbeddedRedis; no fakes), shared by the session."""
from collections.abc import Iterator

import pytest

from actors.redis_server import EmbeddedRedis


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis() as server:
        yield server


@pytest.fixture(scope="session")
def redis_url(redis_server: EmbeddedRedis) -> str:
    return redis_server.url
