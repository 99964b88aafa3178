"""Cluster fixtures over the session-wide Ray and Redis of tests/conftest.py."""
import pytest

from rwttt_ray.config import RwtttConfig
from rwttt_ray.ttt.reference import SequentialReference


@pytest.fixture(scope="session")
def config():
    return RwtttConfig.of(ttt_chunk=8)


@pytest.fixture(scope="session")
def reference(config):
    return SequentialReference(config.model.load_model())


@pytest.fixture
def make_cluster(ray_session, redis_srv, config):
    from actors.cluster import RwtttCluster

    made = []

    def make(config=config, record_logits=False, namespace=None, **knobs):
        """A cluster of `config` with `knobs` changed (any RwtttConfig knob, by name)."""
        knobs.setdefault("redis_url", redis_srv.url)
        knobs.setdefault("threads_per_worker", 1)     # the test process computes references beside it
        cluster = RwtttCluster(config=config.replace(**knobs), record_logits=record_logits, namespace=namespace)
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        cluster.shutdown()
