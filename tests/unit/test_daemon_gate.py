"""The HA/sync gate (saru.daemon.gate) with a fake HA node and a real reconciler over an in-memory
plane: the owned services are out of the table until the node says master, out again when it stops
being master (unless warm_standby), untouched on the way out; a node that cannot start stops the
daemon with status 1; [ipvs.sync] on a plane without IPVS sync is a warning, once."""

from __future__ import annotations

import ipaddress
import logging

import pytest

from saru.daemon.gate import Emit, HAGate, SetActive
from saru.daemon.hooks import HookRunner
from saru.daemon.journal import Journal
from saru.daemon.reconciler import Reconciler
from saru.daemon.state import Life, Loaded
from saru.ha.node import HASnapshot
from saru.model import HASettings, IPVSSyncSettings, Service, ServiceKey, Settings, Table
from tests.unit.doubles import OFF, TWO_VIRTUALS, UP, MemoryPlane, config

FOREIGN = ServiceKey("tcp", "10.9.9.9", 25)


class FakeNode:
    """Records what the gate asks; ``fail`` makes start() raise."""

    def __init__(self, settings: HASettings, set_active: SetActive, emit: Emit, vip_check_interval: float) -> None:
        self.settings, self.set_active, self.emit = settings, set_active, emit
        self.vip_check_interval = vip_check_interval
        self.fail: Exception | None = None
        self.calls: list[str] = []

    async def start(self) -> None:
        self.calls.append("start")
        if self.fail is not None:
            raise self.fail

    async def stop(self, graceful: bool = True) -> None:
        self.calls.append(f"stop graceful={graceful}")

    def snapshot(self) -> HASnapshot:
        raise NotImplementedError

    def resign(self, hold: float) -> None: ...
    def takeover(self) -> None: ...


def ha(warm_standby: bool = False) -> Settings:
    return Settings(ha=HASettings(interface="eth0", vips=(ipaddress.ip_interface("10.0.0.1/24"),),
                                  warm_standby=warm_standby))


def make(settings: Settings, fail: Exception | None = None) -> tuple[HAGate, MemoryPlane, Life, list[FakeNode]]:
    plane = MemoryPlane(Table.of([Service(FOREIGN)]))
    loaded, life, journal = Loaded("/etc/ha.d/test.cf", config(TWO_VIRTUALS), settings), Life(), Journal()
    gate: HAGate | None = None
    reconciler = Reconciler(plane, dict, loaded, life, journal, HookRunner(),
                            gated=lambda: gate is not None and gate.gated())
    nodes: list[FakeNode] = []

    def factory(settings: HASettings, *, set_active: SetActive, emit: Emit, vip_check_interval: float) -> FakeNode:
        node = FakeNode(settings, set_active, emit, vip_check_interval)
        node.fail = fail
        nodes.append(node)
        return node

    gate = HAGate(plane, loaded, life, journal.emit, reconcile=reconciler.reconcile_or_retry,
                  node_factory=factory, vip_check_interval=2.0)
    return gate, plane, life, nodes


async def test_without_ha_the_gate_is_open_and_no_node_is_made() -> None:
    gate, _, _, nodes = make(Settings())
    assert gate.active and not gate.gated() and gate.ha_settings is None
    await gate.start_node()
    assert gate.node is None and nodes == []


async def test_the_node_opens_and_closes_the_table() -> None:
    gate, plane, _, nodes = make(ha())
    assert not gate.active and gate.gated()  # a backup until the node says otherwise
    await gate.start_node()
    assert gate.node is nodes[0] and nodes[0].calls == ["start"] and nodes[0].vip_check_interval == 2.0
    await nodes[0].set_active(True)  # what the node calls on becoming master
    assert set(plane.table.services) == {UP, OFF, FOREIGN}
    await nodes[0].set_active(False)
    assert set(plane.table.services) == {FOREIGN}
    await gate.stop_node()
    assert nodes[0].calls == ["start", "stop graceful=True"]


async def test_warm_standby_keeps_the_table_on_the_backup() -> None:
    gate, plane, _, nodes = make(ha(warm_standby=True))
    assert not gate.gated()
    await gate.start_node()
    await nodes[0].set_active(True)
    await nodes[0].set_active(False)
    assert set(plane.table.services) == {UP, OFF, FOREIGN}


async def test_leaving_master_while_stopping_leaves_the_table_to_cleanstop() -> None:
    gate, plane, life, nodes = make(ha())
    await gate.start_node()
    await nodes[0].set_active(True)
    life.stop()
    await nodes[0].set_active(False)
    assert set(plane.table.services) == {UP, OFF, FOREIGN}


async def test_a_table_that_cannot_be_programmed_on_becoming_master_raises_to_the_node() -> None:
    gate, plane, _, nodes = make(ha())
    await gate.start_node()
    plane.fail = ["refused"]
    with pytest.raises(Exception, match="refused"):
        await nodes[0].set_active(True)
    assert gate.active  # the reconciler retries with the gate open


async def test_a_node_that_cannot_start_stops_the_daemon_with_status_1(caplog: pytest.LogCaptureFixture) -> None:
    gate, _, life, _ = make(ha(), fail=OSError("no such interface"))
    await gate.start_node()
    assert life.stopping.is_set() and life.exit_status == 1
    assert "HA: cannot start: no such interface; stopping" in caplog.text


async def test_ipvs_sync_on_another_plane_is_a_warning_said_once(caplog: pytest.LogCaptureFixture) -> None:
    gate, _, _, _ = make(Settings(ipvs_sync=IPVSSyncSettings(interface="eth0")))
    with caplog.at_level(logging.WARNING, "saru"):
        await gate.sync_daemons()
        await gate.sync_daemons()
        await gate.sync_daemons(stop=True)
    assert caplog.text.count("[ipvs.sync] is ignored: the memory data plane has no IPVS connection sync") == 1
