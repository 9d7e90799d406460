"""Log throttling for persistent conditions (pure: time in, decisions out).

A condition that persists — a vetoed mastership retried every 0.36 s, a real that stays down, a
reload that keeps failing, a peer that keeps sending malformed adverts, a local fault of the checks —
must not flood the log, yet must not go silent either. ``Throttle`` decides, for each occurrence of a
condition (a hashable ``key``) with a ``detail`` (what it looks like now: the MAC that answers, the
error text), whether to log it:

* ``START``: the first occurrence (or the first after ``clear``) — log it in full;
* ``CHANGE``: the detail differs from the last logged one (another MAC answers, another error) —
  log it in full; the count restarts;
* ``REMINDER``: the same detail, and at least ``interval`` seconds since the condition was last
  logged — log a short reminder with ``count``, the occurrences since then;
* ``None``: the same detail within the interval — say nothing (count it);
* ``clear(key)``: the condition ended — ``RESOLVED`` with the total count and ``since`` (None if
  the condition was not active).

The reminder interval is 60 s (``REMINDER_INTERVAL``): the "at most once a minute" of issue #14;
``SARU_LOG_REMINDER_INTERVAL`` (seconds) overrides it for tests and debugging
(``default_interval()`` reads it, at the edges where a ``Throttle`` is made). No I/O, no clock:
the caller passes ``now`` (monotonic seconds).
"""

from __future__ import annotations

import enum
import os
from collections.abc import Hashable
from dataclasses import dataclass

#: at most one reminder a minute per persistent condition
REMINDER_INTERVAL = 60.0
#: environment variable that overrides ``REMINDER_INTERVAL`` (seconds; tests use a short one)
INTERVAL_ENV = "SARU_LOG_REMINDER_INTERVAL"


class Kind(enum.Enum):
    START = "start"
    CHANGE = "change"
    REMINDER = "reminder"
    RESOLVED = "resolved"


@dataclass(frozen=True)
class Decision:
    """What to log: ``count`` occurrences since the last logged line (the total for ``RESOLVED``),
    ``since``: when the condition started (the caller's clock), ``detail``: its current detail."""

    kind: Kind
    detail: str
    count: int
    since: float


@dataclass
class _Condition:
    detail: str
    since: float
    logged_at: float
    unlogged: int = 0  # occurrences since the last logged line
    total: int = 1


def default_interval() -> float:
    """``REMINDER_INTERVAL``, or ``$SARU_LOG_REMINDER_INTERVAL`` when set to a positive number."""
    try:
        value = float(os.environ.get(INTERVAL_ENV, ""))
    except ValueError:
        return REMINDER_INTERVAL
    return value if value > 0 else REMINDER_INTERVAL


class Throttle:
    """The persistent conditions of one kind (see the module docstring)."""

    def __init__(self, interval: float = REMINDER_INTERVAL) -> None:
        self.interval = interval
        self._active: dict[Hashable, _Condition] = {}

    def observe(self, key: Hashable, detail: str, now: float) -> Decision | None:
        """One occurrence of condition ``key``; the decision to log, or None to stay quiet."""
        cond = self._active.get(key)
        if cond is None:
            self._active[key] = _Condition(detail, now, now)
            return Decision(Kind.START, detail, 1, now)
        cond.total += 1
        if detail != cond.detail:
            cond.detail, cond.logged_at, cond.unlogged = detail, now, 0
            return Decision(Kind.CHANGE, detail, 1, cond.since)
        cond.unlogged += 1
        if now - cond.logged_at >= self.interval:
            count, cond.unlogged, cond.logged_at = cond.unlogged, 0, now
            return Decision(Kind.REMINDER, detail, count, cond.since)
        return None

    def clear(self, key: Hashable, now: float) -> Decision | None:
        """Condition ``key`` ended: ``RESOLVED`` (total occurrences, start), or None if it was not active."""
        cond = self._active.pop(key, None)
        if cond is None:
            return None
        return Decision(Kind.RESOLVED, cond.detail, cond.total, cond.since)

    def active(self, key: Hashable) -> bool:
        return key in self._active

    def forget(self, keep: set[Hashable]) -> None:
        """Drop conditions whose key is no longer in ``keep`` (a real removed by a reload)."""
        for key in [k for k in self._active if k not in keep]:
            del self._active[key]


def lasting(seconds: float) -> str:
    """``"for 3m12s"``-style duration for reminder and resolution lines."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
