"""Per-real check statistics over the daemon's life, for the metrics: the last result (its class and
duration), the verdict after it, failed checks, UP→DOWN transitions, the last change and the time
spent down (PROMEX's ``check_status``, ``check_duration_seconds``, ``check_failures_total``,
``check_up_down_total``, ``check_last_change_seconds``, ``downtime_seconds_total``).

``RealStats.record`` is a monitor result listener (``Monitor.add_result_listener``): it sees every
result of every real with the verdict that followed, and costs two dictionary lookups and a few
updates per result. A maintenance result (``maintenancedir``) is no check: it is not counted as a
failure and has no class, but the real's verdict going down with it is a transition like any other.
Times are measured on the monotonic clock; ``read`` turns them into ages and totals when asked
(``saru.daemon.metrics_snapshot`` reads the records themselves, ``for_service``).

A check's duration is kept in whole milliseconds, as HAProxy keeps its own (PROMEX's
``check_duration_seconds`` is milliseconds / 1000): a real checked again in about the same time shows
the same value, so its line in ``/metrics`` stays as it was (the exact latency of the last check is in
``/api/v1/status``). Each number of milliseconds is one float object (``seconds_of_ms``), shared by
every real that took as long: a scrape that reads 10,000 durations reads a few hundred objects, not
10,000 scattered over the heap, and a duration that did not change is the same object as before.

The records are kept per virtual service, by (address, port), so that a scrape of 10,000 reals looks
each up with a plain tuple (``for_service``) rather than hashing a ``RealRef`` per real. Readers that
keep their own view get a set of records to empty as they read: ``changes()`` every record a result
touched (the status document shows each real's last result), ``moves()`` only those whose numbers
other than the duration moved (the metrics' live snapshot, ``saru.daemon.metrics_live.LiveServers``,
redoes only those reals' rows). The durations are kept in one list, ``durations``, each record's at
its ``slot`` (slot 0 holds None), so that a reader takes the column of 10,000 reals' durations in one
step (``operator.itemgetter`` over their slots: tens of µs, where reading them from the records
scattered over the heap took a millisecond). Records hash by identity. ``generation`` counts
``retain`` calls (records may have been dropped: readers start over).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

from saru.checks.result_class import result_class
from saru.model import CheckResult, CheckSpec, RealRef, ServiceKey
from saru.monitor import MAINTENANCE_MESSAGE

#: the class of a result no check produced (``checktype=on``, a maintenance file)
NO_CHECK = "UNK"
_SECONDS: dict[int, float] = {}  # each number of milliseconds seen, as seconds (a check's time is bounded)


def seconds_of_ms(latency: float) -> float:
    """``latency`` (seconds) in whole milliseconds, as seconds: one object per value (module docstring)."""
    ms = round(latency * 1000)
    return _SECONDS.setdefault(ms, ms / 1000)


@dataclass(slots=True, eq=False)
class RealRecord:
    """One real's statistics (read-only outside ``RealStats``); hashed by identity."""

    ref: RealRef
    last_change: float  # monotonic: the last UP<->DOWN change (the tracker's start when none yet)
    up: bool | None = None  # the verdict after the last result
    maintenance: bool = False  # the last result was a maintenance file's
    check_class: str | None = None  # saru.checks.result_class of the last check (None: no check ran)
    failures: int = 0
    up_down: int = 0
    down_since: float | None = None  # monotonic, while down
    downtime: float = 0.0  # seconds down, periods that ended
    slot: int = 0  # where ``RealStats.durations`` holds its last check's duration (seconds, whole ms)


@dataclass(frozen=True, slots=True)
class RealCounts:
    """One real's totals at the time they were read."""

    failures: int  # failed checks
    up_down: int  # UP -> DOWN transitions
    last_change_age: float  # seconds since the last UP<->DOWN change (since the start when none)
    downtime: float  # seconds spent down (the current period included)


class RealStats:
    """The statistics of every real the monitor reports on (see the module docstring)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.started = clock()
        self._records: dict[ServiceKey, dict[tuple[str, int], RealRecord]] = {}
        self._changes: list[set[RealRecord]] = []
        self._moves: list[set[RealRecord]] = []
        #: each record's check duration at its slot (slot 0: None, for the reals that show none)
        self.durations: list[float | None] = [None]
        self.generation = 0  # retain() calls
        self.results = 0  # check results recorded since the start (the soak's achieved check rate)

    def record(self, ref: RealRef, _spec: CheckSpec, result: CheckResult, up: bool | None) -> None:
        """A result listener: one result of ``ref`` and its verdict after it."""
        self.results += 1
        reals = self._records.get(ref.service)
        if reals is None:
            reals = self._records[ref.service] = {}
        rec = reals.get((ref.address, ref.port))
        if rec is None:
            rec = reals[(ref.address, ref.port)] = RealRecord(ref, self.started, slot=len(self.durations))
            self.durations.append(0.0)
        for changed in self._changes:
            changed.add(rec)
        before = (rec.maintenance, rec.check_class, rec.failures)
        rec.maintenance = not result.ok and result.message == MAINTENANCE_MESSAGE
        check_class = result_class(result)
        if rec.maintenance or check_class == NO_CHECK:
            rec.check_class = None
        else:
            rec.check_class = check_class
            self.durations[rec.slot] = seconds_of_ms(result.latency)
            rec.failures += not result.ok
        if up is rec.up:
            if before != (rec.maintenance, rec.check_class, rec.failures):
                for moved in self._moves:
                    moved.add(rec)
            return
        for moved in self._moves:
            moved.add(rec)
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

    def changes(self) -> set[RealRecord]:
        """A set that gets every record a result touches from now on (the reader empties it)."""
        changed: set[RealRecord] = set()
        self._changes.append(changed)
        return changed

    def moves(self) -> set[RealRecord]:
        """A set that gets every record whose numbers other than the duration a result changed from now
        on (the reader empties it): its verdict, maintenance, class or failures (module docstring)."""
        moved: set[RealRecord] = set()
        self._moves.append(moved)
        return moved

    def for_service(self, key: ServiceKey) -> Mapping[tuple[str, int], RealRecord]:
        """The records of one virtual's reals, by (address, port) as configured."""
        return self._records.get(key, {})

    def read(self, ref: RealRef, now: float | None = None) -> RealCounts:
        """``ref``'s totals now (zeros, and the tracker's age, for a real never reported)."""
        now = self._clock() if now is None else now
        rec = self.for_service(ref.service).get((ref.address, ref.port))
        if rec is None:
            return RealCounts(0, 0, now - self.started, 0.0)
        down = rec.downtime + (now - rec.down_since if rec.down_since is not None else 0.0)
        return RealCounts(rec.failures, rec.up_down, now - rec.last_change, down)

    def now(self) -> float:
        """The tracker's clock (one reading for a whole snapshot)."""
        return self._clock()

    def retain(self, refs: Collection[RealRef]) -> None:
        """Forget the reals not in ``refs`` (gone with a reload); a real that comes back starts anew."""
        kept: dict[ServiceKey, dict[tuple[str, int], RealRecord]] = {}
        durations: list[float | None] = [None]
        for ref in refs:
            rec = self.for_service(ref.service).get((ref.address, ref.port))
            if rec is not None and (ref.address, ref.port) not in kept.get(ref.service, {}):
                kept.setdefault(ref.service, {})[(ref.address, ref.port)] = rec
                durations.append(self.durations[rec.slot])
                rec.slot = len(durations) - 1  # (readers start over: generation)
        self._records, self.durations = kept, durations
        for changed in self._changes:
            changed.clear()
        for moved in self._moves:
            moved.clear()
        self.generation += 1

    def __len__(self) -> int:
        """How many reals have statistics."""
        return sum(len(reals) for reals in self._records.values())
