"""The health monitor (``Monitor``): runs every distinct check once per interval, keeps each real's verdict.

* **Deduplication**: reals whose ``CheckSpec`` is equal (the same real in several virtuals) share
  one check group; its result is applied to every member, each with its own ``failurecount`` and
  maintenance file. A group's interval is the smallest ``checkinterval`` of its virtuals.
* **Scheduling**: one asyncio task per group, periods measured start-to-start, first check at once,
  then on the group's own phase of the interval (``saru.monitor.spread``): the groups' checks are
  spread evenly over the interval, not run in one burst, so the event loop never holds a long queue
  and timeouts fire on time. Checks run concurrently under hard timeouts (``run_check``), so a hung
  server delays nobody else.
* **Verdicts**: each result goes through the real's hysteresis (``saru.monitor.health.step``); a
  maintenance file (``saru.monitor.maintenance``) forces the real down at once, without a check.
* **Reload**: ``configure`` keeps the state of every real whose check did not change.
* **Listeners**: ``add_listener`` (any verdict changed) and ``add_result_listener`` (every result of
  every real, e.g. for ``monitorfile``).
* **Local faults**: a result with ``local_fault`` set (the director could not check: no file
  descriptor, no route, no resolver …, ``saru.checks.base.local_fault``) does not touch the real's
  verdict or hysteresis; it raises the local-fault alarm (``LocalFault``, once and then as a
  reminder, ``LocalFaultCleared`` when every check runs again) and counts in ``local_fault_counts``.
* **Persistent failures**: a real that stays down is reminded of (``RealStillDown``) when its
  failure changes and at most once a minute (``saru.events.throttle``), not once per check.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from saru.checks.base import run_check
from saru.checks.spec import check_spec_for
from saru.events import (
    Event,
    FailuresReset,
    LocalFault,
    LocalFaultCleared,
    RealDown,
    RealStillDown,
    RealUp,
    SoftFailure,
)
from saru.events.throttle import Kind, Throttle, default_interval, lasting
from saru.model import CheckResult, CheckSpec, Config, RealRef
from saru.monitor.health import Change, HealthState, force_down, step
from saru.monitor.maintenance import MAINTENANCE_MESSAGE, NameCache, address_in_maintenance, in_maintenance
from saru.monitor.spread import WAKEUP_GRAIN, next_on_grid, phase, slot

log = logging.getLogger(__name__)


@dataclass
class RealHealth:
    """Snapshot of one real's health."""

    up: bool | None  # None = not checked yet (or checktype off)
    last_result: CheckResult | None
    last_checked: float | None  # wall-clock time.time()
    failures: int  # consecutive failures while up
    successes: int  # consecutive successes while down
    maintenance: bool
    checktype: str
    local_fault: str = ""  # the reason its last check could not run, "" if it ran
    failed_since: float | None = None  # monotonic time its checks brought it down (None: not down by checks)


@dataclass
class _Real:
    spec: CheckSpec
    failurecount: int
    state: HealthState = field(default_factory=HealthState)
    last_result: CheckResult | None = None
    last_checked: float | None = None
    maintenance: bool = False
    fresh: bool = False  # next result is taken as is (its check changed on reload)
    local_fault: str = ""  # reason the last check could not run (the verdict was kept)
    failed_since: float | None = None  # monotonic time the checks brought it down


@dataclass
class _Group:
    """One distinct check and the reals that share it."""

    spec: CheckSpec
    interval: float
    members: set[RealRef]
    #: (ref, its state) of every member, refreshed by ``configure`` (the hot path does no hashing)
    reals: tuple[tuple[RealRef, _Real], ...] = ()
    task: asyncio.Task[None] | None = None
    first_done: asyncio.Event | None = None
    checking: bool = False
    due: float = 0.0  # loop time the current or next check is due (start-to-start schedule)
    index: int = 0  # its place in the spread (``saru.monitor.spread.phase``)
    offset: float = 0.0  # its checks are due at loop times offset + n * interval (after the first)
    connects: int = 1 << 30  # combined: successful connects since the last negotiate (start: negotiate)


Listener = Callable[[], None]
#: ``callback(real, spec, result, up)``: every check result of every real (``up``: its verdict after it)
ResultListener = Callable[[RealRef, CheckSpec, CheckResult, bool | None], None]


#: checks started per turn of the event loop at most: when the loop is late (a starved or saturated
#: process), the groups due meanwhile start over several turns, not in one long turn that would
#: hold up the timeouts and the results due meanwhile (the checks then run less often instead)
STARTS_PER_TURN = 256


class _Wakeups:
    """One timer per wake-up slot (``WAKEUP_GRAIN``): the groups due in the same slot are woken by
    one timer, not one each, and at most ``STARTS_PER_TURN`` of the groups due are woken per turn of
    the loop (first due, first woken)."""

    def __init__(self) -> None:
        self._due: dict[int, list[asyncio.Future[None]]] = {}
        self._ready: deque[asyncio.Future[None]] = deque()
        self._pumping = False

    async def sleep_until(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        """Sleep until loop time ``when``, give or take half a slot (cancelling the sleeper leaves
        the others asleep)."""
        number = slot(when)
        waiters = self._due.get(number)
        if waiters is None:
            waiters = self._due[number] = []
            loop.call_at(number * WAKEUP_GRAIN, self._fire, number)
        future: asyncio.Future[None] = loop.create_future()
        waiters.append(future)
        await future

    def _fire(self, number: int) -> None:
        self._ready.extend(self._due.pop(number, ()))
        if not self._pumping:
            self._pump()

    def _pump(self) -> None:
        ready = self._ready
        for _ in range(min(len(ready), STARTS_PER_TURN)):
            future = ready.popleft()
            if not future.done():
                future.set_result(None)
        self._pumping = bool(ready)
        if ready:  # the rest on the next turn, after what this one made ready
            ready[0].get_loop().call_soon(self._pump)


class Monitor:
    """Owns the check tasks and every real's health; see the module docstring."""

    def __init__(
        self, emit: Callable[[Event], None], maintenance_dir: str | None = None, rise: int = 1
    ) -> None:
        self._emit = emit
        self._default_maintenance_dir = maintenance_dir
        self._maintenance_dir = maintenance_dir
        self.rise = max(1, rise)
        self._reals: dict[RealRef, _Real] = {}
        self._groups: dict[CheckSpec, _Group] = {}
        self._listeners: list[Listener] = []
        self._result_listeners: list[ResultListener] = []
        self._dying: set[asyncio.Task[None]] = set()
        self._names = NameCache()
        self._wakeups = _Wakeups()
        self._spread = 0  # groups made so far (the next one's place in the spread)
        self.checks_run = 0  # checks executed since start (for metrics and the benchmark)
        interval = default_interval()
        self._still_down = Throttle(interval)  # by real
        self._local = Throttle(interval)  # by reason
        #: checks that could not run for a local reason since start, by reason (the metric)
        self.local_fault_counts: dict[str, int] = {}
        self._faulty: set[RealRef] = set()  # the reals whose last check could not run (local_fault set)

    # ---- configuration -------------------------------------------------------------------------

    def configure(self, config: Config) -> None:
        """(Re)configure from inside the running loop; reals whose check is unchanged keep their state."""
        self._maintenance_dir = config.globals.maintenancedir or self._default_maintenance_dir
        wanted: dict[CheckSpec, tuple[float, set[RealRef]]] = {}
        reals: dict[RealRef, tuple[CheckSpec, int]] = {}
        for virtual in config.virtuals:
            for real in virtual.reals:
                spec = check_spec_for(virtual, real)
                ref = RealRef(virtual.key, real.address, real.port)
                reals[ref] = (spec, virtual.failurecount)
                if spec.checktype == "off":
                    continue
                interval, members = wanted.get(spec, (virtual.checkinterval, set()))
                members.add(ref)
                wanted[spec] = (min(interval, virtual.checkinterval), members)

        changed = self._update_reals(reals)
        self._still_down.forget(set(self._reals))
        for spec in list(self._groups):
            if spec not in wanted:
                self._stop_group(self._groups.pop(spec))
        now = asyncio.get_running_loop().time()  # the first checks of new groups: at once
        for spec, (interval, members) in wanted.items():
            group = self._update_group(spec, max(interval, 0.01), members, now)
            for ref in members:  # one spec object per group: identity checks in the hot path
                self._reals[ref].spec = group.spec
            group.reals = tuple((ref, self._reals[ref]) for ref in members)
        if changed:
            self._notify()

    def _update_reals(self, reals: dict[RealRef, tuple[CheckSpec, int]]) -> bool:
        changed = False
        for ref in list(self._reals):
            if ref not in reals:
                del self._reals[ref]
                self._faulty.discard(ref)
        for ref, (spec, failurecount) in reals.items():
            current = self._reals.get(ref)
            if current is None:
                current = self._reals[ref] = _Real(spec, failurecount)
            elif current.spec != spec:
                current.spec = spec
                current.state = HealthState(up=current.state.up)
                current.fresh = True
            current.failurecount = failurecount
            if spec.checktype == "off" and current.state.up is not None:
                current.state, current.fresh = HealthState(), False
                changed = True
            elif spec.checktype == "on" and current.state.up is not True and not self._rip_maintenance(ref):
                current.state, current.fresh = HealthState(up=True), False
                current.last_result = CheckResult(ok=True, message="checktype on")
                current.last_checked = time.time()
                self._send(RealUp(real=ref, detail="checktype on"))
                changed = True
        return changed

    def _rip_maintenance(self, ref: RealRef) -> bool:
        directory = self._maintenance_dir
        if not directory:
            return False
        return address_in_maintenance(directory, ref.address, ref.port)

    def _update_group(self, spec: CheckSpec, interval: float, members: set[RealRef], now: float) -> _Group:
        needs_task = spec.checktype != "on" or bool(self._maintenance_dir)
        group = self._groups.get(spec)
        if group is None:
            group = self._groups[spec] = _Group(spec, interval, members, index=self._spread)
            self._spread += 1
        joined = members - group.members
        old_interval = group.interval
        group.members, group.interval = members, interval
        group.offset = phase(group.index, interval)
        if not needs_task:
            self._stop_group(group)
        elif group.task is None:
            self._start_group(group, now)
        elif not group.checking and any(self._reals[r].state.up is None or self._reals[r].fresh
                                        for r in joined):
            self._stop_group(group)
            self._start_group(group, now)  # newcomers get their first verdict at once
        elif not group.checking and interval != old_interval:
            self._stop_group(group, keep_first=True)
            self._start_group(group, max(now, group.due - old_interval + interval), keep_first=True)
        return group

    def _start_group(self, group: _Group, due: float, keep_first: bool = False) -> None:
        if group.first_done is None or not keep_first:
            group.first_done = asyncio.Event()
        group.due = due
        group.task = asyncio.get_running_loop().create_task(self._run_group(group))

    def _stop_group(self, group: _Group, keep_first: bool = False) -> None:
        task, group.task = group.task, None
        if task is not None:
            task.cancel()
            self._dying.add(task)
            task.add_done_callback(self._dying.discard)
        if group.first_done is not None and not keep_first:
            group.first_done.set()  # nobody waits for a group that is gone
            group.first_done = None

    def check_now(self, refs: Iterable[RealRef]) -> None:
        """Run the checks of these reals at once (the next run of their groups is now), e.g. after an
        operator enabled one: it need not wait a whole ``checkinterval`` for its verdict."""
        loop = asyncio.get_running_loop()
        for ref in refs:
            real = self._reals.get(ref)
            group = self._groups.get(real.spec) if real is not None else None
            if group is None or group.task is None or group.checking:
                continue
            self._stop_group(group, keep_first=True)
            self._start_group(group, loop.time(), keep_first=True)

    # ---- checking ------------------------------------------------------------------------------

    async def _run_group(self, group: _Group) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        while True:
            if group.due > now:
                await self._wakeups.sleep_until(loop, group.due)
                now = loop.time()
            group.checking = True
            try:
                if self._maintenance_dir or group.spec.checktype == "combined":
                    await self._tick(group)
                else:  # the usual case, one coroutine less
                    result = await run_check(group.spec)
                    self.checks_run += 1
                    self._record(group, result, {})
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("check of %s:%s failed unexpectedly", group.spec.address, group.spec.port)
            finally:
                group.checking = False
            if group.first_done is not None:
                group.first_done.set()
            # the next point of its grid after this run began (a late start, e.g. a first check that
            # waited for the loop, is not followed by a second one at once)
            group.due = next_on_grid(max(group.due, now), group.offset, group.interval)
            now = loop.time()
            if group.due < now:  # a check longer than the interval, or a late loop: the next point of
                # its grid, not at once — run at once, the late checks would stay in one burst for good
                group.due = next_on_grid(now, group.offset, group.interval)

    def _next_run(self, group: _Group) -> tuple[CheckSpec, bool]:
        """The spec to run now and whether it is the negotiate leg of a combined check."""
        spec = group.spec
        if spec.checktype != "combined":
            return spec, False
        if group.connects >= spec.connects_per_negotiate:
            return replace(spec, checktype="negotiate"), True
        return replace(spec, checktype="connect"), False

    async def _tick(self, group: _Group) -> None:
        directory = self._maintenance_dir
        maintenance: dict[RealRef, bool] = {}
        if directory:
            for ref, _ in group.reals:
                maintenance[ref] = await in_maintenance(directory, ref.address, ref.port, self._names)
        result: CheckResult | None = None
        if not maintenance or not all(maintenance.values()):
            if group.spec.checktype != "combined":
                result = await run_check(group.spec)
            else:
                spec, negotiate = self._next_run(group)
                result = await run_check(spec)
                if negotiate:
                    group.connects = 0 if result.ok else group.connects
                else:
                    group.connects = group.connects + 1 if result.ok else 1 << 30
            self.checks_run += 1
        self._record(group, result, maintenance)

    def _record(self, group: _Group, result: CheckResult | None, maintenance: dict[RealRef, bool]) -> None:
        """Apply a run's result (or the maintenance files) to every member of the group."""
        now = time.time()
        changed = False
        for ref, real in group.reals:
            if real.spec is not group.spec:
                continue
            if maintenance and maintenance[ref]:
                changed |= self._apply_maintenance(ref, real, now)
            elif result is not None:
                changed |= self._apply(ref, real, result, now)
        if changed:
            self._notify()

    def _apply(self, ref: RealRef, real: _Real, result: CheckResult, now: float) -> bool:
        real.last_result, real.last_checked, real.maintenance = result, now, False
        if result.local_fault:
            self._local_fault(ref, real, result)
            self._report(ref, real, result)
            return False
        if real.local_fault:
            self._local_fault_over(ref, real)
        if real.fresh:
            state, change = step(HealthState(), result.ok)
            if state.up == real.state.up:
                change = Change.NONE
            real.fresh = False
        else:
            state, change = step(real.state, result.ok, real.failurecount, self.rise)
        real.state = state
        if change is Change.UP:
            real.failed_since = None
            self._still_down.clear(ref, 0.0)
            self._send(RealUp(real=ref, detail=result.message))
        elif change is Change.DOWN:
            real.failed_since = time.monotonic()
            self._still_down.observe(ref, result.message, real.failed_since)
            self._send(RealDown(real=ref, detail=result.message))
        elif state.up is False and not result.ok:
            self._remind_down(ref, result.message)
        elif change is Change.SOFT_FAILURE:
            self._send(SoftFailure(real=ref, count=state.failures, limit=real.failurecount,
                                   detail=result.message))
        elif change is Change.FAILURES_RESET:
            self._send(FailuresReset(real=ref))
        self._report(ref, real, result)
        return change in (Change.UP, Change.DOWN)

    def _remind_down(self, ref: RealRef, detail: str) -> None:
        now = time.monotonic()
        decision = self._still_down.observe(ref, detail, now)
        if decision is not None and decision.kind in (Kind.CHANGE, Kind.REMINDER):
            self._send(RealStillDown(real=ref, detail=detail, count=decision.count,
                                     lasting=lasting(now - decision.since), changed=decision.kind is Kind.CHANGE))

    def _local_fault(self, ref: RealRef, real: _Real, result: CheckResult) -> None:
        reason = result.local_fault
        self.local_fault_counts[reason] = self.local_fault_counts.get(reason, 0) + 1
        if real.local_fault and real.local_fault != reason:
            self._local_fault_over(ref, real)
        real.local_fault = reason
        self._faulty.add(ref)
        now = time.monotonic()
        decision = self._local.observe(reason, reason, now)
        if decision is not None:
            phase = "reminder" if decision.kind is Kind.REMINDER else "start"
            self._send(LocalFault(reason=reason, real=ref, detail=result.message, phase=phase,
                                  count=decision.count, lasting=lasting(now - decision.since)))

    def _local_fault_over(self, ref: RealRef, real: _Real) -> None:
        reason, real.local_fault = real.local_fault, ""
        self._faulty.discard(ref)
        if any(self._reals[r].local_fault == reason for r in self._faulty):
            return  # other reals still cannot be checked for that reason
        now = time.monotonic()
        decision = self._local.clear(reason, now)
        if decision is not None:
            self._send(LocalFaultCleared(reason=reason, count=decision.count, lasting=lasting(now - decision.since)))

    def _apply_maintenance(self, ref: RealRef, real: _Real, now: float) -> bool:
        real.last_result = CheckResult(ok=False, message=MAINTENANCE_MESSAGE)
        real.last_checked, real.maintenance, real.fresh = now, True, False
        real.failed_since = None
        self._still_down.clear(ref, 0.0)
        if real.local_fault:
            self._local_fault_over(ref, real)
        real.state, change = force_down(real.state)
        self._report(ref, real, real.last_result)
        if change is Change.DOWN:
            self._send(RealDown(real=ref, detail=MAINTENANCE_MESSAGE))
            return True
        return False

    def _send(self, event: Event) -> None:
        try:
            self._emit(event)
        except Exception:
            log.exception("event sink failed on %r", event)

    def _report(self, ref: RealRef, real: _Real, result: CheckResult) -> None:
        for callback in self._result_listeners:
            try:
                callback(ref, real.spec, result, real.state.up)
            except Exception:
                log.exception("result listener failed")

    def _notify(self) -> None:
        for listener in list(self._listeners):
            try:
                listener()
            except Exception:
                log.exception("health listener failed")

    # ---- queries -------------------------------------------------------------------------------

    async def first_pass(self) -> None:
        """Return once every checked real has its first verdict (each bounded by its timeout)."""
        events = [g.first_done for g in self._groups.values() if g.task is not None and g.first_done]
        await asyncio.gather(*(e.wait() for e in events))

    def local_faults(self) -> dict[RealRef, str]:
        """The reals whose last check could not run for a local reason (the alarm), with the reason."""
        if not self._faulty:  # (most of the time: no walk over every real)
            return {}
        return {ref: real.local_fault for ref, real in self._reals.items() if real.local_fault}

    def failed_since(self) -> dict[RealRef, float]:
        """The reals down because their checks failed (not maintenance), with the monotonic time they
        went down (the panic rule's input, ``saru.planner.panic_start``)."""
        return {ref: real.failed_since for ref, real in self._reals.items()
                if real.failed_since is not None and real.state.up is False and not real.maintenance}

    def health(self) -> dict[RealRef, bool | None]:
        """Every configured real's verdict (None: not checked yet, or checktype off)."""
        return {ref: real.state.up for ref, real in self._reals.items()}

    def snapshot(self) -> dict[RealRef, RealHealth]:
        """Every configured real's health in detail."""
        return {
            ref: RealHealth(
                up=real.state.up,
                last_result=real.last_result,
                last_checked=real.last_checked,
                failures=real.state.failures,
                successes=real.state.successes,
                maintenance=real.maintenance,
                checktype=real.spec.checktype,
                local_fault=real.local_fault,
                failed_since=real.failed_since if real.state.up is False else None,
            )
            for ref, real in self._reals.items()
        }

    def add_listener(self, callback: Listener) -> None:
        """``callback()`` is called (synchronously) whenever any real's up/down verdict changes."""
        self._listeners.append(callback)

    def add_result_listener(self, callback: ResultListener) -> None:
        """``callback(real, spec, result, up)`` is called (synchronously) for every check result of every
        real, maintenance included; ``up`` is the real's verdict once the result is applied."""
        self._result_listeners.append(callback)

    @property
    def groups(self) -> int:
        """Number of distinct checks being run (after deduplication)."""
        return sum(1 for g in self._groups.values() if g.task is not None)

    async def close(self) -> None:
        """Cancel every check task and wait for them to finish."""
        for group in self._groups.values():
            self._stop_group(group)
        self._groups.clear()
        self._names.close()
        dying = list(self._dying)
        if dying:
            await asyncio.gather(*dying, return_exceptions=True)
