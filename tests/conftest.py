"""Session-wide real components: one local Ray cluster (dashboard off) and one redis-server;
and one torch thread per test in this process."""
import pytest
import torch

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


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tests run tiny matmuls beside Ray actors on 2 cores: one thread is fastest, and two OpenMP
    threads on busy cores spin-wait (measured ~30x slower). Restored after each test."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
