"""The daemon's event bus (``saru.daemon.bus``): typed events as dicts, bounded queues that drop the
oldest with a marker, publishing that never blocks."""

from __future__ import annotations

import asyncio
import logging

from saru.daemon.bus import BusLogHandler, EventBus, event_doc
from saru.events import DaemonEvent, OperatorAction, RealDown, ReloadFailed, TableChange
from saru.model import Dest, RealRef, ServiceKey

KEY = ServiceKey("tcp", "10.0.0.1", 80)
REAL = RealRef(KEY, "10.0.0.2", 8080)


def test_a_real_down_names_the_real_and_the_reason() -> None:
    doc = event_doc(RealDown(real=REAL, detail="connection refused", at=12.5))
    assert doc == {"type": "real_down", "time": 12.5, "level": "INFO", "proxy": "tcp/10.0.0.1:80",
                   "server": "10.0.0.2:8080", "reason": "connection refused",
                   "message": "Real server down: 10.0.0.2:8080 (10.0.0.1:80): connection refused"}


def test_event_types_are_snake_case_names() -> None:
    from saru.daemon.bus import _snake

    names = {cls: _snake(cls) for cls in ("HAStateChange", "VIPChange", "VIPRestored", "VIPConflict", "SplitBrain",
                                          "SplitBrainResolved", "HAProblem", "PingChange", "TableDrift",
                                          "RealUp", "ConfigReloaded", "DaemonEvent")}
    assert list(names.values()) == ["ha_state_change", "vip_change", "vip_restored", "vip_conflict", "split_brain",
                                    "split_brain_resolved", "ha_problem", "ping_change", "table_drift", "real_up",
                                    "config_reloaded", "daemon_event"]


def test_table_changes_reloads_and_operator_actions_as_dicts() -> None:
    change = event_doc(TableChange(verb="Changed", kind="real", service=KEY, dest=Dest("10.0.0.2", 8080, "masq", 0)))
    assert (change["type"], change["proxy"], change["server"], change["weight"]) == \
        ("table_change", "tcp/10.0.0.1:80", "10.0.0.2:8080", 0)
    failed = event_doc(ReloadFailed(path="/etc/x.cf", errors=("/etc/x.cf:3: bad", "/etc/x.cf:4: worse")))
    assert failed["errors"] == ["/etc/x.cf:3: bad", "/etc/x.cf:4: worse"] and failed["level"] == "ERROR"
    action = event_doc(OperatorAction(action="drain", real=REAL, origin="the HTTP API (127.0.0.1)"))
    assert (action["type"], action["action"], action["server"]) == ("operator_action", "drain", "10.0.0.2:8080")


async def test_a_slow_subscriber_loses_the_oldest_with_a_marker_and_never_blocks() -> None:
    bus = EventBus(queue_size=3)
    slow, fast = bus.subscribe(), bus.subscribe()
    got: list[int] = []

    async def reader() -> None:
        async for doc in fast:
            got.append(doc["n"])

    task = asyncio.create_task(reader())
    for n in range(10):
        bus.publish({"type": "x", "n": n})  # returns at once, whatever the subscribers do
        await asyncio.sleep(0)
    assert got == list(range(10))
    marker = await anext(slow)
    assert (marker["type"], marker["count"]) == ("events_lost", 7)
    assert [(await anext(slow))["n"] for _ in range(3)] == [7, 8, 9]
    fast.close()
    await asyncio.wait_for(task, 1)
    slow.close()
    assert bus.subscribers == 0


async def test_log_records_not_from_the_journal_are_published() -> None:
    bus = EventBus()
    handler = BusLogHandler(bus, asyncio.get_running_loop())
    logger = logging.getLogger("saru.test-bus")
    logger.addHandler(handler)
    try:
        async with bus.subscribe() as sub:
            logger.error("applying the table failed: %s", "EPERM")
            logger.info("journal line", extra={"saru_journal": True})
            await asyncio.to_thread(logger.warning, "from a thread")
            first = await asyncio.wait_for(anext(sub), 1)
            second = await asyncio.wait_for(anext(sub), 1)
            assert (first["type"], first["level"]) == ("log", "ERROR")
            assert first["message"] == "applying the table failed: EPERM"
            assert second["message"] == "from a thread"
            assert sub.pending() == 0
    finally:
        logger.removeHandler(handler)
    assert DaemonEvent("x").message() == "x"
