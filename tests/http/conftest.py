"""A real Serve app (the rwttt ingress) on a loopback port, over the session's Ray and Redis."""
import pytest

from actors.local_ports import spare_ports
from rwttt_ray.config import RwtttConfig
from rwttt_ray.ttt.reference import SequentialReference

KEYS = {"sk-alpha": {"tenant": "alpha"}, "sk-beta": {"tenant": "beta"},
        "sk-tiny": {"tenant": "tiny", "max_sessions": 1, "max_active": 1},
        "sk-meter": {"tenant": "meter", "tokens_per_minute": 40}}
METRICS_KEY = "op-metrics"
OPERATOR = {"Authorization": f"Bearer {METRICS_KEY}"}


@pytest.fixture(scope="session")
def http_config():
    return RwtttConfig.of(ttt_chunk=8)


@pytest.fixture(scope="session")
def server(ray_session, redis_srv, http_config):
    from ray import serve

    from rwttt_ray.app import build_app

    port = spare_ports()[2]       # this process's (test_serve_cli's servers take [0] and [1])
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    args = {"config": {"model": {"ttt_chunk": 8}, "cluster": {"redis_url": redis_srv.url}}, "api_keys": KEYS,
            "service_name": "rwttt-test", "metrics_key": METRICS_KEY}
    serve.run(build_app(args), name="rwttt", route_prefix="/")
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()
    stop_service("rwttt-test")


def stop_service(name: str) -> None:
    """Stop a service's cluster (its manager, workers, scheduler) after its app is gone."""
    import ray

    try:
        manager = ray.get_actor(name)
        ray.get(manager.shutdown.remote())
        ray.kill(manager)
    except ValueError:
        pass


@pytest.fixture(scope="session")
def http_reference(http_config):
    return SequentialReference(http_config.model.load_model())


@pytest.fixture(scope="session")
def bpe_dir(tmp_path_factory):
    from tests.checkpoints import build_bpe_checkpoint

    return build_bpe_checkpoint(tmp_path_factory.mktemp("bpe") / "ckpt")


@pytest.fixture(scope="session")
def bpe_server(server, bpe_dir, redis_srv):
    """A second app on the same Serve instance (route /bpe): the BPE checkpoint, chunk 8, its own
    workers and Redis namespace; sessions idle 600 s expire (tests ask for shorter ttl_s)."""
    from ray import serve

    from rwttt_ray.app import build_app

    args = {"config": {"model": {"model": str(bpe_dir)}, "cluster": {"redis_url": redis_srv.url},
                       "service": {"session_ttl_s": 600.0}},
            "api_keys": KEYS, "service_name": "rwttt-test-bpe", "served_model_name": ["bpe-tiny", "bpe"]}
    serve.run(build_app(args), name="rwttt-bpe", route_prefix="/bpe")
    yield server + "/bpe"
    serve.delete("rwttt-bpe")
    stop_service("rwttt-test-bpe")


@pytest.fixture(scope="session")
def bpe_reference(bpe_dir):
    from rwttt_ray.ttt.checkpoint import load_model

    return SequentialReference(load_model(bpe_dir))


@pytest.fixture(scope="session")
def bpe_tok(bpe_reference):
    return bpe_reference.model.tokenizer


@pytest.fixture
def bpe_client(bpe_server):
    from openai import OpenAI

    return OpenAI(base_url=f"{bpe_server}/v1", api_key="sk-alpha", max_retries=0)
