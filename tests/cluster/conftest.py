"""Cluster fixtures over the session-wide Ray and Redis of tests/conftest.py."""
import pytest

from rwttt_ray.config import RwtttConfig
from rwttt_ray.ttt.reference import SequentialReference


@pytest.fixture(scope="session")
def config():
    return RwtttConfig(ttt_chunk=8)


@pytest.fixture(scope="session")
def reference(config):
    return SequentialReference(config.load_model())


@pytest.fixture
def make_cluster(ray_session, redis_srv, config):
    from actors.cluster import RwtttCluster

    made = []

    def make(**kw):
        kw.setdefault("redis_url", redis_srv.url)
        kw.setdefault("threads_per_worker", 1)     # the test process computes references beside it
        cluster = RwtttCluster(kw.pop("config", config), **kw)
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        cluster.shutdown()
