"""The spread of check groups over their interval (``saru.monitor.spread``, pure) and the monitor
running each group on its own phase after its first check."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from saru.checks.base import register
from saru.model import CheckResult, CheckSpec, Config, GlobalConfig, RealConfig, VirtualConfig
from saru.monitor import Monitor, scheduler
from saru.monitor.spread import PHASES, WAKEUP_GRAIN, next_on_grid, phase, slot


def test_phases_are_whole_grains_within_the_interval() -> None:
    for index in range(500):
        offset = phase(index, 1.0)
        assert 0.0 <= offset < 1.0
        assert abs(offset / WAKEUP_GRAIN - round(offset / WAKEUP_GRAIN)) < 1e-9


def test_any_number_of_groups_fills_the_phases_evenly() -> None:
    # at most PHASES points of the interval (a few larger bursts, not ~100 thin slots): PHASES groups
    # take all but one of them; more fill every point within a few of the mean (a burst would be all
    # of them on one point)
    per_point = Counter(slot(phase(index, 1.0)) for index in range(PHASES))
    assert len(per_point) >= PHASES - 1 and max(per_point.values()) <= 2
    for groups in (100, 1_000, 10_000):
        per_point = Counter(slot(phase(index, 1.0)) for index in range(groups))
        assert len(per_point) == PHASES
        assert max(per_point.values()) <= groups // PHASES + 4


def test_the_first_groups_land_far_apart() -> None:
    offsets = sorted(phase(index, 1.0, 0.01, phases=100) for index in range(5))
    gaps = [b - a for a, b in zip(offsets, [*offsets[1:], offsets[0] + 1.0], strict=True)]
    assert min(gaps) >= 0.139  # the golden-ratio sequence: the next one always in the largest gap


def test_the_phases_are_spread_over_the_whole_interval() -> None:
    for interval in (1.0, 2.0, 5.0, 60.0):
        points = sorted({phase(index, interval) for index in range(100)})
        assert len(points) == PHASES
        gaps = [b - a for a, b in zip(points, [*points[1:], points[0] + interval], strict=True)]
        assert max(gaps) - min(gaps) <= 2 * WAKEUP_GRAIN + 1e-9  # even, give or take the rounding


def test_an_interval_shorter_than_the_grain_has_one_slot() -> None:
    assert {phase(index, 0.005) for index in range(10)} == {0.0}


def test_next_on_grid_is_strictly_after_and_within_one_interval() -> None:
    for after in (0.0, 0.25, 0.37, 1.37, 100.37, 12345.678):
        due = next_on_grid(after, 0.37, 1.0)
        assert after < due <= after + 1.0
        assert abs((due - 0.37) - round(due - 0.37)) < 1e-9  # on the grid 0.37 + n


def test_next_on_grid_of_a_time_on_the_grid_is_one_interval_later() -> None:
    due = 0.3 + 7 * 0.1
    assert abs(next_on_grid(due, 0.3, 0.1) - (due + 0.1)) < 1e-9


class Starts:
    """The loop times a test check started at; ``enough`` is set once there are ``wanted``."""

    def __init__(self, wanted: int) -> None:
        self.wanted = wanted
        self.times: list[float] = []
        self.enough = asyncio.Event()

    def reset(self) -> None:
        self.times.clear()
        self.enough.clear()

    def record(self) -> None:
        self.times.append(asyncio.get_running_loop().time())
        if len(self.times) >= self.wanted:
            self.enough.set()


SPREAD = Starts(80)


@register("negotiate", "test-spread")
async def _record_start(spec: CheckSpec) -> CheckResult:
    SPREAD.record()
    return CheckResult(ok=True, message="recorded")


async def test_the_monitor_runs_groups_on_their_phases_after_a_first_check_at_once() -> None:
    SPREAD.reset()
    starts = SPREAD.times
    reals = tuple(RealConfig("127.0.0.1", 1000 + n) for n in range(40))
    virtual = VirtualConfig("tcp", "192.0.2.1", 80, service="test-spread", checktype="negotiate",
                            checkinterval=1.0, reals=reals)
    monitor = Monitor(lambda event: None)
    monitor.configure(Config("test.cf", GlobalConfig(), (virtual,)))
    await monitor.first_pass()
    first = starts[:40]
    begin = min(first)
    assert len(first) == 40 and max(first) - begin < 0.05  # every first check at once
    async with asyncio.timeout(10):
        await SPREAD.enough.wait()  # the second round: each group on its own phase
    await monitor.close()
    second = sorted(starts[40:80])
    assert second[-1] - begin <= 1.0 + WAKEUP_GRAIN  # nobody waits longer than the interval
    slots = {round((t - begin) / WAKEUP_GRAIN) for t in second}
    assert len(slots) >= PHASES - 1  # on the interval's PHASES points, not one burst (one slot)
    assert second[-1] - second[0] >= 0.6


async def test_a_late_loop_starts_the_groups_due_over_several_turns() -> None:
    wakeups = scheduler._Wakeups()
    loop = asyncio.get_running_loop()
    when = loop.time() + 0.02
    woken: list[int] = []
    turn = 0

    async def sleeper() -> None:
        await wakeups.sleep_until(loop, when)
        woken.append(turn)

    tasks = [asyncio.create_task(sleeper()) for _ in range(scheduler.STARTS_PER_TURN * 2 + 10)]
    await asyncio.sleep(0)  # every sleeper waits on the same slot
    time.sleep(0.05)  # noqa: ASYNC251 - the loop held busy past the slot (a saturated process): all due at once
    while len(woken) < len(tasks):
        turn += 1
        await asyncio.sleep(0)  # one turn of the loop
    per_turn = Counter(woken)
    assert max(per_turn.values()) <= scheduler.STARTS_PER_TURN
    assert len(per_turn) == 3  # 256, 256, 10
    await asyncio.gather(*tasks)


OVERRUN = Starts(5)


@register("negotiate", "test-overrun")
async def _overrun(spec: CheckSpec) -> CheckResult:
    OVERRUN.record()
    await asyncio.sleep(0.5)  # two and a half intervals
    return CheckResult(ok=True, message="slow")


async def test_a_check_that_overruns_its_interval_runs_next_on_its_grid_not_at_once() -> None:
    OVERRUN.reset()
    virtual = VirtualConfig("tcp", "192.0.2.1", 80, service="test-overrun", checktype="negotiate",
                            checkinterval=0.2, negotiatetimeout=5.0, reals=(RealConfig("127.0.0.1", 1),))
    monitor = Monitor(lambda event: None)
    monitor.configure(Config("test.cf", GlobalConfig(), (virtual,)))
    async with asyncio.timeout(10):
        await OVERRUN.enough.wait()
    await monitor.close()
    on_grid = OVERRUN.times[1:]  # the first runs at once, the others on the group's grid
    for start in on_grid[1:]:
        steps = (start - on_grid[0]) / 0.2
        # on the grid (give or take the 10 ms wake-up slot); at once would be half an interval off
        assert abs(steps - round(steps)) < 0.35, [round(t - on_grid[0], 3) for t in on_grid]
        assert round(steps) >= 3  # a run that overran skips the grid points it missed
