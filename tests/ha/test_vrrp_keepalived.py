"""Saru's VRRPv3 speaker against real keepalived (Debian 2.2.7, ``vrrp_version 3``) in network namespaces.

Two hosts on one bridge: ``s1`` (10.98.0.1, Saru's ``VRRPInstance`` opened in s1 from this process) and
``k1`` (10.98.0.2, keepalived in the foreground). keepalived's state is read from its notify script's
file, polled with deadlines; failover times are measured from the stop/kill to the moment the new master
is observed, and compared with RFC 5798's Master_Down_Interval and Skew_Time.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import resource
import shutil
import signal
import socket
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from saru.ha.vrrp import (
    GROUP_V4,
    IPPROTO_VRRP,
    Advert,
    State,
    Transition,
    early_veto_lead,
    encode_advert,
    master_down_interval,
    skew_time,
)
from saru.ha.vrrp_socket import VRRPInstance
from saru.model import HASettings
from tests.helpers import require
from tests.lab import Host, Segment, async_wait_for, stop_process

VIP4 = "10.98.0.50"
VIP6 = "fd00:98::50"
S1, K1 = "10.98.0.1", "10.98.0.2"
VRID = 51
INTERVAL = 0.1
SLACK = 0.2  # scheduling + notify-script fork + polling on a loaded 2-core box (measured: < 0.02 s)

KEEPALIVED_CONF = """\
global_defs {{
  vrrp_version 3
  router_id k1
  script_user root
}}
vrrp_instance VI_1 {{
  state BACKUP
  interface eth0
  virtual_router_id {vrid}
  priority {priority}
  advert_int {advert_int}
{extra}  notify {notify}
  virtual_ipaddress {{
    {vip}
  }}
}}
"""


@pytest.fixture(scope="module")
def lan() -> Iterator[Segment]:
    ok, why = Segment.available()
    require(ok, why)
    require(shutil.which("keepalived") is not None, "keepalived is not installed")
    with Segment({"s1": [f"{S1}/24", "fd00:98::1/64"], "k1": [f"{K1}/24", "fd00:98::2/64"]}, tag="v") as segment:
        yield segment


@dataclass
class Keepalived:
    """One keepalived run in ``host``: config, notify file, processes."""

    host: Host
    workdir: Path
    priority: int
    vip: str = f"{VIP4}/24"
    extra: str = ""
    proc: subprocess.Popen[str] | None = None

    def start(self) -> Keepalived:
        self.workdir.mkdir(parents=True, exist_ok=True)
        notify = self.workdir / "notify.sh"
        self.state_file.write_text("")
        notify.write_text(f'#!/bin/sh\necho "$3 $4" >> {self.state_file}\n')
        notify.chmod(0o755)
        conf = self.workdir / "keepalived.conf"
        conf.write_text(KEEPALIVED_CONF.format(vrid=VRID, priority=self.priority, advert_int=INTERVAL,
                                               extra=self.extra, notify=notify, vip=self.vip))
        log = (self.workdir / "keepalived.log").open("a")
        self.proc = self.host.popen("keepalived", "-n", "-l", "-D", "-P", "-R", "-f", str(conf),
                                    "-p", str(self.workdir / "keepalived.pid"),
                                    "-r", str(self.workdir / "vrrp.pid"),
                                    "-c", str(self.workdir / "checkers.pid"),
                                    stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return self

    @property
    def state_file(self) -> Path:
        return self.workdir / "state"

    def states(self) -> list[str]:
        """keepalived's transitions so far (BACKUP, MASTER, FAULT, STOP), oldest first."""
        return [line.split()[0] for line in self.state_file.read_text().splitlines() if line.strip()]

    def state(self) -> str | None:
        states = self.states()
        return states[-1] if states else None

    async def wait_state(self, state: str, timeout: float, interval: float = 0.003) -> None:
        try:
            await async_wait_for(lambda: self.state() == state, timeout, interval=interval,
                                 what=f"keepalived {state}")
        except TimeoutError as exc:
            raise AssertionError(f"{exc}; states {self.states()}; log:\n{self.log()}") from None

    def log(self) -> str:
        path = self.workdir / "keepalived.log"
        return path.read_text()[-3000:] if path.exists() else ""

    def kill_vrrp(self) -> None:
        """SIGKILL the VRRP child: the router vanishes without a priority-0 advert."""
        os.kill(int((self.workdir / "vrrp.pid").read_text().split()[0]), signal.SIGKILL)

    def terminate(self) -> None:
        """SIGTERM without waiting (the event loop keeps running): keepalived sends priority 0."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        """SIGTERM: keepalived sends priority 0 and removes its VIP."""
        if self.proc is not None:
            stop_process(self.proc)


@pytest.fixture
async def world(lan: Segment, tmp_path: Path) -> AsyncIterator[World]:
    w = World(lan, tmp_path)
    try:
        yield w
    finally:
        for inst in w.instances:
            await inst.stop(graceful=False)
        for k in w.keepaliveds:
            k.stop()
        drop_vips(lan["k1"])


def drop_vips(host: Host) -> None:
    """Remove VIPs a killed keepalived left behind (SIGKILL skips its cleanup)."""
    for vip, cidr in ((VIP4, f"{VIP4}/24"), (VIP6, f"{VIP6}/64")):
        if vip in host.addresses():
            host.ip("addr", "del", cidr, "dev", "eth0")


class World:
    """The test's keepalived runs and Saru instances, all stopped afterwards."""

    def __init__(self, lan: Segment, tmp: Path) -> None:
        self.lan = lan
        self.tmp = tmp
        self.instances: list[VRRPInstance] = []
        self.keepaliveds: list[Keepalived] = []
        self.events: list[tuple[State, State, str]] = []

    def keepalived(self, priority: int, **kwargs: str) -> Keepalived:
        k = Keepalived(self.lan["k1"], self.tmp / f"ka{len(self.keepaliveds)}", priority, **kwargs).start()
        self.keepaliveds.append(k)
        return k

    async def saru(self, priority: int, *, preempt: bool = False, vips: tuple[str, ...] = (f"{VIP4}/24",),
                   peers: tuple[str, ...] = (),
                   before_master: Callable[[], Awaitable[bool | None]] | None = None) -> VRRPInstance:
        settings = HASettings(interface="eth0", vips=tuple(ipaddress.ip_interface(v) for v in vips),
                              virtual_router_id=VRID, priority=priority, advert_interval=INTERVAL,
                              preempt=preempt, unicast_peers=peers)

        async def record(change: Transition) -> None:
            self.events.append((change.old, change.new, change.reason))

        inst = VRRPInstance(settings, on_transition=record, before_master=before_master)
        with self.lan["s1"].enter():  # the raw socket is opened in s1 and stays there
            await inst.start()
        self.instances.append(inst)
        return inst

    async def wait_saru(self, inst: VRRPInstance, state: State, timeout: float) -> None:
        await async_wait_for(lambda: inst.state is state, timeout, interval=0.003, what=f"saru {state.value}")


def measured(name: str, value: float) -> None:
    """Report a measurement (shown with ``-rP`` or ``-s``)."""
    print(f"MEASURED {name} = {value}")


async def _timed(coro: object) -> float:
    loop = asyncio.get_running_loop()
    start = loop.time()
    await coro  # type: ignore[misc]
    return loop.time() - start


async def _observe(seconds: float) -> float:
    """Let the loop run for an observation window; returns the CPU seconds this process used meanwhile."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    await asyncio.sleep(seconds)
    after = resource.getrusage(resource.RUSAGE_SELF)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


# --------------------------------------------------------------------------------------------------
# (a) Saru master, keepalived backup
# --------------------------------------------------------------------------------------------------


async def test_saru_master_keepalived_backup(world: World) -> None:
    saru = await world.saru(200)
    await world.wait_saru(saru, State.MASTER, 2)
    k = world.keepalived(100)
    await k.wait_state("BACKUP", 5)

    cpu = await _observe(2.0)  # > 5 of keepalived's master-down intervals
    assert k.states() == ["BACKUP"], k.log()
    assert VIP4 not in world.lan["k1"].addresses(4)
    assert saru.state is State.MASTER
    assert saru.counters["adverts_sent"] >= 15
    assert saru.counters["other_master_seen"] == 0
    measured("cpu_share_master_0.1s", cpu / 2.0)
    assert cpu / 2.0 < 0.01, f"VRRP master used {cpu / 2.0:.2%} CPU at a 0.1 s advert interval"

    # ungraceful stop: keepalived waits its Master_Down_Interval for our 0.1 s adverts
    limit = master_down_interval(100, INTERVAL)
    took = await _timed(_stop_then(saru, False, k.wait_state("MASTER", 3)))
    measured("keepalived_takeover_after_silence_s", round(took, 3))
    assert limit - INTERVAL - 0.05 < took < limit + SLACK, f"took {took:.3f} s, master-down is {limit:.3f} s"
    await async_wait_for(lambda: VIP4 in world.lan["k1"].addresses(4), 2, what="VIP on keepalived's host")

    # Saru back with preemption takes over; then a graceful stop hands over within skew time
    saru2 = await world.saru(200, preempt=True)
    await world.wait_saru(saru2, State.MASTER, 2)
    await k.wait_state("BACKUP", 2)
    skew = skew_time(100, INTERVAL)
    took = await _timed(_stop_then(saru2, True, k.wait_state("MASTER", 3)))
    measured("keepalived_takeover_after_priority0_s", round(took, 3))
    assert took < skew + SLACK < limit, f"took {took:.3f} s, skew is {skew:.3f} s"


async def _stop_then(inst: VRRPInstance, graceful: bool, waiter: object) -> None:
    await inst.stop(graceful=graceful)
    await waiter  # type: ignore[misc]


# --------------------------------------------------------------------------------------------------
# (b) keepalived master, Saru backup
# --------------------------------------------------------------------------------------------------


async def test_keepalived_master_saru_backup(world: World) -> None:
    k = world.keepalived(150)
    await k.wait_state("MASTER", 5)
    saru = await world.saru(100)
    cpu = await _observe(1.0)
    measured("cpu_share_backup_0.1s", cpu)
    assert cpu < 0.01, f"VRRP backup used {cpu:.2%} CPU receiving 0.1 s adverts"
    assert saru.state is State.BACKUP
    counters = saru.counters
    assert counters["adverts_received"] >= 7, counters
    assert counters["bad_checksum"] == counters["malformed"] == counters["bad_ttl"] == 0, counters
    assert counters["address_mismatch"] == 0, counters
    assert counters["adverts_sent"] == 0
    assert saru.master_address == K1
    assert saru.machine is not None and saru.machine.master_adver_interval == INTERVAL
    assert world.events == [(State.INIT, State.BACKUP, "startup")]

    # keepalived vanishes (SIGKILL, no priority 0): we take over after our Master_Down_Interval
    limit = master_down_interval(100, INTERVAL)
    k.kill_vrrp()
    took = await _timed(world.wait_saru(saru, State.MASTER, 3))
    measured("saru_takeover_after_silence_s", round(took, 3))
    assert limit - INTERVAL - 0.05 < took < limit + SLACK, f"took {took:.3f} s, master-down is {limit:.3f} s"
    await async_wait_for(lambda: world.events[-1][1] is State.MASTER, 1, what="transition delivered")
    assert world.events[-1][:2] == (State.BACKUP, State.MASTER)
    assert "no advertisement from master 10.98.0.2" in world.events[-1][2]
    k.stop()
    drop_vips(world.lan["k1"])

    # keepalived (priority 150, preempting) comes back and takes over; its SIGTERM sends priority 0
    k2 = world.keepalived(150)
    await k2.wait_state("MASTER", 5)
    await world.wait_saru(saru, State.BACKUP, 2)
    await async_wait_for(lambda: world.events[-1][1] is State.BACKUP, 1, what="transition delivered")
    assert "higher priority 150" in world.events[-1][2]
    skew = skew_time(100, INTERVAL)
    k2.terminate()
    took = await _timed(world.wait_saru(saru, State.MASTER, 3))
    measured("saru_takeover_after_priority0_s", round(took, 3))
    assert took < skew + SLACK, f"took {took:.3f} s after SIGTERM, skew is {skew:.3f} s"
    await async_wait_for(lambda: world.events[-1][1] is State.MASTER, 1, what="transition delivered")
    assert "resigned (priority 0)" in world.events[-1][2]


# --------------------------------------------------------------------------------------------------
# (c) unicast
# --------------------------------------------------------------------------------------------------


async def test_unicast_both_ways(world: World) -> None:
    k = world.keepalived(150, extra=f"  unicast_src_ip {K1}\n  unicast_peer {{\n    {S1}\n  }}\n")
    await k.wait_state("MASTER", 5)

    stranger = await world.saru(100, peers=("10.98.0.3",))  # keepalived is not a configured peer
    await async_wait_for(lambda: stranger.counters["bad_source"] >= 3, 2, what="adverts dropped as bad source")
    assert stranger.counters["adverts_received"] == 0
    await stranger.stop(graceful=False)

    saru = await world.saru(100, peers=(K1,))
    await _observe(0.8)
    assert saru.state is State.BACKUP
    assert saru.counters["adverts_received"] >= 5 and saru.counters["bad_source"] == 0, saru.counters
    assert saru.master_address == K1

    k.terminate()  # priority 0 by unicast: we take over within skew time
    took = await _timed(world.wait_saru(saru, State.MASTER, 1))
    assert took < skew_time(100, INTERVAL) + SLACK
    k.stop()

    # keepalived back at a lower priority, no preemption: our unicast adverts keep it backup
    k2 = world.keepalived(50, extra=f"  nopreempt\n  unicast_src_ip {K1}\n  unicast_peer {{\n    {S1}\n  }}\n")
    await k2.wait_state("BACKUP", 5)
    await _observe(1.0)
    assert k2.states() == ["BACKUP"], k2.log()
    assert saru.state is State.MASTER and saru.counters["other_master_seen"] == 0


# --------------------------------------------------------------------------------------------------
# (d) IPv6: ff02::12 from link-local sources
# --------------------------------------------------------------------------------------------------


async def test_ipv6(world: World) -> None:
    k = world.keepalived(150, vip=f"{VIP6}/64")
    await k.wait_state("MASTER", 5)
    saru = await world.saru(100, vips=(f"{VIP6}/64",))
    assert saru.family == 6 and saru.primary == world.lan["s1"].link_local()
    await _observe(0.8)
    assert saru.state is State.BACKUP
    counters = saru.counters
    assert counters["adverts_received"] >= 5 and counters["bad_checksum"] == counters["bad_ttl"] == 0, counters
    assert saru.master_address == world.lan["k1"].link_local()

    limit = master_down_interval(100, INTERVAL)
    k.kill_vrrp()
    took = await _timed(world.wait_saru(saru, State.MASTER, 3))
    measured("saru_takeover_ipv6_s", round(took, 3))
    assert took < limit + SLACK
    k.stop()
    drop_vips(world.lan["k1"])

    k2 = world.keepalived(50, vip=f"{VIP6}/64", extra="  nopreempt\n")
    await k2.wait_state("BACKUP", 5)
    await _observe(1.0)  # keepalived accepts our IPv6 adverts (checksum, hop limit): it stays backup
    assert k2.states() == ["BACKUP"], k2.log()
    assert VIP6 not in world.lan["k1"].addresses(6)
    await saru.stop(graceful=True)
    await k2.wait_state("MASTER", 1)


# --------------------------------------------------------------------------------------------------
# (e) operator actions and the before-master veto, on the wire
# --------------------------------------------------------------------------------------------------


async def test_takeover_and_resign_against_keepalived(world: World) -> None:
    k = world.keepalived(150, extra="  nopreempt\n")
    await k.wait_state("MASTER", 5)
    saru = await world.saru(100)
    await async_wait_for(lambda: saru.counters["adverts_received"] >= 3, 2, what="keepalived's adverts")

    saru.takeover()  # 254 beats keepalived's 150 at once
    assert saru.state is State.MASTER
    await k.wait_state("BACKUP", 1)
    await _observe(1.0)  # the takeover ended (we advertise 100 again); nopreempt keepalived stays backup
    assert saru.machine is not None and saru.machine.advertised_priority == 100
    assert k.state() == "BACKUP" and saru.state is State.MASTER

    saru.resign(1.5)  # priority 0: keepalived within its skew time; we must not come back during the hold
    await k.wait_state("MASTER", skew_time(150, INTERVAL) + SLACK)
    await _observe(0.5)
    assert saru.state is State.BACKUP and saru.master_address == K1


async def test_before_master_veto_on_the_wire(world: World) -> None:
    asked: list[float] = []

    async def veto_once() -> bool:
        asked.append(asyncio.get_running_loop().time())
        return len(asked) > 1

    saru = await world.saru(100, before_master=veto_once)  # alone on the segment
    await world.wait_saru(saru, State.MASTER, 3)
    # asked early (ahead of the Master_Down_Timer), refused; asked afresh when the timer ran out
    lead = early_veto_lead(master_down_interval(100, INTERVAL), INTERVAL, HASettings().vipcheck_timeout)
    assert lead > 0
    assert len(asked) == 2 and lead - 0.02 < asked[1] - asked[0] < lead + SLACK
    assert saru.counters["adverts_sent"] >= 1


async def test_the_veto_is_asked_ahead_of_the_master_down_timer(world: World) -> None:
    """The VIPcheck runs while the Master_Down_Timer is still counting: taking over does not wait
    for it. Steady adverts start none; the one asked when keepalived went quiet was under way before
    the timer ran out, and mastership followed the timer, not the timer plus the veto's time."""
    veto_time = 0.15
    asked: list[tuple[float, float | None]] = []  # (when asked, the down timer's deadline then)
    saru: VRRPInstance | None = None

    async def probe_like() -> bool:
        loop = asyncio.get_running_loop()
        assert saru is not None
        asked.append((loop.time(), saru._timer_at))
        await asyncio.sleep(veto_time)  # a VIPcheck that nobody answers takes its whole timeout
        return True

    k = world.keepalived(150)
    await k.wait_state("MASTER", 5)
    saru = await world.saru(100, before_master=probe_like)
    await _observe(1.0)
    assert saru.state is State.BACKUP and asked == [], "adverts every 0.1 s must not start a veto"

    limit = master_down_interval(100, INTERVAL)
    lead = early_veto_lead(limit, INTERVAL, veto_time)
    assert lead == veto_time
    k.kill_vrrp()
    took = await _timed(world.wait_saru(saru, State.MASTER, 3))
    measured("saru_takeover_with_early_veto_s", round(took, 3))
    assert len(asked) == 1, asked
    when, deadline = asked[0]
    assert deadline is not None and when < deadline, "the veto was asked only after the timer ran out"
    k.stop()
    drop_vips(world.lan["k1"])


async def test_bad_packets_are_counted_not_obeyed(world: World) -> None:
    """Crafted adverts from k1 (TTL 64, bad checksum, VRRPv2, other VRID, priority 0 with TTL 64)."""
    saru = await world.saru(100)
    await world.wait_saru(saru, State.MASTER, 2)
    good = encode_advert(Advert(VRID, 254, 10, (VIP4,)), K1, GROUP_V4)
    with world.lan["k1"].enter():
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_VRRP)
    with sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"eth0")
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 64)
        sock.sendto(good, (GROUP_V4, 0))  # would make us backup, but it may have been routed
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
        sock.sendto(good[:6] + b"\0\0" + good[8:], (GROUP_V4, 0))
        sock.sendto(bytes([0x21]) + good[1:], (GROUP_V4, 0))
        sock.sendto(encode_advert(Advert(VRID + 1, 254, 10, (VIP4,)), K1, GROUP_V4), (GROUP_V4, 0))
        sock.sendto(encode_advert(Advert(VRID, 254, 10, ()), K1, GROUP_V4)[:7], (GROUP_V4, 0))
        expected = {"bad_ttl": 1, "bad_checksum": 1, "bad_version": 1, "other_vrid": 1, "malformed": 1}
        await async_wait_for(lambda: all(saru.counters[k] >= n for k, n in expected.items()), 2,
                             what=f"counters {expected}")
        assert saru.state is State.MASTER and saru.counters["other_master_seen"] == 0
        sock.sendto(good, (GROUP_V4, 0))  # the same advert done right is obeyed
        await world.wait_saru(saru, State.BACKUP, 1)
    assert saru.counters["other_master_seen"] == 1 and saru.master_address == K1
