"""IPVS connection synchronisation between two directors (issue #5, item 7), on the real kernel.

The guest's root namespace is the active director (LVS-NAT: client and real-server namespaces
around it, ``lvs_nat``); a second namespace ``sv-bak`` is the standby director, linked to it by a
veth pair (IPVS, and its sync daemons, are per namespace). Saru starts a master sync daemon on the
active director and a backup daemon on the standby (``apply_sync`` with ``follow-ha``); a real
connection through the active director must show up in the standby's connection table.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator

import pytest

from saru.compat.ipvsadm import format_daemons
from saru.dataplane.ipvs import IpvsDataplane
from saru.dataplane.ipvs.sync import apply_sync, read_daemons
from saru.diff import diff
from saru.model import Dest, IPVSSyncSettings, Service, ServiceKey, ServiceSettings, Table
from tests.vm.guest.conftest import ipvsadm
from tests.vm.guest.lvs_nat import CLIENT, REAL_IPS, VIP, Topology, namespace, sh
from tests.vm.guest.test_saru_ipvsadm import saru_ipvsadm

BACKUP_NS = "sv-bak"
LINK = ("d-sync", "10.99.9.1", "10.99.9.2")  # active director's side, its address, the standby's
PORT = 8082  # not 80: lingering TIME_WAIT entries would count against later tests' VIP:80 dests
KEY = ServiceKey("tcp", VIP, PORT)
SYNCID = 7


def table() -> Table:
    return Table.of([Service(KEY, ServiceSettings("rr"), {(ip, 80): Dest(ip, 80, "masq", 1) for ip in REAL_IPS})])


def stop_all_daemons(*prefix: str) -> None:
    for role in ("master", "backup"):
        subprocess.run([*prefix, "ipvsadm", "--stop-daemon", role], capture_output=True, timeout=30, check=False)


def remove_standby() -> None:
    stop_all_daemons()
    stop_all_daemons("ip", "netns", "exec", BACKUP_NS)
    subprocess.run(["ip", "netns", "del", BACKUP_NS], capture_output=True, check=False)


@pytest.fixture
async def standby(lvs_nat: Topology) -> AsyncIterator[IpvsDataplane]:
    """The standby director's namespace and an IPVS data plane working in it."""
    plane = IpvsDataplane(netns=f"/run/netns/{BACKUP_NS}")
    try:
        namespace(BACKUP_NS, *LINK)
        await plane.start()
        yield plane
    finally:
        await plane.close()
        remove_standby()


def settings(interface: str) -> IPVSSyncSettings:
    return IPVSSyncSettings(interface=interface, syncid=SYNCID, role="follow-ha")


async def test_connections_reach_the_standby(dataplane: IpvsDataplane, standby: IpvsDataplane,
                                             lvs_nat: Topology, capsys: pytest.CaptureFixture[str]) -> None:
    await dataplane.apply(diff(Table(), table()))
    await standby.apply(diff(Table(), table()))
    assert await apply_sync(dataplane, settings(LINK[0]), "MASTER") == [
        f"started the master sync daemon (mcast={LINK[0]}, syncid={SYNCID})"]
    assert await apply_sync(standby, settings("eth0"), "BACKUP") == [
        f"started the backup sync daemon (mcast=eth0, syncid={SYNCID})"]
    assert await apply_sync(dataplane, settings(LINK[0]), "MASTER") == []  # in line: nothing to do

    # -L --daemon: byte for byte what ipvsadm prints, in both namespaces
    real = ipvsadm("-L", "--daemon")
    assert real.startswith(f"master sync daemon (mcast={LINK[0]}, syncid={SYNCID}")
    assert await saru_ipvsadm(capsys, "-L", "--daemon") == real
    in_standby = sh("ip", "netns", "exec", BACKUP_NS, "ipvsadm", "-L", "--daemon")
    assert in_standby.startswith(f"backup sync daemon (mcast=eth0, syncid={SYNCID}")
    assert format_daemons(await read_daemons(standby)) == in_standby

    # a real connection through the active director appears on the standby
    lvs_nat.requests(2, PORT)
    active = [e for e in await dataplane.connections() if e.virtual == (VIP, PORT)]
    assert active and {e.client[0] for e in active} == {CLIENT[3]}
    deadline = time.monotonic() + 30  # the master flushes its sync buffer every 2 s at most
    while True:
        synced = [e for e in await standby.connections() if e.virtual == (VIP, PORT)]
        if synced or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.25)
    assert synced, "no connection entry reached the standby's table"
    assert {(e.client, e.dest) for e in synced} <= {(e.client, e.dest) for e in active}
    listed = sh("ip", "netns", "exec", BACKUP_NS, "ipvsadm", "-Lnc").splitlines()
    assert any(f" {CLIENT[3]}:" in line and f" {VIP}:{PORT} " in line for line in listed), listed

    # follow-ha: the old master becomes backup, and the standby master
    assert await apply_sync(dataplane, settings(LINK[0]), "BACKUP") == [
        f"stopped the master sync daemon (mcast={LINK[0]}, syncid={SYNCID}, group=224.0.0.81)",
        f"started the backup sync daemon (mcast={LINK[0]}, syncid={SYNCID})"]
    assert ipvsadm("-L", "--daemon").startswith("backup sync daemon")
    # without [ipvs.sync], Saru stops what runs
    assert await apply_sync(dataplane, None) == [
        f"stopped the backup sync daemon (mcast={LINK[0]}, syncid={SYNCID}, group=224.0.0.81)"]
    assert ipvsadm("-L", "--daemon") == ""


async def test_start_and_stop_daemon_commands(standby: IpvsDataplane, capsys: pytest.CaptureFixture[str]) -> None:
    await saru_ipvsadm(capsys, "--start-daemon", "master", "--mcast-interface", LINK[0], "--syncid", "3",
                       "--mcast-group", "224.0.0.99", "--mcast-port", "8850", "--mcast-ttl", "2",
                       "--sync-maxlen", "1000")
    await saru_ipvsadm(capsys, "--start-daemon", "backup", "--mcast-interface", LINK[0], "--syncid", "4")
    real = ipvsadm("-L", "--daemon")
    assert real.splitlines()[0] == (f"master sync daemon (mcast={LINK[0]}, syncid=3, maxlen=1000, "
                                    "group=224.0.0.99, port=8850, ttl=2)")
    assert real.splitlines()[1].startswith(f"backup sync daemon (mcast={LINK[0]}, syncid=4")
    assert await saru_ipvsadm(capsys, "-L", "--daemon") == real
    assert [d.role for d in await read_daemons(standby)] == []  # the other namespace has none
    await saru_ipvsadm(capsys, "--stop-daemon", "master")
    assert ipvsadm("-L", "--daemon").startswith("backup sync daemon")
    await saru_ipvsadm(capsys, "--stop-daemon", "backup")
    assert ipvsadm("-L", "--daemon") == ""
