"""Where in its interval each check group runs (pure): the monitor spreads the groups over the interval.

Groups that all ran at the same instant (every group of a configuration starts at once) made the
event loop a burst of thousands of checks each interval: while it worked through them, the timers
due meanwhile — the hard timeouts that detect a frozen real, the next wake-ups — fired late by the
length of the burst (seconds at 10,000 HTTP reals a second). So after its first check (always at
once: a new real gets its verdict without waiting) a group runs on its own grid
``phase + n * interval`` of loop time: one of ``PHASES`` points evenly spaced over the interval,
taken in the golden-ratio sequence (for any number of groups the points fill evenly, the next group
always on the emptiest part, and groups added on a reload keep the spread even). A few larger
bursts, not many thin ones: spread over ~100 slots a check cost ~21-25 % more CPU in the daemon
(bench/api_bench.py); 8 points cost less than one burst and keep the timers as timely as 100.
Phases are whole multiples of a grain (``WAKEUP_GRAIN``), so the groups of one point are woken by
one timer.
"""

from __future__ import annotations

import math

#: the golden ratio's fractional part (its multiples mod 1 are the most even sequence there is)
_GOLDEN = (math.sqrt(5) - 1) / 2
#: wake-ups of the groups are grouped in slots of this many seconds (one loop timer per slot). 10 ms
#: cost more CPU per check (bench/checks_bench.py: connect 15,700-19,200 checks/CPU-s at 3,000 reals
#: against 20,500 at 50 ms): each slot is a turn of the loop after a sleep, and work done in many
#: small turns costs more than in fewer larger ones; 50 ms slots still keep the turns short
WAKEUP_GRAIN = 0.05
#: at most this many phases per interval: spread thin (~100 checks a slot) a check cost ~21-25 % more
#: CPU in the daemon than in a burst (its answer is not there yet when the loop comes back to read
#: it, so it goes through the poller; docs/benchmarks.md); a few larger bursts keep each one short
#: (10,000 HTTP checks a second: ~1,250 a phase, well under 0.2 s of loop time) and their answers ready
PHASES = 8


def phase(index: int, interval: float, grain: float = WAKEUP_GRAIN, phases: int = PHASES) -> float:
    """The offset in ``[0, interval)`` of the ``index``-th group's grid: one of at most ``phases``
    evenly spaced points of the interval, each a whole number of grains."""
    slots = max(1, min(phases, math.floor(interval / grain)))
    point = math.floor((index * _GOLDEN) % 1.0 * slots) * interval / slots
    return min(math.floor(point / grain + 0.5), math.ceil(interval / grain) - 1) * grain


def next_on_grid(after: float, offset: float, interval: float) -> float:
    """The first time of the grid ``offset + n * interval`` strictly after ``after`` (so at most
    ``interval`` after it)."""
    n = math.floor((after - offset) / interval) + 1
    due = offset + n * interval
    return due if due > after else due + interval  # rounding of a time right on the grid


def slot(when: float, grain: float = WAKEUP_GRAIN) -> int:
    """The number of the wake-up slot of loop time ``when`` (the nearest multiple of ``grain``)."""
    return round(when / grain)
