"""The pieces the metrics are made of: result classes, per-real check statistics, the apply-duration
histogram, and the service layer's snapshot of a daemon without a process (a memory plane)."""

from __future__ import annotations

import asyncio
import gc
import math
from pathlib import Path

import pytest

from saru.daemon.heap import Settler, settle
from saru.daemon.histogram import Histogram
from saru.daemon.realstats import RealCounts, RealStats
from saru.model import CheckResult, CheckSpec, RealRef, ServiceKey
from saru.monitor import MAINTENANCE_MESSAGE
from tests.unit.doubles import until
from tests.unit.test_daemon_service import Daemonless


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


REF = RealRef(ServiceKey("tcp", "10.0.0.1", 80), "10.0.0.2", 80)
SPEC = CheckSpec("connect", "none", "tcp", "10.0.0.2", 80)
OK = CheckResult(ok=True, layer="L4")
FAIL = CheckResult(ok=False, message="connection refused", layer="L4", failure="connect")


def test_real_statistics_count_failures_transitions_and_downtime() -> None:
    clock = Clock()
    stats = RealStats(clock)
    assert stats.read(REF) == RealCounts(0, 0, 0.0, 0.0)
    clock.now = 60
    stats.record(REF, SPEC, FAIL, False)  # first verdict: down (no transition, downtime starts)
    clock.now = 70
    stats.record(REF, SPEC, OK, True)  # DOWN -> UP
    clock.now = 80
    stats.record(REF, SPEC, FAIL, True)  # a soft failure: still up
    stats.record(REF, SPEC, FAIL, False)  # UP -> DOWN
    clock.now = 95
    counts = stats.read(REF)
    assert counts.failures == 3 and counts.up_down == 1
    assert counts.last_change_age == 15 and counts.downtime == 10 + 15
    stats.record(REF, SPEC, CheckResult(ok=False, message=MAINTENANCE_MESSAGE), False)  # no check: no failure
    assert stats.read(REF).failures == 3
    clock.now = 100
    stats.record(REF, SPEC, OK, True)
    clock.now = 130
    counts = stats.read(REF)
    assert counts.downtime == 10 + 20 and counts.last_change_age == 30 and counts.up_down == 1
    assert len(stats) == 1
    stats.retain(set())
    assert len(stats) == 0 and stats.read(REF).failures == 0


def test_histogram_buckets_are_cumulative_and_le_inclusive() -> None:
    histogram = Histogram((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 1.0, 3.0):
        histogram.observe(value)
    snap = histogram.snapshot()
    assert snap.buckets == ((0.1, 2), (1.0, 4), (math.inf, 5)) and snap.count == 5
    assert math.isclose(snap.sum, 4.65)
    with pytest.raises(ValueError, match="increasing"):
        Histogram((1.0, 0.5))


def rewrite(path: str, text: str) -> str:
    """Write ``text`` to the file; return what it held."""
    before = Path(path).read_text()
    Path(path).write_text(text)
    return before


async def test_the_service_snapshot_of_a_daemon(tmp_path: Path) -> None:
    """metrics_snapshot() through the service layer: the reals, the apply histogram observed by the
    reconciler, the reload counts (a refused reload counted as a failure, the running config kept)."""
    world = Daemonless(tmp_path)
    await world.start()
    try:
        snap = await world.service.metrics_snapshot()
        assert snap.dataplane == world.plane.capabilities.name and snap.vrrp is None
        assert [(s.address, s.port) for s in snap.servers] and all(s.state for s in snap.servers)
        assert snap.apply_durations.count == 1  # the first table
        assert (snap.reloads_ok, snap.reloads_failed) == (0, 0)
        assert snap.last_reload_success == world.loaded.loaded_at
        good = rewrite(world.loaded.config_path, "virtual=nonsense\n")
        assert (await world.service.reload())["reloaded"] is False
        rewrite(world.loaded.config_path, good)
        assert (await world.service.reload())["reloaded"] is True
        snap = await world.service.metrics_snapshot()
        assert (snap.reloads_ok, snap.reloads_failed) == (1, 1)
        assert snap.last_reload_success == world.loaded.loaded_at
    finally:
        await world.monitor.close()


async def test_the_heap_is_settled_now_and_after_a_delay() -> None:
    """settle() leaves the living objects out of later collections (gc.freeze); Settler does it again
    later (after a reload), once."""
    try:
        gc.unfreeze()
        settle()
        assert gc.get_freeze_count() > 1000
        gc.unfreeze()
        settler = Settler(delay=0.01)
        settler.settle_later()
        settler.settle_later()  # replaces the first
        assert gc.get_freeze_count() == 0
        await until(lambda: gc.get_freeze_count() > 0)
        gc.unfreeze()
        settler.settle_later()
        settler.cancel()
        await asyncio.sleep(0.05)
        assert gc.get_freeze_count() == 0
    finally:
        gc.unfreeze()
