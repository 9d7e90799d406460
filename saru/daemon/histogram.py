"""A duration histogram (pure): fixed bucket bounds, a count per bucket, the sum and the count.

The reconciler observes every data-plane apply into one (``saru_dataplane_apply_duration_seconds``);
``snapshot()`` gives the cumulative buckets a Prometheus histogram exposes (``le`` bounds, ``+Inf``
last), so the metrics front end renders it without knowing where it came from.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass

#: apply durations: 0.5 ms (a proxy table edit) to 10 s (a big IPVS table with retries)
APPLY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class HistogramSnapshot:
    """Cumulative ``(upper bound, count of observations <= bound)`` pairs ending with ``+inf``, the sum."""

    buckets: tuple[tuple[float, int], ...]
    sum: float

    @property
    def count(self) -> int:
        return self.buckets[-1][1] if self.buckets else 0


class Histogram:
    """``observe(seconds)``; ``snapshot()`` (see the module docstring)."""

    def __init__(self, bounds: Sequence[float] = APPLY_BUCKETS) -> None:
        if list(bounds) != sorted(set(bounds)) or not all(b > 0 and math.isfinite(b) for b in bounds):
            raise ValueError("histogram bounds must be finite, positive and increasing")
        self.bounds = tuple(bounds)
        self._counts = [0] * (len(self.bounds) + 1)  # the last one: above every bound
        self._sum = 0.0

    def observe(self, value: float) -> None:
        self._counts[bisect.bisect_left(self.bounds, value)] += 1
        self._sum += value

    def snapshot(self) -> HistogramSnapshot:
        total = 0
        buckets: list[tuple[float, int]] = []
        for bound, count in zip((*self.bounds, math.inf), self._counts, strict=True):
            total += count
            buckets.append((bound, total))
        return HistogramSnapshot(tuple(buckets), self._sum)
