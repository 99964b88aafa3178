"""Factories for pure-core tests."""
from rwttt_ray.core.types import Backend, Effect, Group, TransitionTag


def make_tag(**overrides) -> TransitionTag:
    fields = dict(owner_id="a", backend=Backend.FAST_WEIGHT, shape_class="f32:decode", effect=Effect.READ,
                  expected_version=0, placement="local")
    fields.update(overrides)
    return TransitionTag(**fields)


def make_group(*tags: TransitionTag, step: int = 0) -> Group:
    return Group(tags[0].key, tuple(tags), step)
