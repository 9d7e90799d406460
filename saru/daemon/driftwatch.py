"""The drift watcher: is the kernel's table still what Saru applied? If not, say so and repair it.

The daemon owns one ``DriftWatcher``. ``check(found_by)`` asks the data plane to ``verify()``
(nftables: one netlink round trip while the ruleset generation has not moved, a listing of Saru's
tables when it has; IPVS: a dump of the table; the proxy: nothing can change its table behind its
back, so nothing is checked), compares the result with ``saru.drift`` for the services the daemon
owns, and on a difference:

* logs a warning and emits a ``TableDrift`` event naming what differed (``events`` in status);
* repairs at once: ``Dataplane.repair(ops)`` brings the kernel back to what was applied (nftables
  rebuilds all of Saru's objects in one transaction), then the daemon is asked to reconcile
  (``on_drift``) so that the table follows the reals' health from there;
* counts it: ``snapshot()`` is status's ``drift`` section (count, last time and detail).

Checks run on ``saru status``, on ``saru plan`` (the control ``table`` command), on every reload,
and every ``interval`` seconds (0: only on those commands). A check holds the daemon's reconcile
lock, so it never interleaves with a table update.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection
from typing import TypedDict

from saru.dataplane.base import Dataplane, DataplaneError
from saru.drift import describe, drift, summary
from saru.events import Event, TableDrift
from saru.model import ServiceKey

LOGGER = logging.getLogger("saru")
#: default seconds between two periodic checks (``saru run --drift-interval``)
DEFAULT_INTERVAL = 2.0


class DriftSnapshot(TypedDict):
    """Status's ``drift`` section."""

    checked: bool
    interval: float | None
    count: int
    last_at: float | None
    last_detail: str | None
    last_error: str | None
    check_error: str | None
    checks: int
    last_check_at: float | None
    last_check: str | None


class DriftWatcher:
    """Checks one data plane against the kernel (see the module docstring)."""

    def __init__(self, dataplane: Dataplane, owned: Callable[[], Collection[ServiceKey]], lock: asyncio.Lock,
                 emit: Callable[[Event], None], on_drift: Callable[[], None],
                 interval: float = DEFAULT_INTERVAL) -> None:
        self.dataplane = dataplane
        self._owned = owned
        self._lock = lock
        self._emit = emit
        self._on_drift = on_drift
        self.interval = interval
        self.count = 0
        self.last_at: float | None = None
        self.last_detail: str | None = None
        self.last_error: str | None = None  # why the last repair failed (None: it worked)
        self.check_error: str | None = None  # why checking fails right now (None: it works)
        self.checks = 0
        self.last_check_at: float | None = None
        self.last_check_how = ""
        self._closed = False
        self._running: set[asyncio.Task[TableDrift | None]] = set()

    @property
    def active(self) -> bool:
        """Whether the plane's table can change behind Saru's back at all (not for the proxy)."""
        return type(self.dataplane).verify is not Dataplane.verify

    async def run(self) -> None:
        """The periodic check (returns at once when ``interval`` is 0 or the plane needs none)."""
        if self.interval <= 0 or not self.active:
            return
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check("periodic check")
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here must not stop the checks for good
                LOGGER.exception("drift check failed")

    async def check(self, found_by: str) -> TableDrift | None:
        """Verify the plane; report and repair a drift (returns its event), else None. A cancelled
        caller (the daemon stopping) does not cut a repair short: it runs to its end in a task."""
        if self._closed:
            return None
        task = asyncio.ensure_future(self._locked_check(found_by))
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved even if nobody waits
        return await asyncio.shield(task)

    async def close(self) -> None:
        """No more checks; wait for the one under way (before the daemon cleans and closes the plane)."""
        self._closed = True
        if self._running:
            await asyncio.wait(self._running)

    async def _locked_check(self, found_by: str) -> TableDrift | None:
        async with self._lock:
            if self._closed:
                return None  # the daemon is stopping: nothing to repair any more
            event = await self._check(found_by)
        if event is not None:
            self._emit(event)
            self._on_drift()
        return event

    async def _check(self, found_by: str) -> TableDrift | None:
        try:
            found = await self.dataplane.verify()
        except DataplaneError as exc:
            if str(exc) != self.check_error:  # once per distinct failure, not every period
                LOGGER.warning("cannot check the %s table against the kernel: %s",
                               self.dataplane.capabilities.name, exc)
            self.check_error = str(exc)
            return None
        self.check_error = None
        self.checks += 1
        self.last_check_at = time.time()
        if found is None:
            return None
        self.last_check_how = found.how
        owned = set(self._owned())
        lines: list[str] = []
        for applied, kernel in found.earlier:  # seen by a table update, which repaired it
            lines += [f"{line} (repaired by a table update)"
                      for line in describe(drift(applied, kernel, owned), applied, kernel)]
        ops = drift(found.applied, found.kernel, owned)
        lines += describe(ops, found.applied, found.kernel) + list(found.problems)
        if not lines:
            return None
        repaired, error = True, ""
        if ops or found.problems:
            try:
                await self.dataplane.repair(ops)
            except DataplaneError as exc:
                repaired, error = False, str(exc)
        detail = summary(lines)
        if not repaired and (detail, error) == (self.last_detail, self.last_error):
            return None  # the same drift, the same failure: said already (status keeps showing it)
        self.count += 1
        self.last_at = time.time()
        self.last_detail = detail
        self.last_error = error or None
        return TableDrift(dataplane=self.dataplane.capabilities.name, found_by=found_by,
                          detail=self.last_detail, repaired=repaired, error=error)

    def snapshot(self) -> DriftSnapshot:
        """Status's ``drift`` section."""
        return {
            "checked": self.active,
            "interval": self.interval if self.active else None,
            "count": self.count,
            "last_at": self.last_at,
            "last_detail": self.last_detail,
            "last_error": self.last_error,
            "check_error": self.check_error,
            "checks": self.checks,
            "last_check_at": self.last_check_at,
            "last_check": self.last_check_how or None,
        }
