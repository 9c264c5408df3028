"""The load shapes' curves: how many users run `elapsed` seconds into a run of `length`
seconds that peaks at `peak` users (see `loadtest.shapes`). Plain functions, no Locust."""

from __future__ import annotations

import math

DEFAULT_LENGTH_S = 60.0
STEPS = 5


def ramp_users(elapsed: float, peak: int, length: float) -> int:
    rising = 0.8 * length
    return max(1, math.ceil(peak * min(1.0, elapsed / rising))) if rising > 0 else peak


def step_users(elapsed: float, peak: int, length: float) -> int:
    step = min(STEPS - 1, int(elapsed / (length / STEPS)))
    return max(1, math.ceil(peak * (step + 1) / STEPS))


def spike_users(elapsed: float, peak: int, length: float) -> int:
    if 0.4 * length <= elapsed < 0.6 * length:
        return peak
    return max(1, math.ceil(peak / 5))


def soak_users(elapsed: float, peak: int, length: float) -> int:
    rising = min(30.0, 0.1 * length)
    return max(1, math.ceil(peak * min(1.0, elapsed / rising))) if rising > 0 else peak


# The shapes by name, as `cbdc loadtest --shape` and LOADTEST_SHAPE take them.
CURVES = {"ramp": ramp_users, "step": step_users, "spike": spike_users, "soak": soak_users}
