"""Load shapes for the Locust users: ramp, step, spike and soak.

Each is a Locust `LoadTestShape` scaled by the run's own options, so one command line
works with any shape: `-u` is the peak number of users, `-t` the length of the run
(60 s when not given), `-r` how many users start or stop per second (at least what the
shape needs to follow its curve). After `-t` the shape ends the run.

    ramp    users rise evenly from 1 to the peak over the first 80% of the run, then hold
    step    five equal steps up to the peak, each a fifth of the run
    spike   a fifth of the peak, the whole peak for the middle fifth of the run, then back
    soak    up to the peak in a tenth of the run (30 s at most), then held: for long runs
            (`-t 2h`) that find leaks, slow growth and drift

The classes are abstract here (Locust would otherwise take any shape it finds in a
locust file); `loadtest.locustfiles` subclass the one `LOADTEST_SHAPE` names. The curves
are plain functions of (elapsed, peak, length), tested without Locust running.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from locust import LoadTestShape

from loadtest.curves import (
    CURVES,
    DEFAULT_LENGTH_S,
    ramp_users,
    soak_users,
    spike_users,
    step_users,
)


class ScaledShape(LoadTestShape):
    """A shape whose curve is `users(elapsed, peak, length)`."""

    abstract: ClassVar[bool] = True
    use_common_options: ClassVar[bool] = True  # -u, -r and -t scale the curve
    curve: ClassVar[Any] = staticmethod(ramp_users)

    def _run_options(self) -> tuple[int, float, float]:
        parsed = self.runner.environment.parsed_options if self.runner else None
        peak = int(getattr(parsed, "num_users", None) or 1)
        length = float(getattr(parsed, "run_time", None) or DEFAULT_LENGTH_S)
        rate = float(getattr(parsed, "spawn_rate", None) or 1.0)
        return peak, length, rate

    def tick(self) -> tuple[int, float] | None:
        peak, length, rate = self._run_options()
        elapsed = time.perf_counter() - self.start_time
        if elapsed >= length:
            return None
        # Fast enough to follow the curve: a step or a spike jumps within a second.
        return type(self).curve(elapsed, peak, length), max(rate, float(peak))


class RampShape(ScaledShape):
    abstract = True
    curve = staticmethod(ramp_users)


class StepShape(ScaledShape):
    abstract = True
    curve = staticmethod(step_users)


class SpikeShape(ScaledShape):
    abstract = True
    curve = staticmethod(spike_users)


class SoakShape(ScaledShape):
    abstract = True
    curve = staticmethod(soak_users)


SHAPES: dict[str, type[ScaledShape]] = {
    "ramp": RampShape, "step": StepShape, "spike": SpikeShape, "soak": SoakShape}
if {name: shape.curve for name, shape in SHAPES.items()} != CURVES:
    raise ImportError("loadtest.shapes and loadtest.curves name different shapes")
