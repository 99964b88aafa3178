"""Factories for pure-core tests: tags, groups and pending steps with sensible defaults."""
from __future__ import annotations

from rwttt_ray.core.types import Backend, Effect, Group, PendingStep, TransitionTag


def make_tag(**overrides) -> TransitionTag:
    """A READ tag of owner "a" at version 0, decode shape, local placement, unless overridden."""
    fields = dict(owner_id="a", backend=Backend.FAST_WEIGHT, shape_class="f32:decode", effect=Effect.READ,
                  expected_version=0, placement="local")
    fields.update(overrides)
    return TransitionTag(**fields)


def make_group(*tags: TransitionTag, step: int = 0) -> Group:
    """A group keyed by its first tag (members are not checked: tests build illegal ones too)."""
    return Group(tags[0].key, tuple(tags), step)


def make_pending(n: int, ready_step: int = 0, **overrides) -> list[PendingStep]:
    """`n` pending steps of owners o0..o{n-1}, oldest first."""
    return [PendingStep(make_tag(owner_id=f"o{i}", **overrides), ready_step, i) for i in range(n)]
