"""The HA node (saru.ha.node.HANode) driven through fake drivers (saru.ha.drivers): a VRRP instance
whose transitions the test decides, a floating IP kept in memory, a link state the test flips. What
is checked is the node's own job: the order VIP → table → announcement on becoming master, VIP
then table on leaving, a stale VIP cleaned at start, faults on link loss and rejoining, a VIP
removed behind the master's back restored, resign/takeover refusals, split brain seen and resolved."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator

import pytest

from saru.events import Event, HAProblem, HAStateChange, SplitBrain, SplitBrainResolved, VIPChange, VIPRestored
from saru.ha.drivers import Drivers, TransitionCallback, VetoCallback
from saru.ha.node import HACommandError, HANode
from saru.ha.vrrp import Cause, Machine, State, Transition
from saru.model import HASettings
from tests.unit.doubles import until

VIP = "10.0.0.1"
PRIMARY, PEER = "192.0.2.1", "192.0.2.2"


class FakeVRRP:
    """A VRRP instance that changes state when the test says (``become``), like the real one would."""

    def __init__(self, on_transition: TransitionCallback, before_master: VetoCallback) -> None:
        self._on_transition, self._before_master = on_transition, before_master
        self.state = State.INIT
        self.master_address: str | None = None
        self.primary: str | None = PRIMARY
        self.sources: frozenset[str] = frozenset()
        self.machine: Machine | None = None
        self.counters = {"other_master_seen": 0, "transitions": 0}
        self.priority: int | None = None
        self.stops: list[bool] = []
        self.resigned: list[float] = []
        self.takeovers = 0

    async def start(self) -> None:
        await self.become(State.BACKUP, "started", Cause.STARTUP)

    async def stop(self, graceful: bool = True) -> None:
        self.stops.append(graceful)
        if self.state is not State.INIT:
            await self.become(State.INIT, "stopped", Cause.SHUTDOWN)

    async def become(self, new: State, reason: str, cause: Cause) -> None:
        if new is State.MASTER and await self._before_master() is False:
            return
        old, self.state = self.state, new
        self.master_address = PRIMARY if new is State.MASTER else None
        await self._on_transition(Transition(old, new, reason, cause))

    def set_priority(self, effective: int) -> None:
        self.priority = effective

    def resign(self, hold: float) -> None:
        self.resigned.append(hold)

    def takeover(self) -> None:
        self.takeovers += 1


class World:
    """The node with fake drivers; ``log`` is what happened to the VIP and the table, in order."""

    def __init__(self, stale_vip: bool = False, vip_check_interval: float = 0.0) -> None:
        self.log: list[str] = []
        self.events: list[Event] = []
        self.vips_on: set[str] = {VIP} if stale_vip else set()
        self.link: bool | None = True
        self.instances: list[FakeVRRP] = []
        self.table_fails = False
        world = self

        class FakeVIP:
            async def add(self, announce: bool = True) -> None:
                world.log.append("vip add")
                world.vips_on.add(VIP)
                if announce:
                    await self.announce()

            async def announce(self) -> None:
                world.log.append("vip announce")

            async def remove(self) -> None:
                world.log.append("vip remove")
                world.vips_on.clear()

            async def present(self) -> list[str]:
                return sorted(world.vips_on)

        def vrrp(settings: HASettings, *, primary: str | None, on_transition: TransitionCallback,
                 before_master: VetoCallback) -> FakeVRRP:
            self.instances.append(FakeVRRP(on_transition, before_master))
            return self.instances[-1]

        async def set_active(active: bool) -> None:
            self.log.append(f"table {'on' if active else 'off'}")
            if self.table_fails:
                raise OSError("no table today")

        self.settings = HASettings(interface="test0", vips=(ipaddress.ip_interface(f"{VIP}/24"),), vipcheck=False)
        self.node = HANode(self.settings, set_active=set_active, emit=self.events.append,
                           vip_check_interval=vip_check_interval,
                           drivers=Drivers(vrrp=vrrp, vip=lambda _s: FakeVIP(), link=lambda _i: self.link))

    @property
    def vrrp(self) -> FakeVRRP:
        return self.instances[-1]

    def of(self, kind: type[Event]) -> list[Event]:
        return [e for e in self.events if isinstance(e, kind)]



@pytest.fixture
async def world() -> AsyncIterator[World]:
    world = World()
    await world.node.start()
    yield world
    await world.node.stop()


async def test_start_cleans_a_stale_vip_then_joins_as_backup() -> None:
    world = World(stale_vip=True)
    await world.node.start()
    try:
        assert world.log == ["vip remove"]
        (change,) = world.of(VIPChange)
        assert isinstance(change, VIPChange) and not change.up and "previous run" in change.detail
        assert world.vrrp.priority == 100 and world.node.state == "backup"
        snap = world.node.snapshot()
        assert (snap["state"], snap["vip_up"], snap["vips"], snap["primary"]) == ("backup", False, [f"{VIP}/24"],
                                                                                  PRIMARY)
    finally:
        await world.node.stop()


async def test_becoming_master_programs_the_table_before_announcing_the_vip(world: World) -> None:
    await world.vrrp.become(State.MASTER, "master down timer expired", Cause.MASTER_DOWN)
    assert world.log == ["vip add", "table on", "vip announce"]
    assert world.node.state == "master" and world.node.snapshot()["vip_up"] is True
    states = [e.state for e in world.of(HAStateChange) if isinstance(e, HAStateChange)]
    assert states == ["backup", "master"] and world.node.counters["transitions"] == 2


async def test_a_table_that_fails_on_becoming_master_is_said_and_the_vip_still_held(world: World) -> None:
    world.table_fails = True
    await world.vrrp.become(State.MASTER, "master down timer expired", Cause.MASTER_DOWN)
    assert world.log == ["vip add", "table on", "vip announce"] and world.node.state == "master"
    assert [e.text for e in world.of(HAProblem) if isinstance(e, HAProblem)] == [
        "programming the table on becoming master failed: no table today"]


async def test_leaving_master_removes_the_vip_then_clears_the_table(world: World) -> None:
    await world.vrrp.become(State.MASTER, "elected", Cause.MASTER_DOWN)
    world.log.clear()
    await world.vrrp.become(State.BACKUP, "higher priority master", Cause.HIGHER_PRIORITY)
    assert world.log == ["vip remove", "table off"]
    assert world.node.state == "backup" and world.node.reason == "higher priority master"


async def test_resign_and_takeover_say_why_they_cannot(world: World) -> None:
    with pytest.raises(HACommandError, match="this node is BACKUP, not MASTER: nothing to resign"):
        world.node.resign(5)
    await world.vrrp.become(State.MASTER, "elected", Cause.MASTER_DOWN)
    world.node.resign(5)
    assert world.vrrp.resigned == [5] and world.node.snapshot()["resigned_until"] is not None
    world.node.takeover()
    assert world.vrrp.takeovers == 1 and world.node.snapshot()["resigned_until"] is None
    idle = World()
    with pytest.raises(HACommandError, match="this node is INIT: VRRP is not running"):
        idle.node.takeover()


async def test_link_loss_is_a_fault_and_the_link_back_rejoins_as_backup(world: World) -> None:
    await world.vrrp.become(State.MASTER, "elected", Cause.MASTER_DOWN)
    first = world.vrrp
    world.log.clear()
    world.link = False
    await until(lambda: world.node.state == "fault")
    assert first.stops == [False]  # no priority-0 advert on a dead link
    await until(lambda: "table off" in world.log)
    assert world.log[0] == "vip remove" and not world.vips_on
    world.link = True
    await until(lambda: world.node.state == "backup")
    assert len(world.instances) == 2 and world.vrrp is not first


async def test_a_vip_removed_behind_the_masters_back_is_restored() -> None:
    world = World(vip_check_interval=0.02)
    await world.node.start()
    try:
        await world.vrrp.become(State.MASTER, "elected", Cause.MASTER_DOWN)
        world.vips_on.clear()  # `ip addr del` by hand
        await until(lambda: world.of(VIPRestored))
        assert world.vips_on == {VIP} and world.log[-2:] == ["vip add", "vip announce"]
    finally:
        await world.node.stop()


async def test_a_graceful_stop_leaves_master_in_order() -> None:
    world = World()
    await world.node.start()
    await world.vrrp.become(State.MASTER, "elected", Cause.MASTER_DOWN)
    world.log.clear()
    vrrp = world.vrrp
    await world.node.stop()
    assert vrrp.stops == [True] and world.log[:2] == ["vip remove", "table off"]
    assert world.node.state == "init" and not world.vips_on


async def test_split_brain_is_seen_and_resolved(world: World) -> None:
    await world.vrrp.become(State.MASTER, "elected", Cause.MASTER_DOWN)
    world.node.since -= 60  # an established master
    world.node.peer_macs[PEER] = "02:00:00:00:00:02"  # known: nothing to learn from the network
    world.vrrp.master_address = PEER
    world.vrrp.counters["other_master_seen"] = 1  # another master's advert, heard while master
    await until(lambda: world.of(SplitBrain))
    (event,) = world.of(SplitBrain)
    assert isinstance(event, SplitBrain) and event.peer == PEER and world.node.snapshot()["split_brain"]
    await until(lambda: world.of(SplitBrainResolved))  # quiet for a while: over
    assert world.node.snapshot()["split_brain"] is False
