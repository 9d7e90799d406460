"""The reconciler: brings the data plane in line with config + health, one change at a time.

Health verdicts (and reloads, drift repairs, HA transitions, operator overrides) mark the table
dirty; one task then reads the plane's table, plans the desired one (``saru.planner``, with the
operator's overrides), diffs (``saru.diff``), applies
the ops in one batch and narrates them in ldirectord's words (``saru.narrate``). A failed apply is
recorded (``apply_error``, shown by ``status``) and retried: every ``RETRY_DELAY`` until the daemon
is first ready — a failure lasting ``start_timeout`` seconds then stops it with exit status 1 — and
with back-off up to ``RETRY_MAX`` afterwards, never fatal. One lock (``lock``) serialises every
table change: reconciliations, manual ``saru ipvsadm`` batches, drift repairs and the cleanstop.
Every apply of a reconciliation or a manual batch is timed into ``apply_times`` (failed ones too),
the histogram ``saru_dataplane_apply_duration_seconds`` shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypedDict

from saru.daemon.histogram import Histogram
from saru.daemon.hooks import HookRunner
from saru.daemon.journal import Journal
from saru.daemon.state import Life, Loaded
from saru.dataplane.base import Dataplane, DataplaneError
from saru.diff import apply_ops, diff
from saru.events import DaemonEvent, PanicMode, narrate
from saru.model import Config, DelService, Op, Overrides, RealRef, ServiceKey, Table, format_hostport
from saru.planner import NO_OVERRIDES, Health, desired_table, fallback_active, panic_counts, panic_state

LOGGER = logging.getLogger("saru")
RETRY_DELAY = 1.0  # first retry of a failed apply; doubled at each failure once ready, up to RETRY_MAX
RETRY_MAX = 30.0


class ApplyErrorDoc(TypedDict):
    """``status``'s ``apply_error``."""

    message: str
    since: float
    at: float
    attempts: int


@dataclass
class ApplyError:
    """The table could not be brought in line with health: the latest failure of an unbroken run."""

    message: str
    since: float  # wall clock of the first failure of the run
    at: float  # wall clock of the latest failure
    attempts: int = 1
    since_monotonic: float = 0.0

    def to_dict(self) -> ApplyErrorDoc:
        return {"message": self.message, "since": self.since, "at": self.at, "attempts": self.attempts}


def retry_delay(attempts: int, ready: bool) -> float:
    """Seconds before the next attempt after ``attempts`` failures in a row."""
    if not ready:
        return RETRY_DELAY
    return min(RETRY_MAX, RETRY_DELAY * 2 ** min(attempts - 1, 16))


def fallback_hooks(config: Config, before: Table, after: Table, rewrite: bool) -> list[tuple[str, ...]]:
    """``fallbackcommand`` invocations (argv tail: command, start|stop, target, protocol) for the
    virtuals whose fallback server entered or left the table between ``before`` and ``after``."""
    was = fallback_active(config, before, rewrite)
    now = fallback_active(config, after, rewrite)
    calls: list[tuple[str, ...]] = []
    for v in config.virtuals:
        command = v.fallbackcommand
        if not command or was.get(v.key) == now.get(v.key):
            continue
        action = "start" if now.get(v.key) else "stop"
        target = f"{v.fwmark}:0" if v.protocol == "fwm" else format_hostport(v.address, v.port)
        calls.append((command, action, target, v.protocol))
    return calls


class Reconciler:
    """Keeps one data plane in line with config + health (see the module docstring).

    ``health`` returns every real's verdict (the monitor's); ``gated`` says whether the owned services
    must be out of the table right now (an HA backup without warm standby)."""

    def __init__(self, dataplane: Dataplane, health: Callable[[], Health], loaded: Loaded, life: Life,
                 journal: Journal, hooks: HookRunner, *, gated: Callable[[], bool] = lambda: False,
                 overrides: Callable[[], Overrides] = lambda: NO_OVERRIDES,
                 failed: Callable[[], Mapping[RealRef, float]] = dict,
                 start_timeout: float = 0.0, start_timeout_hint: str = "") -> None:
        self.dataplane = dataplane
        self._health = health
        self._overrides = overrides
        self._failed = failed
        #: the virtuals in panic mode (``panic_threshold``) and when it started (monotonic)
        self.panic: dict[ServiceKey, float] = {}
        self._loaded = loaded
        self._life = life
        self._journal = journal
        self._hooks = hooks
        self._gated = gated
        self.start_timeout = start_timeout
        self.start_timeout_hint = start_timeout_hint
        self.apply_error: ApplyError | None = None
        self.apply_times = Histogram()  # seconds per data-plane apply
        self.ops_applied = 0  # table operations handed to the plane (successful batches), for ``runtime``
        self.dirty = asyncio.Event()
        self.applied = asyncio.Event()  # set by every successful reconciliation
        self.listeners: list[Callable[[], None]] = []  # called after every reconciliation, failed or not
        self.lock = asyncio.Lock()
        self._retry_now = asyncio.Event()  # a reload cuts a retry back-off short

    @property
    def rewrite(self) -> bool:
        """Whether the plane forces gate/ipip reals onto the virtual's port (IPVS, nftables)."""
        return self.dataplane.capabilities.rewrites_gate_ports

    def gated(self) -> bool:
        """Whether the owned services must be out of the table right now (an HA backup without
        warm standby): the plan is then the empty table."""
        return self._gated()

    def mark_dirty(self) -> None:
        self.dirty.set()

    def retry_now(self) -> None:
        """Reconcile at once, cutting a retry's back-off short (after a reload)."""
        self.dirty.set()
        self._retry_now.set()

    async def run(self) -> None:
        """The reconciler task: one reconciliation per dirty mark, failures retried."""
        while True:
            await self.dirty.wait()
            self.dirty.clear()
            try:
                await self.reconcile()
            except DataplaneError as exc:
                delay = self.failed(exc)
                self._retry_now.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._retry_now.wait(), delay)
                self.dirty.set()

    async def reconcile(self) -> None:
        """Bring the data plane in line with config + health (minimal ops, narrated)."""
        async with self.lock:
            config = self._loaded.config
            current = await self.dataplane.read()
            overrides = self._overrides()
            held = self._update_panic(config, current, overrides)
            desired = desired_table(config, self._health(), current, kernel_ports=self.rewrite,
                                    overrides=overrides, held=held)
            if self.gated():
                desired = Table.of([])
            ops = diff(current, desired, owned=self._loaded.owned)
            if not ops:
                self._succeeded()
                return
            await self._timed_apply(ops)
            self._succeeded()
            self._loaded.own_config()
            for change in narrate(ops, current, config):
                self._journal.emit(change)
            self._fallback_commands(config, current, desired)

    def _update_panic(self, config: Config, current: Table, overrides: Overrides) -> frozenset[RealRef]:
        """Enter or leave panic mode per virtual (``saru.planner.panic_start``), saying so; the reals
        whose failure the panics ignore."""
        threshold = self._loaded.settings.director.panic_threshold
        failed = self._failed()
        panic, held = panic_state(config, failed, threshold, self.panic, current, overrides)
        for virtual in config.virtuals:
            if (virtual.key in panic) != (virtual.key in self.panic):
                counted, times = panic_counts(virtual, failed, overrides)
                self._journal.emit(PanicMode(virtual=virtual.key, entered=virtual.key in panic, down=len(times),
                                             counted=counted, threshold=threshold))
        self.panic = panic
        return held

    async def reconcile_or_retry(self) -> None:
        """``reconcile()``; on failure record it, leave the retry to the reconciler task, and raise."""
        try:
            await self.reconcile()
        except DataplaneError as exc:
            self.failed(exc)
            self.dirty.set()
            raise

    def failed(self, exc: DataplaneError) -> float:
        """Record a failed apply (``status``, log, events); return the delay before the next attempt.

        Until the daemon is first ready, retries come every RETRY_DELAY and a failure lasting
        ``start_timeout`` seconds stops the daemon with exit status 1 (systemd and ``saru-ldirectord
        start`` see it); once ready, retries back off up to RETRY_MAX and never stop the daemon."""
        now, mono = time.time(), time.monotonic()
        self._tell()
        error = self.apply_error
        if error is None:
            error = self.apply_error = ApplyError(str(exc), since=now, at=now, since_monotonic=mono)
            self._journal.record(DaemonEvent(f"Cannot program the table: {exc}"))  # logged just below
        else:
            error.message, error.at, error.attempts = str(exc), now, error.attempts + 1
        ready = self._life.ready.is_set()
        timeout = self.start_timeout
        if not ready and timeout > 0 and mono - error.since_monotonic >= timeout:
            if not self._life.stopping.is_set():
                LOGGER.error("could not program the table within %gs (start timeout, %d attempts): %s; "
                             "stopping (%s)", timeout, error.attempts, exc, self.start_timeout_hint)
                self._life.stop(1)
            return RETRY_DELAY
        delay = retry_delay(error.attempts, ready)
        LOGGER.error("applying the table failed (attempt %d), retrying in %gs: %s", error.attempts, delay, exc)
        return delay

    def _tell(self) -> None:
        for listener in list(self.listeners):
            listener()

    def _succeeded(self) -> None:
        self.applied.set()
        self._tell()
        error, self.apply_error = self.apply_error, None
        if error is not None:
            self._journal.emit(DaemonEvent(f"Table applied again after {error.attempts} failed attempts "
                                           f"({time.time() - error.since:.0f}s)"))

    async def apply_manual(self, ops: Sequence[Op]) -> int:
        """A manual batch (``saru ipvsadm``): checked against the table (``OpError``), applied as one
        batch (``DataplaneError``) and logged; returns how many ops were applied."""
        async with self.lock:
            current = await self.dataplane.read()
            apply_ops(current, ops)
            await self._timed_apply(ops)
            for change in narrate(ops, current, self._loaded.config):
                self._journal.emit(DaemonEvent(f"manual change (saru ipvsadm): {change.message()}"))
        return len(ops)

    async def _timed_apply(self, ops: Sequence[Op]) -> None:
        start = time.perf_counter()
        try:
            await self.dataplane.apply(ops)
            self.ops_applied += len(ops)
        finally:
            self.apply_times.observe(time.perf_counter() - start)

    async def cleanstop(self) -> None:
        """On the way out: remove the virtual services whose ``cleanstop`` is yes (errors logged)."""
        config = self._loaded.config
        async with self.lock:
            try:
                current = await self.dataplane.read()
                ops = [DelService(v.key) for v in config.virtuals if v.cleanstop and v.key in current.services]
                if ops:
                    await self.dataplane.apply(ops)
                    for change in narrate(ops, current, config):
                        self._journal.emit(change)
                    # the fallback leaves with its virtual: tell fallbackcommand (ldirectord issue #750)
                    self._fallback_commands(config, current, await self.dataplane.read())
            except DataplaneError as exc:
                LOGGER.error("cleanstop failed: %s", exc)

    def _fallback_commands(self, config: Config, before: Table, after: Table) -> None:
        for command, *args in fallback_hooks(config, before, after, self.rewrite):
            self._hooks.run_in_order(command, *args)
