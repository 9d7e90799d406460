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

**Incremental planning.** A reconciliation that only health verdicts asked for (``health_changed``,
the monitor's listener) re-plans just the virtuals whose reals changed — their verdict or the time
their checks brought them down, the panic rule's input — and diffs only those services: at 100,000
reals one verdict costs a virtual's plan, not the whole table's. Every other cause (``mark_dirty``:
a reload, a drift repair, an override, the HA gate, a retry) and any doubt — a different config
object, other overrides, the gate closed, the last apply failed, no earlier plan — plans the whole
table, so the services left out were planned from the same inputs by the previous reconciliation
and stand as it applied them. ``plan_changed`` is the pure part; the unit tests check it against the
whole plan after every step of random verdict sequences.
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
from saru.model import (
    Config,
    DelService,
    Op,
    Overrides,
    RealRef,
    ServiceKey,
    Table,
    VirtualConfig,
    format_hostport,
)
from saru.planner import (
    NO_OVERRIDES,
    Health,
    desired_table,
    fallback_active,
    panic_counts,
    panic_state,
    plan_service,
)

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


@dataclass(frozen=True)
class Basis:
    """What a successful reconciliation planned from: an incremental one needs the same config and
    overrides, and re-plans the virtuals whose reals' verdicts or failure times differ."""

    config: Config
    health: Mapping[RealRef, bool | None]
    failed: Mapping[RealRef, float]
    overrides: Overrides
    present: frozenset[ServiceKey]  # the services the table had when it was read (panic's "known")


def changed_verdicts(before: Mapping[RealRef, bool | None], health: Mapping[RealRef, bool | None]) -> set[ServiceKey]:
    """The virtuals with a real whose verdict differs between the two (or that is in one only)."""
    if len(before) == len(health):  # the monitor lists its reals in one order: no RealRef hashed
        changed: set[ServiceKey] = set()
        for (ref, up), (was_ref, was_up) in zip(health.items(), before.items(), strict=True):
            if ref is not was_ref:
                break
            if up != was_up:
                changed.add(ref.service)
        else:
            return changed
    changed = {ref.service for ref in before.keys() ^ health.keys()}
    changed.update(ref.service for ref, up in health.items() if ref in before and before[ref] != up)
    return changed


def changed_virtuals(basis: Basis, health: Mapping[RealRef, bool | None],
                     failed: Mapping[RealRef, float], present: frozenset[ServiceKey]) -> set[ServiceKey]:
    """The virtuals with a real whose verdict or failure time differs from ``basis`` (a real that
    appeared or disappeared counts: that takes a new config, which plans everything anyway), and
    those that entered or left the table since it was read then (the panic rule asks whether a
    virtual has a last known set)."""
    changed = changed_verdicts(basis.health, health)
    changed.update(present ^ basis.present)
    old_failed = basis.failed
    changed.update(ref.service for ref, t in failed.items() if old_failed.get(ref) != t)
    changed.update(ref.service for ref in old_failed.keys() - failed.keys())
    return changed


def plan_changed(virtuals: Sequence[VirtualConfig], health: Health, current: Table, *,
                 kernel_ports: bool, overrides: Overrides, held: frozenset[RealRef]) -> tuple[Table, Table]:
    """``(before, after)`` for ``virtuals`` only: their services in ``current`` and as planned now
    (``desired_table``'s rules, virtual by virtual); ``diff(before, after)`` are the ops."""
    before = Table({v.key: current.services[v.key] for v in virtuals if v.key in current.services})
    after = Table.of(plan_service(v, health, current.services.get(v.key), kernel_ports, overrides, held)
                     for v in virtuals)
    return before, after


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
        self._whole = True  # a cause other than health verdicts marked the table dirty: plan it all
        self._basis: Basis | None = None  # what the last successful reconciliation planned from
        self.incremental_runs = 0  # reconciliations that re-planned only the virtuals that changed

    @property
    def rewrite(self) -> bool:
        """Whether the plane forces gate/ipip reals onto the virtual's port (IPVS, nftables)."""
        return self.dataplane.capabilities.rewrites_gate_ports

    def gated(self) -> bool:
        """Whether the owned services must be out of the table right now (an HA backup without
        warm standby): the plan is then the empty table."""
        return self._gated()

    def mark_dirty(self) -> None:
        """Reconcile the whole table soon (a reload, a drift repair, an override, a retry…)."""
        self._whole = True
        self.dirty.set()

    def health_changed(self) -> None:
        """Reconcile soon for new health verdicts only (the monitor's listener): the reconciler task
        re-plans just the virtuals whose reals changed, unless something else asked for more."""
        self.dirty.set()

    def retry_now(self) -> None:
        """Reconcile at once, cutting a retry's back-off short (after a reload)."""
        self._whole = True
        self.dirty.set()
        self._retry_now.set()

    async def run(self) -> None:
        """The reconciler task: one reconciliation per dirty mark, failures retried."""
        while True:
            await self.dirty.wait()
            self.dirty.clear()
            incremental, self._whole = not self._whole, False
            try:
                await self.reconcile(incremental=incremental)
            except DataplaneError as exc:
                self._whole = True
                delay = self.failed(exc)
                self._retry_now.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._retry_now.wait(), delay)
                self.dirty.set()

    async def reconcile(self, incremental: bool = False) -> None:
        """Bring the data plane in line with config + health (minimal ops, narrated). ``incremental``:
        only health verdicts changed since the last reconciliation — re-plan just the virtuals they
        touch when nothing else could have changed (see the module docstring)."""
        async with self.lock:
            config = self._loaded.config
            current = await self.dataplane.read()
            overrides, health, failed = self._overrides(), self._health(), self._failed()
            gated, present = self.gated(), frozenset(current.services)
            basis = self._basis
            self._basis = None  # until this one succeeds
            if (incremental and basis is not None and not gated and self.apply_error is None
                    and basis.config is config and basis.overrides == overrides):
                scope = changed_virtuals(basis, health, failed, present)
                changed = tuple(v for v in config.virtuals if v.key in scope)
                held = self._update_panic(changed, current, overrides, failed, partial=True)
                before, desired = plan_changed(changed, health, current, kernel_ports=self.rewrite,
                                               overrides=overrides, held=held)
                ops = diff(before, desired, owned=scope)
                self.incremental_runs += 1
            else:
                before = current
                held = self._update_panic(config.virtuals, current, overrides, failed)
                desired = desired_table(config, health, current, kernel_ports=self.rewrite,
                                        overrides=overrides, held=held)
                if gated:
                    desired = Table.of([])
                ops = diff(current, desired, owned=self._loaded.owned)
            if ops:
                await self._timed_apply(ops)
            # a closed gate planned the empty table: the next reconciliation must plan it all again
            self._basis = None if gated else Basis(config, health, failed, overrides, present)
            self._succeeded()
            if not ops:
                return
            self._loaded.own_config()
            for change in narrate(ops, current, config):
                self._journal.emit(change)
            self._fallback_commands(config, before, desired)

    def _update_panic(self, virtuals: Sequence[VirtualConfig], current: Table, overrides: Overrides,
                      failed: Mapping[RealRef, float], partial: bool = False) -> frozenset[RealRef]:
        """Enter or leave panic mode per virtual (``saru.planner.panic_start``), saying so; the reals
        whose failure the panics ignore. ``partial``: ``virtuals`` are only those an incremental
        reconciliation re-plans; the others' panics stand (their reals' failures did not change)."""
        threshold = self._loaded.settings.director.panic_threshold
        panic, held = panic_state(virtuals, failed, threshold, self.panic, current, overrides)
        for virtual in virtuals:
            if (virtual.key in panic) != (virtual.key in self.panic):
                counted, times = panic_counts(virtual, failed, overrides)
                self._journal.emit(PanicMode(virtual=virtual.key, entered=virtual.key in panic, down=len(times),
                                             counted=counted, threshold=threshold))
        if partial:
            planned = {v.key for v in virtuals}
            panic.update((key, started) for key, started in self.panic.items() if key not in planned)
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
