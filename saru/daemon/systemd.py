"""The daemon's side of systemd's notify protocol: ready, reloading, stopping, a status line, watchdog.

``SystemdLink`` owns the one ``saru.sdnotify.Notifier`` of the process (taken from
``NOTIFY_SOCKET`` at construction and removed from the environment, so external checks, callbacks
and notify scripts do not inherit it). Without ``NOTIFY_SOCKET`` every call is a no-op.

* ``READY=1`` only once the first check pass is done, the first table applied and — with ``[ha]`` —
  the HA node started (the lifecycle calls ``ready()`` there and nowhere else);
* ``RELOADING=1`` + ``MONOTONIC_USEC`` when a reload starts, ``READY=1`` when it has ended (applied
  or refused: either way the daemon runs a config), so ``Type=notify-reload`` works too;
* ``STOPPING=1`` first thing on the way out;
* ``STATUS=`` a one-line summary (``MASTER, 2 virtuals, 4/4 reals up, nft``), sent when it changes;
* ``WATCHDOG=1`` every half ``WatchdogSec=`` — but only while the event loop runs (the pinging task
  is on it) **and** the monitor makes progress: some check has completed within ``stall_limit``
  (a few check intervals + timeouts of the config). A wedged monitor stops the pings and systemd
  restarts the daemon. A config with nothing to check (every real ``checktype=on/off``) counts as
  progress.

``status_line`` is pure, for tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping

from saru.model import Config, RealRef
from saru.sdnotify import Notifier, ping_period, watchdog_interval

LOGGER = logging.getLogger("saru")
STATUS_PERIOD = 1.0  # how often the status line is recomputed (sent only when it changed)


def status_line(ha_state: str | None, virtuals: int, health: Mapping[RealRef, bool | None], plane: str,
                ready: bool) -> str:
    """``MASTER, 2 virtuals, 4/4 reals up, nft`` (``starting`` until the first table is in)."""
    up = sum(1 for verdict in health.values() if verdict)
    parts = [ha_state.upper()] if ha_state else []
    parts += [f"{virtuals} virtual{'s' if virtuals != 1 else ''}", f"{up}/{len(health)} reals up", plane]
    text = ", ".join(parts)
    return text if ready else f"starting: {text}"


def stall_limit(config: Config) -> float | None:
    """How long without any completed check means the monitor is wedged; None: nothing is checked."""
    checked = [v for v in config.virtuals if v.checktype not in ("on", "off") and v.reals]
    if not checked:
        return None
    slowest = max(v.checkinterval + max(v.checktimeout, v.negotiatetimeout) for v in checked)
    return 3 * slowest + 10.0


class SystemdLink:
    """What the lifecycle tells systemd; see the module docstring."""

    def __init__(self, notifier: Notifier | None = None, interval: float | None = None) -> None:
        if notifier is None:
            interval = watchdog_interval()  # read before the environment is cleared
            notifier = Notifier.from_environment(unset=True)
        self.notifier = notifier
        self.watchdog_interval = interval
        self._last_progress = time.monotonic()
        self._last_status = ""
        self._tasks: list[asyncio.Task[None]] = []

    def progress(self, *_args: object) -> None:
        """A check completed (a monitor result listener)."""
        self._last_progress = time.monotonic()

    def start(self, summary: Callable[[], str], limit: Callable[[], float | None]) -> None:
        """Start the status and watchdog tasks (``summary``: the status line; ``limit``: stall_limit)."""
        if self.notifier.enabled:  # (the line counts every real: at 100,000 reals ~70 ms a second for nobody)
            self._tasks.append(asyncio.create_task(self._status_loop(summary), name="systemd-status"))
        if self.watchdog_interval:
            self._tasks.append(asyncio.create_task(self._watchdog_loop(limit), name="systemd-watchdog"))

    def ready(self, status: str) -> None:
        self._last_status = status
        self.notifier.ready(status=status)

    def reloading(self) -> None:
        self.notifier.reloading()

    def reloaded(self) -> None:
        self.notifier.ready()

    def stopping(self) -> None:
        self.notifier.stopping()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    def healthy(self, limit: float | None, now: float | None = None) -> bool:
        """Whether the monitor made progress recently enough for a watchdog ping."""
        if limit is None:
            return True
        now = time.monotonic() if now is None else now
        return now - self._last_progress <= limit

    async def _status_loop(self, summary: Callable[[], str]) -> None:
        while True:
            await asyncio.sleep(STATUS_PERIOD)
            text = summary()
            if text != self._last_status:
                self._last_status = text
                self.notifier.status(text)

    async def _watchdog_loop(self, limit: Callable[[], float | None]) -> None:
        assert self.watchdog_interval is not None
        period = ping_period(self.watchdog_interval)
        warned = False
        while True:
            if self.healthy(limit()):
                self.notifier.watchdog()
                warned = False
            elif not warned:
                LOGGER.error("no health check has completed for %.0fs: the monitor looks wedged; "
                             "withholding the systemd watchdog ping", time.monotonic() - self._last_progress)
                warned = True
            await asyncio.sleep(period)
