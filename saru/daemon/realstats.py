"""Per-real check statistics over the daemon's life: failed checks, UP→DOWN transitions, the last
change and the time spent down (PROMEX's ``check_failures_total``, ``check_up_down_total``,
``check_last_change_seconds``, ``downtime_seconds_total``).

``RealStats.record`` is a monitor result listener (``Monitor.add_result_listener``): it sees every
result of every real with the verdict that followed, and costs a dictionary lookup and a few
integer updates per result. A maintenance result (``maintenancedir``) is no check and is not counted
as a failure, but the real's verdict going down with it is a transition like any other. Times are
measured on the monotonic clock; ``read`` turns them into ages and totals at the time asked.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

from saru.model import CheckResult, CheckSpec, RealRef
from saru.monitor import MAINTENANCE_MESSAGE


@dataclass(slots=True)
class _Record:
    last_change: float  # monotonic: the last UP<->DOWN change (the tracker's start when none yet)
    up: bool | None = None
    failures: int = 0
    up_down: int = 0
    down_since: float | None = None  # monotonic, while down
    downtime: float = 0.0  # seconds down, periods that ended


@dataclass(frozen=True, slots=True)
class RealCounts:
    """One real's statistics at the time they were read."""

    failures: int  # failed checks
    up_down: int  # UP -> DOWN transitions
    last_change_age: float  # seconds since the last UP<->DOWN change (since the start when none)
    downtime: float  # seconds spent down (the current period included)


class RealStats:
    """The statistics of every real the monitor reports on (see the module docstring)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._started = clock()
        self._records: dict[RealRef, _Record] = {}

    def record(self, ref: RealRef, _spec: CheckSpec, result: CheckResult, up: bool | None) -> None:
        """A result listener: one result of ``ref`` and its verdict after it."""
        rec = self._records.get(ref)
        if rec is None:
            rec = self._records[ref] = _Record(self._started)
        if not result.ok and result.message != MAINTENANCE_MESSAGE:
            rec.failures += 1
        if up is rec.up:
            return
        now = self._clock()
        if rec.up is not None:
            rec.last_change = now
            if up is False and rec.up:
                rec.up_down += 1
        if up is False:
            rec.down_since = now
        elif rec.down_since is not None:
            rec.downtime += now - rec.down_since
            rec.down_since = None
        rec.up = up

    def read(self, ref: RealRef, now: float | None = None) -> RealCounts:
        """``ref``'s statistics now (zeros, and the age of the tracker, for a real never reported)."""
        now = self._clock() if now is None else now
        rec = self._records.get(ref)
        if rec is None:
            return RealCounts(0, 0, now - self._started, 0.0)
        down = rec.downtime + (now - rec.down_since if rec.down_since is not None else 0.0)
        return RealCounts(rec.failures, rec.up_down, now - rec.last_change, down)

    def now(self) -> float:
        """The tracker's clock (one reading for a whole snapshot)."""
        return self._clock()

    def retain(self, refs: Collection[RealRef]) -> None:
        """Forget the reals not in ``refs`` (gone with a reload); a real that comes back starts anew."""
        self._records = {ref: rec for ref, rec in self._records.items() if ref in refs}

    def __len__(self) -> int:
        """How many reals have statistics."""
        return len(self._records)
