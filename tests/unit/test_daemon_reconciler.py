"""The reconciler (saru.daemon.reconciler) over an in-memory data plane: table programmed and
narrated, foreign services left alone, the HA gate, failures recorded and retried (back-off, the
start timeout, a reload cutting the back-off short), manual batches, cleanstop, fallbackcommand."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from saru.daemon.hooks import HookRunner
from saru.daemon.journal import Journal
from saru.daemon.reconciler import RETRY_MAX, Reconciler, fallback_hooks, retry_delay
from saru.daemon.state import Life, Loaded
from saru.dataplane.base import DataplaneError
from saru.diff import OpError
from saru.model import AddDest, AddService, DelService, Dest, RealRef, Service, ServiceKey, ServiceSettings, Table
from saru.planner import Health, desired_table
from tests.unit.doubles import OFF, TWO_VIRTUALS, UP, MemoryPlane, config, until

FOREIGN = ServiceKey("tcp", "10.9.9.9", 25)


Made = tuple[Reconciler, Loaded, Life, Journal]


def make(plane: MemoryPlane, text: str = TWO_VIRTUALS, health: Callable[[], Health] = dict,
         gated: Callable[[], bool] = lambda: False, start_timeout: float = 0.0) -> Made:
    loaded, life, journal = Loaded("/etc/ha.d/test.cf", config(text)), Life(), Journal()
    reconciler = Reconciler(plane, health, loaded, life, journal, HookRunner(), gated=gated,
                            start_timeout=start_timeout, start_timeout_hint="--start-timeout 0 keeps retrying")
    return reconciler, loaded, life, journal



async def test_reconcile_programs_the_owned_table_narrates_it_and_leaves_foreign_services() -> None:
    plane = MemoryPlane(Table.of([Service(FOREIGN)]))
    reconciler, loaded, _, journal = make(plane)
    await reconciler.reconcile()
    assert set(plane.table.services) == {UP, OFF, FOREIGN}
    assert {d.address: d.weight for d in plane.table.services[UP].dests.values()} == {"10.1.0.1": 2, "10.1.0.2": 1}
    assert not plane.table.services[OFF].dests  # checktype off, not in the table before: stays out
    assert loaded.owned == {UP, OFF} and reconciler.applied.is_set()
    assert any(line.endswith("Added real server: 10.1.0.1:80 (10.0.0.1:80) (Weight set to 2)")
               for line in journal.recent(20)), journal.recent(20)
    await reconciler.reconcile()
    assert len(plane.applied) == 1  # in line already: no second batch


async def test_the_gate_takes_the_owned_services_out_and_back() -> None:
    plane, closed = MemoryPlane(Table.of([Service(FOREIGN)])), [False]
    reconciler, *_ = make(plane, gated=lambda: closed[0])
    await reconciler.reconcile()
    closed[0] = True
    await reconciler.reconcile()
    assert set(plane.table.services) == {FOREIGN}
    closed[0] = False
    await reconciler.reconcile()
    assert set(plane.table.services) == {UP, OFF, FOREIGN}


def test_retry_delay_is_constant_before_ready_then_backs_off() -> None:
    assert [retry_delay(n, ready=False) for n in (1, 5, 50)] == [1.0, 1.0, 1.0]
    assert [retry_delay(n, ready=True) for n in range(1, 8)] == [1, 2, 4, 8, 16, RETRY_MAX, RETRY_MAX]


async def test_a_failed_apply_is_recorded_and_marks_the_table_dirty() -> None:
    plane = MemoryPlane()
    plane.fail = ["no such device"]
    reconciler, _, life, journal = make(plane)
    with pytest.raises(DataplaneError):
        await reconciler.reconcile_or_retry()
    error = reconciler.apply_error
    assert error is not None and (error.message, error.attempts) == ("no such device", 1)
    assert reconciler.dirty.is_set() and not life.stopping.is_set()
    assert journal.recent(1)[0].endswith("Cannot program the table: no such device")
    assert error.to_dict() == {"message": "no such device", "since": error.since, "at": error.at, "attempts": 1}


async def test_the_start_timeout_stops_a_daemon_that_never_got_ready_but_not_a_ready_one() -> None:
    reconciler, _, life, _ = make(MemoryPlane(), start_timeout=5.0)
    assert reconciler.failed(DataplaneError("port in use")) == 1.0
    assert reconciler.apply_error is not None
    reconciler.apply_error.since_monotonic -= 5.0  # failing for 5 s now
    assert reconciler.failed(DataplaneError("port in use")) == 1.0
    assert life.stopping.is_set() and life.exit_status == 1

    reconciler, _, life, _ = make(MemoryPlane(), start_timeout=5.0)
    life.ready.set()
    reconciler.failed(DataplaneError("port in use"))
    assert reconciler.apply_error is not None
    reconciler.apply_error.since_monotonic -= 500.0
    assert reconciler.failed(DataplaneError("port in use")) == 2.0  # backing off, never fatal once ready
    assert not life.stopping.is_set() and life.exit_status == 0


async def test_the_loop_retries_and_a_reload_cuts_the_back_off_short() -> None:
    plane = MemoryPlane()
    plane.fail = ["first", "second"]
    reconciler, _, life, journal = make(plane)
    life.ready.set()  # back-off of 1 s, then 2 s
    task = asyncio.create_task(reconciler.run())
    try:
        started = time.monotonic()
        reconciler.mark_dirty()
        await until(lambda: reconciler.apply_error is not None)
        reconciler.retry_now()
        await until(lambda: reconciler.apply_error is not None and reconciler.apply_error.attempts == 2)
        reconciler.retry_now()
        await until(lambda: reconciler.apply_error is None)
        assert time.monotonic() - started < 0.9  # neither back-off was waited out
        assert set(plane.table.services) == {UP, OFF}
        assert any(" Table applied again after 2 failed attempts (" in line for line in journal.recent(20))
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_manual_batch_is_checked_applied_and_logged() -> None:
    plane = MemoryPlane()
    reconciler, _, _, journal = make(plane)
    with pytest.raises(OpError):
        await reconciler.apply_manual([DelService(FOREIGN)])
    assert plane.applied == []
    batch = [AddService(FOREIGN, ServiceSettings()), AddDest(FOREIGN, Dest("10.2.0.1", 25, "masq"))]
    assert await reconciler.apply_manual(batch) == 2
    assert FOREIGN in plane.table.services
    assert "manual change (saru ipvsadm): Added real server: 10.2.0.1:25" in journal.recent(1)[0]


async def test_cleanstop_removes_only_the_virtuals_that_ask_for_it() -> None:
    plane = MemoryPlane(Table.of([Service(FOREIGN)]))
    reconciler, *_ = make(plane)
    await reconciler.reconcile()
    await reconciler.cleanstop()
    assert set(plane.table.services) == {OFF, FOREIGN}


FALLBACK = """\
virtual=10.0.0.1:80
\treal=10.1.0.1:80 masq
\tfallback=127.0.0.1:80 masq
\tfallbackcommand="/usr/local/bin/fb --now"
\tchecktype=connect
"""


def test_fallbackcommand_is_called_when_the_fallback_enters_and_leaves() -> None:
    cfg = config(FALLBACK)
    down = desired_table(cfg, {RealRef(cfg.virtuals[0].key, "10.1.0.1", 80): False}, Table())
    up = desired_table(cfg, {RealRef(cfg.virtuals[0].key, "10.1.0.1", 80): True}, down)
    assert fallback_hooks(cfg, up, down, True) == [("/usr/local/bin/fb --now", "start", "10.0.0.1:80", "tcp")]
    assert fallback_hooks(cfg, down, up, True) == [("/usr/local/bin/fb --now", "stop", "10.0.0.1:80", "tcp")]
    assert fallback_hooks(cfg, up, up, True) == []
