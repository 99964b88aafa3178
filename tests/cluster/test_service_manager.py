"""The fingerprint get_manager compares: a manager started with other arguments is replaced, never
silently reused (the replacement itself: tests/http/test_chaos.py, on a service it may stop)."""
from actors.service import config_fingerprint
from rwttt_ray.config import RwtttConfig


def test_fingerprint_ignores_order_and_tells_configs_apart():
    assert list({1, 9}) != list({9, 1})                     # same set, another iteration order
    one = config_fingerprint(RwtttConfig.of(ttt_chunk=8, tenant_limits={"s": {1, 9}}), "ns")
    two = config_fingerprint(RwtttConfig.of(ttt_chunk=8, tenant_limits={"s": {9, 1}}), "ns")
    assert one == two
    limits = ({"t1": {"max_active": 2}, "t2": {}}, {"t2": {}, "t1": {"max_active": 2}})
    assert len({config_fingerprint(RwtttConfig.of(tenant_limits=lim)) for lim in limits}) == 1   # keys sorted
    assert config_fingerprint(RwtttConfig.of(ttt_chunk=8)) != config_fingerprint(RwtttConfig.of(ttt_chunk=16))
    assert config_fingerprint(RwtttConfig.of(workers=1)) != config_fingerprint(RwtttConfig.of(workers=2))
    assert config_fingerprint(RwtttConfig(), "a") != config_fingerprint(RwtttConfig(), "b")
