"""get_manager never silently reuses a service's manager started with another configuration: it
shuts that one down (its cluster too), kills it and starts one with the new arguments."""
import pytest

from actors.service import config_fingerprint
from rwttt_ray.config import RwtttConfig


def test_fingerprint_ignores_order_and_tells_configs_apart():
    assert list({1, 9}) != list({9, 1})                     # same set, another iteration order
    one = config_fingerprint(RwtttConfig(ttt_chunk=8, extra={"s": {1, 9}}), {"t1": {"max_active": 2}, "t2": {}})
    two = config_fingerprint(RwtttConfig(ttt_chunk=8, extra={"s": {9, 1}}), {"t2": {}, "t1": {"max_active": 2}})
    assert one == two
    assert config_fingerprint(RwtttConfig(ttt_chunk=8)) != config_fingerprint(RwtttConfig(ttt_chunk=16))
    assert config_fingerprint(RwtttConfig(), 1) != config_fingerprint(RwtttConfig(), 2)


def test_a_manager_of_another_config_is_replaced(ray_session, redis_srv):
    import ray
    from ray.exceptions import RayActorError

    from actors.service import get_manager

    name, old, new = "rwttt-fingerprint-test", RwtttConfig(ttt_chunk=8), RwtttConfig(ttt_chunk=16)
    first = get_manager(name, old, 1, redis_srv.url, {})
    try:
        old_scheduler = ray.get(first.scheduler.remote())
        assert get_manager(name, old, 1, redis_srv.url, {})._actor_id == first._actor_id      # same: reused
        second = get_manager(name, new, 1, redis_srv.url, {})
        assert second._actor_id != first._actor_id
        assert ray.get(second.fingerprint.remote()) == config_fingerprint(new, 1, redis_srv.url, {}, 64,
                                                                          f"rwttt-{name}")
        for gone in (first, old_scheduler):                 # the old manager and its cluster are stopped
            with pytest.raises(RayActorError):
                ray.get(gone.ping.remote(), timeout=30)
    finally:
        manager = ray.get_actor(name)
        ray.get(manager.shutdown.remote(), timeout=60)
        ray.kill(manager, no_restart=True)
