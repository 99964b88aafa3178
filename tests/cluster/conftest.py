"""One real local Ray cluster (dashboard off) and one real redis-server for the whole session."""
import pytest

from actors.redis_server import EmbeddedRedis
from rwttt_ray.config import RwtttConfig
from rwttt_ray.ttt.reference import SequentialReference


@pytest.fixture(scope="session")
def ray_session():
    from actors.cluster import init_ray
    import ray

    init_ray(num_cpus=4)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def redis_srv():
    server = EmbeddedRedis()
    yield server
    server.stop()


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
        cluster = RwtttCluster(kw.pop("config", config), **kw)
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        cluster.shutdown()
