"""The monitor's record of the reals whose checks cannot run for a local reason (the alarm): kept
as the reals come and go, so that reading it costs nothing while no check has a local fault."""

from __future__ import annotations

import asyncio
import errno

from saru.checks.base import register
from saru.model import CheckResult, CheckSpec, Config, GlobalConfig, RealConfig, RealRef, VirtualConfig
from saru.monitor import Monitor

FAULTY = 1  # the port whose checks cannot run


@register("negotiate", "test-local-fault")
async def _local(spec: CheckSpec) -> CheckResult:
    if spec.port == FAULTY:
        raise OSError(errno.EMFILE, "Too many open files")  # the director's own: checks/base says local
    return CheckResult(ok=True, message="ok")


def config(*ports: int) -> Config:
    reals = tuple(RealConfig("127.0.0.1", port) for port in ports)
    return Config("test.cf", GlobalConfig(), (VirtualConfig("tcp", "192.0.2.1", 80, service="test-local-fault",
                                                            checktype="negotiate", checkinterval=0.1,
                                                            reals=reals),))


async def test_a_real_that_leaves_with_a_local_fault_leaves_the_alarm() -> None:
    monitor = Monitor(lambda event: None)
    seen: dict[int, asyncio.Event] = {FAULTY: asyncio.Event(), 2: asyncio.Event()}
    monitor.add_result_listener(lambda ref, _spec, _result, _up: seen[ref.port].set())
    monitor.configure(config(FAULTY, 2))
    try:
        async with asyncio.timeout(10):
            await seen[FAULTY].wait()
            await seen[2].wait()
        service = config().virtuals[0].key
        assert monitor.local_faults() == {RealRef(service, "127.0.0.1", FAULTY): "emfile"}
        monitor.configure(config(2))  # the faulty real is gone with a reload
        assert monitor.local_faults() == {}
        monitor.configure(config(FAULTY, 2))  # and back: its checks still cannot run
        seen[FAULTY].clear()
        async with asyncio.timeout(10):
            await seen[FAULTY].wait()
        assert list(monitor.local_faults().values()) == ["emfile"]
    finally:
        await monitor.close()
