"""``run_check``'s hard timeout (10 ms slots shared by the checks due together) and its first step.

Pure logic of the timeout machinery with checks that only wait (the checks' real I/O against real
servers is tested in tests/integration/test_checks_*.py, a hung server included).
"""

from __future__ import annotations

import asyncio

import pytest

from saru.checks import base
from saru.checks.base import register, run_check
from saru.model import CheckResult, CheckSpec

RELEASE: asyncio.Event | None = None


@register("negotiate", "test-wait")
async def _waits(spec: CheckSpec) -> CheckResult:
    assert RELEASE is not None
    await RELEASE.wait()
    return CheckResult(ok=True, message="released")


@register("negotiate", "test-instant")
async def _instant(spec: CheckSpec) -> CheckResult:
    return CheckResult(ok=False, message="instant answer", failure="status")


def spec(service: str, timeout: float) -> CheckSpec:
    return CheckSpec("negotiate", service, "tcp", "127.0.0.1", 1, negotiatetimeout=timeout)


@pytest.fixture(autouse=True)
def release() -> None:
    global RELEASE
    RELEASE = asyncio.Event()


async def test_a_check_that_waits_past_its_deadline_times_out() -> None:
    results = await asyncio.gather(*(run_check(spec("test-wait", 0.05)) for _ in range(20)))
    for result in results:
        assert (result.ok, result.message, result.failure) == (False, "timeout after 0.05s", "timeout")
        assert result.latency >= 0.05
    assert asyncio.get_running_loop() not in base._SLOTS  # every slot fired and went


async def test_a_check_that_answers_in_time_is_not_cancelled_later() -> None:
    assert RELEASE is not None
    loop = asyncio.get_running_loop()
    loop.call_later(0.01, RELEASE.set)
    result = await run_check(spec("test-wait", 0.05))
    assert result.ok and result.message == "released"
    await asyncio.sleep(0.1)  # past the deadline's slot: this task must not be cancelled by it
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_a_check_that_needs_no_wait_gets_its_result_and_layer() -> None:
    result = await run_check(spec("test-instant", 5))
    assert (result.ok, result.message, result.failure, result.layer) == (False, "instant answer", "status", "L7")
    assert asyncio.get_running_loop() not in base._SLOTS  # no timer for a check that never waited


async def test_a_cancellation_from_outside_stays_a_cancellation() -> None:
    task = asyncio.get_running_loop().create_task(run_check(spec("test-wait", 5)))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
