"""Autoscaling policies: when to add a worker, and which one to drain. Pure.

The scheduler observes its live workers a few times a second (`ScaleObservation`: slots and
owners with work per worker, off the per-token path) and asks `decide`, which answers +1 (start
a worker), -1 with the worker to drain (its owners migrate away, then it stops), or 0.
queue_depth: up when owners wait for a slot, or slot occupancy stays at or above
`high_occupancy`, for `upscale_after_steps` observations in a row; down when the owners with
work would fit on one worker fewer at or below `low_occupancy` for `downscale_after_idle_steps`
observations in a row. It holds while a worker is starting or draining, and keeps the count
within [min_workers, max_workers].
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["AUTOSCALING_NAMES", "AutoscalingPolicy", "QueueDepthAutoscaler", "ScaleDecision", "ScaleObservation",
           "WorkerUsage", "make_autoscaler"]


@dataclass(frozen=True, slots=True)
class WorkerUsage:
    worker_id: str
    capacity: int           # device slots
    num_active: int         # owners with work (resident or waiting for a slot)
    num_owners: int = 0     # owners placed there, finished sessions included

    @property
    def num_waiting(self) -> int:
        return max(0, self.num_active - self.capacity)


@dataclass(frozen=True, slots=True)
class ScaleObservation:
    workers: tuple[WorkerUsage, ...]    # live workers that take new owners (not draining)
    num_pending: int = 0                # workers starting or draining now

    @property
    def queue_depth(self) -> int:
        """Owners with work beyond their worker's slots."""
        return sum(w.num_waiting for w in self.workers)

    @property
    def occupancy(self) -> float:
        """Fraction of all slots held by owners with work."""
        capacity = sum(w.capacity for w in self.workers)
        return sum(min(w.num_active, w.capacity) for w in self.workers) / capacity if capacity else 0.0


@dataclass(frozen=True, slots=True)
class ScaleDecision:
    delta: int                       # +1 start a worker, -1 drain `worker_id`, 0 hold
    worker_id: str | None = None     # the worker to drain when delta == -1


HOLD = ScaleDecision(0)


class AutoscalingPolicy(Protocol):
    """Decides, once per observation, whether the worker count should change."""

    name: str
    min_workers: int
    max_workers: int

    def decide(self, observation: ScaleObservation) -> ScaleDecision: ...


class QueueDepthAutoscaler:
    """Scale on queue depth and slot occupancy, with hysteresis (see the module docstring)."""

    name = "queue_depth"

    def __init__(self, min_workers: int = 1, max_workers: int = 1, upscale_after_steps: int = 2,
                 downscale_after_idle_steps: int = 6, high_occupancy: float = 0.9,
                 low_occupancy: float = 0.5) -> None:
        if not 1 <= min_workers <= max_workers:
            raise ValueError(f"need 1 <= {min_workers=} <= {max_workers=}")
        if upscale_after_steps < 1 or downscale_after_idle_steps < 1:
            raise ValueError(f"{upscale_after_steps=} and {downscale_after_idle_steps=} must be >= 1")
        if not 0.0 <= low_occupancy < high_occupancy <= 1.0:
            raise ValueError(f"need 0 <= {low_occupancy=} < {high_occupancy=} <= 1")
        self.min_workers, self.max_workers = min_workers, max_workers
        self.upscale_after_steps = upscale_after_steps
        self.downscale_after_idle_steps = downscale_after_idle_steps
        self.high_occupancy, self.low_occupancy = high_occupancy, low_occupancy
        self._num_busy = 0      # observations in a row with a queue or high occupancy
        self._num_quiet = 0     # observations in a row where one worker fewer would do

    def decide(self, observation: ScaleObservation) -> ScaleDecision:
        num_workers = len(observation.workers)
        if observation.num_pending:
            self._reset()
            return HOLD
        if num_workers < self.min_workers:
            return self._up()
        busy = observation.queue_depth > 0 or observation.occupancy >= self.high_occupancy
        self._num_busy = self._num_busy + 1 if busy else 0
        if busy and self._num_busy >= self.upscale_after_steps and num_workers < self.max_workers:
            return self._up()
        victim = self._victim(observation) if num_workers > self.min_workers and not busy else None
        self._num_quiet = self._num_quiet + 1 if victim is not None else 0
        if victim is not None and self._num_quiet >= self.downscale_after_idle_steps:
            self._reset()
            return ScaleDecision(-1, victim.worker_id)
        return HOLD

    def _victim(self, observation: ScaleObservation) -> WorkerUsage | None:
        """The least busy worker (then the fewest owners, then the last by name), if the owners
        with work fit on the others at or below low occupancy."""
        workers = observation.workers
        victim = min(reversed(workers), key=lambda w: (w.num_active, w.num_owners))
        rest = sum(w.capacity for w in workers) - victim.capacity
        num_active = sum(w.num_active for w in workers)
        return victim if num_active <= self.low_occupancy * rest else None

    def _up(self) -> ScaleDecision:
        self._reset()
        return ScaleDecision(+1)

    def _reset(self) -> None:
        self._num_busy = self._num_quiet = 0


AUTOSCALING_NAMES = (QueueDepthAutoscaler.name,)


def make_autoscaler(name: str = QueueDepthAutoscaler.name, **options: float) -> AutoscalingPolicy:
    """An autoscaling policy by name ("queue_depth"), with its options by keyword."""
    if name == QueueDepthAutoscaler.name:
        return QueueDepthAutoscaler(**options)   # type: ignore[arg-type]
    raise ValueError(f"unknown autoscaling policy {name!r}; choose one of {', '.join(AUTOSCALING_NAMES)}")
