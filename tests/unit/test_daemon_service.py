"""The service layer (saru.daemon.service) over real parts and an in-memory plane, and the control
socket's commands (saru.daemon.commands) through a real ControlServer and client on a unix socket:
typed answers, one ServiceKey form on the wire, refusals as clear errors that change nothing."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from saru.control import ControlServer, key_from_dict, key_to_dict, op_to_dict, request, table_from_list
from saru.daemon.commands import STARTING, control_handlers
from saru.daemon.configwatch import ConfigWatcher
from saru.daemon.driftwatch import DriftWatcher
from saru.daemon.gate import HAGate
from saru.daemon.hooks import HookRunner
from saru.daemon.journal import Journal
from saru.daemon.realstats import RealStats
from saru.daemon.reconciler import Reconciler
from saru.daemon.service import DaemonService, ServiceError
from saru.daemon.state import Life, Loaded
from saru.ha.node import HACommandError, HASnapshot
from saru.model import AddService, DelService, HASettings, RealRef, ServiceKey, ServiceSettings, Settings
from saru.monitor import Monitor
from tests.unit.doubles import OFF, TWO_VIRTUALS, UP, MemoryPlane, stats_for

FOREIGN = ServiceKey("tcp", "10.9.9.9", 25)


class Daemonless:
    """The service's parts, assembled as the daemon does (real monitor, reconciler, gate, watcher)."""

    def __init__(self, tmp_path: Path, settings: Settings | None = None) -> None:
        from saru.config.ldirectord import parse_file

        path = tmp_path / "test.cf"
        path.write_text(TWO_VIRTUALS)
        self.plane = MemoryPlane()
        self.loaded = Loaded(str(path), parse_file(path), settings or Settings())
        self.life, self.journal, hooks = Life(), Journal(), HookRunner()
        self.monitor = Monitor(emit=self.journal.emit)
        self.realstats = RealStats()
        self.monitor.add_result_listener(self.realstats.record)
        gate: HAGate | None = None
        self.reconciler = Reconciler(self.plane, self.monitor.health, self.loaded, self.life, self.journal, hooks,
                                     gated=lambda: gate is not None and gate.gated())
        self.gate = gate = HAGate(self.plane, self.loaded, self.life, self.journal.emit,
                                  reconcile=self.reconciler.reconcile_or_retry)
        self.drift = DriftWatcher(self.plane, lambda: self.loaded.owned, self.reconciler.lock, self.journal.emit,
                                  self.reconciler.mark_dirty, 0)
        watcher = ConfigWatcher(self.loaded, self.life, self.plane.capabilities, self.journal,
                                reconciler=self.reconciler, gate=self.gate, hooks=hooks,
                                configure=self.monitor.configure, check_drift=self.drift.check)
        self.service = DaemonService(life=self.life, loaded=self.loaded, dataplane=self.plane,
                                     dataplane_reason="test", monitor=self.monitor, reconciler=self.reconciler,
                                     gate=self.gate, drift=self.drift, watcher=watcher, journal=self.journal,
                                     realstats=self.realstats)

    async def start(self) -> None:
        self.monitor.configure(self.loaded.config)
        self.loaded.own_config()
        await self.reconciler.reconcile()


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[Daemonless]:
    world = Daemonless(tmp_path)
    await world.start()
    yield world
    await world.monitor.close()


async def test_status_reads_the_state_objects(world: Daemonless) -> None:
    world.plane.counters = {UP: stats_for(UP)}
    doc = await world.service.status()
    assert (doc["config"], doc["dataplane"], doc["ready"], doc["reloads"]) == (
        world.loaded.config_path, {"name": "memory", "reason": "test"}, False, 0)
    assert doc["apply_error"] is None and doc["ha"] is None and doc["cluster_events"] == []
    up, off = doc["virtuals"]
    assert key_from_dict(up["service"]) == UP and key_from_dict(off["service"]) == OFF
    assert (up["in_table"], up["connections"], off["in_table"]) == (True, 7, True)
    assert [(r["address"], r["state"], r["weight"], r["in_table"]) for r in up["reals"]] == [
        ("10.1.0.1", "up", 2, True), ("10.1.0.2", "up", 1, True)]  # checktype on: up without a check
    assert up["reals"][0]["active_connections"] == 1 and off["reals"][0]["state"] == "unknown"
    assert doc["drift"] is not None and doc["drift"]["checked"] is False  # nothing can drift in memory
    assert any("Added virtual server: 10.0.0.1:80" in e for e in doc["events"])
    world.life.ready.set()
    world.loaded.last_reload_error = "bad line"
    doc = await world.service.status()
    assert doc["ready"] is True and doc["last_reload_error"] == "bad line"


async def test_runtime_counts_resources_histories_and_applies(world: Daemonless) -> None:
    import os

    doc = await world.service.runtime()
    assert doc["pid"] == os.getpid() and doc["rss_bytes"] > 0 and doc["open_fds"] > 0 and doc["tasks"] >= 1
    assert doc["journal_events"] == len(world.journal) > 0  # the start's "Added virtual server" lines
    assert doc["check_results"] == world.realstats.results
    first = (doc["applies"], doc["ops_applied"])
    assert first[0] >= 1 and first[1] >= 2  # the start programmed the table: services and reals
    await world.service.apply([DelService(OFF)])
    doc = await world.service.runtime()
    assert (doc["applies"], doc["ops_applied"]) == (first[0] + 1, first[1] + 1)
    await world.reconciler.reconcile()  # the config owns OFF: it comes back (one write)
    assert (await world.service.runtime())["applies"] == first[0] + 2
    await world.reconciler.reconcile()  # nothing changed since: no write
    assert (await world.service.runtime())["applies"] == first[0] + 2


async def test_table_answer_carries_keys_in_their_one_wire_form(world: Daemonless) -> None:
    answer = await world.service.table()
    assert table_from_list(answer["table"]) == world.plane.table
    assert {key_from_dict(k) for k in answer["owned"]} == {UP, OFF}
    health = {RealRef(key_from_dict(h["service"]), h["address"], h["port"]): h["up"] for h in answer["health"]}
    assert health == world.monitor.health() and len(health) == 3
    assert answer["dataplane"] == "memory" and answer["drift"] is None


async def test_stats_zero_connections(world: Daemonless) -> None:
    world.plane.counters = {UP: stats_for(UP)}
    (entry,) = (await world.service.stats())["stats"]
    assert entry["service"] == key_to_dict(UP) and entry["connections"] == 7
    assert entry["dests"] == [{"address": "10.1.0.1", "port": 80, "counters": {
        "active_connections": 1, "inactive_connections": 0, "connections": 5, "bytes_in": 0, "bytes_out": 0}}]
    with pytest.raises(ServiceError, match="the memory data plane cannot zero its counters"):
        await world.service.zero(UP)
    with pytest.raises(ServiceError, match="does not list connections"):
        await world.service.connections()


async def test_apply_refuses_ops_that_do_not_fit_and_changes_nothing(world: Daemonless) -> None:
    before = world.plane.table
    with pytest.raises(ServiceError, match=r"^no such service tcp 1\.1\.1\.1:1$"):
        await world.service.apply([AddService(FOREIGN, ServiceSettings()), DelService(ServiceKey("tcp", "1.1.1.1", 1))])
    assert world.plane.table is before
    assert await world.service.apply([AddService(FOREIGN, ServiceSettings())]) == {"applied": 1}
    assert FOREIGN in world.plane.table.services


async def test_stop_and_reload(world: Daemonless) -> None:
    assert (await world.service.reload())["reloaded"] is True and world.loaded.reloads == 1
    assert await world.service.stop() == {"stopping": True} and world.life.stopping.is_set()


class FakeNode:
    def __init__(self) -> None:
        self.master = False
        self.resigned: list[float] = []

    async def start(self) -> None: ...
    async def stop(self, graceful: bool = True) -> None: ...

    def snapshot(self) -> HASnapshot:
        return {"state": "master" if self.master else "backup"}  # type: ignore[typeddict-item]

    def resign(self, hold: float) -> None:
        if not self.master:
            raise HACommandError("this node is BACKUP, not MASTER: nothing to resign")
        self.resigned.append(hold)

    def takeover(self) -> None:
        self.master = True


async def test_ha_operations(tmp_path: Path) -> None:
    world = Daemonless(tmp_path)
    with pytest.raises(ServiceError, match=r"HA is not configured for this daemon \(saru.toml"):
        await world.service.ha()
    world = Daemonless(tmp_path, Settings(ha=HASettings(interface="eth0",
                                                        vips=(ipaddress.ip_interface("10.0.0.1/24"),))))
    with pytest.raises(ServiceError, match="HA is configured but not started yet"):
        await world.service.ha_takeover()
    node = FakeNode()
    world.gate.node = node
    assert await world.service.ha() == {"ha": {"state": "backup"}}
    with pytest.raises(ServiceError, match="nothing to resign"):
        await world.service.ha_resign(5)
    assert await world.service.ha_takeover() == {"takeover": True}
    for bad in (-1.0, 3601.0, float("nan")):
        with pytest.raises(ServiceError, match="hold must be a number of seconds, 0-3600"):
            await world.service.ha_resign(bad)
    assert await world.service.ha_resign(2.5) == {"resigned": True, "hold": 2.5} and node.resigned == [2.5]


# -- the control socket's commands -------------------------------------------------------------------


@pytest.fixture
async def served(world: Daemonless, tmp_path: Path) -> AsyncIterator[tuple[Path, list[bool]]]:
    path, opened = tmp_path / "ctl" / "test.sock", [True]
    server = ControlServer(path, control_handlers(world.service, lambda: opened[0]))
    await server.start()
    yield path, opened
    await server.close()


async def ask(path: Path, command: str, **params: Any) -> dict[str, Any]:
    return await request(path, command, timeout=5, **params)


async def test_commands_answer_through_the_socket(world: Daemonless, served: tuple[Path, list[bool]]) -> None:
    path, _ = served
    status = await ask(path, "status")
    assert status["ok"] is True and status["virtuals"][0]["service"] == key_to_dict(UP)
    assert (await ask(path, "table"))["owned"]
    assert await ask(path, "apply", ops=[op_to_dict(AddService(FOREIGN, ServiceSettings()))]) == {
        "ok": True, "applied": 1}
    assert await ask(path, "zero", service=key_to_dict(UP)) == {
        "ok": False, "error": "the memory data plane cannot zero its counters"}
    assert await ask(path, "stop") == {"ok": True, "stopping": True}


async def test_malformed_requests_are_refused_and_change_nothing(world: Daemonless,
                                                                 served: tuple[Path, list[bool]]) -> None:
    path, _ = served
    before = world.plane.table
    answer = await ask(path, "apply", ops=[{"op": "AddService", "service": {"protocol": "tcp"}}])
    assert answer["ok"] is False and answer["error"].startswith("malformed ops: ")
    answer = await ask(path, "apply", ops=[op_to_dict(DelService(FOREIGN))])
    assert answer == {"ok": False, "error": "no such service tcp 10.9.9.9:25"}
    answer = await ask(path, "zero", service={"protocol": "tcp", "address": "10.0.0.1", "port": "http"})
    assert answer["ok"] is False and answer["error"].startswith("malformed service: ")
    answer = await ask(path, "ha-resign", hold="soon")
    assert answer["ok"] is False and answer["error"].startswith("HA is not configured")
    assert world.plane.table is before and not world.life.stopping.is_set()


async def test_before_the_plane_is_open_every_command_says_so(world: Daemonless,
                                                              served: tuple[Path, list[bool]]) -> None:
    path, opened = served
    opened[0] = False
    assert await ask(path, "stop") == {"ok": False, "error": STARTING}
    assert not world.life.stopping.is_set()


async def test_a_plane_failure_is_answered_with_its_type(world: Daemonless, served: tuple[Path, list[bool]]) -> None:
    path, _ = served
    world.plane.fail = ["kernel says no"]
    answer = await ask(path, "apply", ops=[op_to_dict(AddService(FOREIGN, ServiceSettings()))])
    assert answer == {"ok": False, "error": "DataplaneError: kernel says no"}
