"""The fingerprint get_manager compares: a manager started with other arguments is replaced, never
silently reused (the replacement itself: tests/http/test_chaos.py, on a service it may stop)."""
from actors.service import config_fingerprint
from rwttt_ray.config import RwtttConfig


def test_fingerprint_ignores_order_and_tells_configs_apart():
    assert list({1, 9}) != list({9, 1})                     # same set, another iteration order
    one = config_fingerprint(RwtttConfig(ttt_chunk=8, extra={"s": {1, 9}}), {"t1": {"max_active": 2}, "t2": {}})
    two = config_fingerprint(RwtttConfig(ttt_chunk=8, extra={"s": {9, 1}}), {"t2": {}, "t1": {"max_active": 2}})
    assert one == two
    assert config_fingerprint(RwtttConfig(ttt_chunk=8)) != config_fingerprint(RwtttConfig(ttt_chunk=16))
    assert config_fingerprint(RwtttConfig(), 1) != config_fingerprint(RwtttConfig(), 2)
