"""``saru doctor`` on the guide's topology in network namespaces: a correct DR director, a DR real that
answers ARP for the VIP, a DR real without the VIP, a standby director with [ha], a NAT director, a NAT
real whose default route bypasses the director, and IP forwarding off.

Two topologies (DR and NAT), each shared by the tests of this module; every test that breaks something
repairs it in ``finally``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import require
from tests.lab.guide import REALS, VIP, VIP6, Topology

pytestmark = pytest.mark.timeout(120)


def _build(tmp: Path, mode: str) -> Iterator[Topology]:
    ok, why = Topology.available()
    require(ok, why)
    with Topology(tmp) as topo:
        topo.mode(mode)
        topo.nginx("fe1")
        topo.nginx("fe2")
        yield topo


@pytest.fixture(scope="module")
def dr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    yield from _build(tmp_path_factory.mktemp("doctor-dr"), "dr")


@pytest.fixture(scope="module")
def nat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    yield from _build(tmp_path_factory.mktemp("doctor-nat"), "nat")


def config(topo: Topology, forward: str) -> Path:
    """The guide's ldirectord.cf, for IPv4 and IPv6."""
    column = 2 if forward == "gate" else 0
    reals = "".join(f"\treal={REALS[role][column]}:80 {forward}\n" for role in ("fe1", "fe2"))
    reals6 = "".join(f"\treal6=[{REALS[role][column + 1]}]:80 {forward}\n" for role in ("fe1", "fe2"))
    path = topo.workdir / f"{forward}.cf"
    path.write_text(f"checktimeout=5\nvirtual={VIP}:80\n{reals}\tfallback=127.0.0.1:80 gate\n"
                    "\tservice=http\n\tscheduler=rr\n\tprotocol=tcp\n\tchecktype=negotiate\n\n"
                    f"virtual6=[{VIP6}]:80\n{reals6}\tscheduler=rr\n")
    return path


def doctor(topo: Topology, role: str, *args: str) -> tuple[int, dict[str, dict[str, Any]]]:
    # probes wait for answers: a generous timeout so a loaded CI machine does not read "no answer"
    got = topo.run(role, sys.executable, "-m", "saru", "doctor", "--json", "--timeout", "1.5", *args,
                   check=False, timeout=90)
    assert got.returncode in (0, 1), got.stderr
    items = {item["name"]: item for item in json.loads(got.stdout)["items"]}
    return got.returncode, items


def mac(topo: Topology, role: str) -> str:
    link = json.loads(topo.run(role, "ip", "-j", "link", "show", "eth0").stdout)[0]
    return str(link["address"]).lower()


def statuses(items: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {name: item["status"] for name, item in items.items()}


# --------------------------------------------------------------------------------------------------


def test_correct_dr_director_is_all_ok(dr: Topology) -> None:
    rc, items = doctor(dr, "ld1", "-c", str(config(dr, "gate")))
    assert rc == 0, {name: (i["status"], i["detail"]) for name, i in items.items() if i["status"] != "ok"}
    assert set(statuses(items).values()) == {"ok"}, statuses(items)
    for name in ("IPv4 forwarding (net.ipv4.ip_forward)", f"VIP {VIP} on this director",
                 f"no real server answers ARP for {VIP}", "DR real 10.77.6.11 accepts packets for 10.77.6.240:80",
                 "DR real 10.77.6.12 on a directly attached network",
                 "ICMP redirects off on eth0 (one-armed director)", f"no real server answers neighbour "
                 f"solicitations for {VIP6}", f"DR real fd00:6::12 accepts packets for [{VIP6}]:80"):
        assert name in items


def test_dr_real_answering_arp_for_the_vip_is_caught(dr: Topology) -> None:
    try:
        for key in ("all", "eth0"):
            dr.sysctl("fe1", f"net.ipv4.conf.{key}.arp_ignore=0")
        rc, items = doctor(dr, "ld1", "-c", str(config(dr, "gate")))
    finally:
        for key in ("all", "eth0"):
            dr.sysctl("fe1", f"net.ipv4.conf.{key}.arp_ignore=1")
    assert rc == 1
    item = items[f"no real server answers ARP for {VIP}"]
    assert item["status"] == "fail"
    assert "real 10.77.6.11" in item["detail"] and mac(dr, "fe1") in item["detail"]
    assert "10.77.6.12" not in item["detail"]  # the well-configured real is not blamed
    assert "arp_ignore=1" in item["fix"]
    assert [n for n, s in statuses(items).items() if s != "ok"] == [item["name"]]


def test_dr_real_without_the_vip_on_lo_is_caught(dr: Topology) -> None:
    try:
        dr.ip("fe2", "addr", "del", f"{VIP}/32", "dev", "lo")
        rc, items = doctor(dr, "ld1", "-c", str(config(dr, "gate")))
    finally:
        dr.ip("fe2", "addr", "add", f"{VIP}/32", "dev", "lo")
    assert rc == 1
    item = items[f"DR real 10.77.6.12 accepts packets for {VIP}:80"]
    assert item["status"] == "fail" and f"saru realserver apply --vip {VIP}" in item["fix"]
    assert items[f"DR real 10.77.6.11 accepts packets for {VIP}:80"]["status"] == "ok"


def test_dr_real_with_the_ipv6_vip_on_its_nic_is_caught(dr: Topology) -> None:
    try:
        dr.ip("fe2", "addr", "add", f"{VIP6}/64", "dev", "eth0", "nodad")
        rc, items = doctor(dr, "ld1", "-c", str(config(dr, "gate")))
    finally:
        dr.ip("fe2", "addr", "del", f"{VIP6}/64", "dev", "eth0")
    assert rc == 1
    item = items[f"no real server answers neighbour solicitations for {VIP6}"]
    assert item["status"] == "fail" and "real fd00:6::12" in item["detail"] and mac(dr, "fe2") in item["detail"]
    assert items[f"no real server answers ARP for {VIP}"]["status"] == "ok"


def test_standby_director_with_ha_says_standby_not_fail(dr: Topology) -> None:
    settings = dr.workdir / "saru.toml"
    settings.write_text(f'[director]\nconfig = "{config(dr, "gate")}"\n\n'
                        f'[ha]\ninterface = "eth0"\nvips = ["{VIP}/24", "{VIP6}/64"]\n')
    rc, items = doctor(dr, "ld2", "--settings", str(settings))
    item = items[f"VIP {VIP} on this director"]
    assert item["status"] == "standby" and mac(dr, "ld1") in item["detail"]
    assert items[f"VIP {VIP6} on this director"]["status"] == "standby"
    assert items["IPv4 forwarding (net.ipv4.ip_forward)"]["status"] == "warn"  # ld2 forwards nothing: DR is fine
    assert rc == 0


def test_nat_director_ok_then_real_routing_around_it_is_caught(nat: Topology) -> None:
    cf = str(config(nat, "masq"))
    rc, items = doctor(nat, "ld1", "-c", cf)
    assert rc == 0 and set(statuses(items).values()) == {"ok"}, statuses(items)
    assert items["connection tracking (NAT)"]["status"] == "ok"
    try:  # another router on the reals' network, and fe1's default route pointing at it
        nat.add_address("rt", "10.77.7.254/24", "fd00:7::254/64")
        nat.ip("fe1", "route", "replace", "default", "via", "10.77.7.254")
        nat.ip("fe2", "-6", "route", "replace", "default", "via", "fd00:7::254")
        rc, items = doctor(nat, "ld1", "-c", cf)
    finally:
        nat.ip("fe1", "route", "replace", "default", "via", "10.77.7.1")
        nat.ip("fe2", "-6", "route", "replace", "default", "via", "fd00:7::1")
        nat.run("rt", "ip", "addr", "del", "10.77.7.254/24", "dev", "eth0", check=False)
        nat.run("rt", "ip", "addr", "del", "fd00:7::254/64", "dev", "eth0", check=False)
    assert rc == 1
    item = items["NAT real 10.77.7.11 routes replies through this director"]
    assert item["status"] == "fail" and "default route does not point at 10.77.7.1" in item["detail"]
    assert item["fix"] == "on 10.77.7.11: ip route replace default via 10.77.7.1"
    assert items["NAT real 10.77.7.12 routes replies through this director"]["status"] == "ok"
    item6 = items["NAT real fd00:7::12 routes replies through this director"]
    assert item6["status"] == "fail" and item6["fix"] == "on fd00:7::12: ip -6 route replace default via fd00:7::1"
    assert items["NAT real fd00:7::11 routes replies through this director"]["status"] == "ok"


def test_ip_forward_off_is_caught_on_a_nat_director(nat: Topology) -> None:
    try:
        nat.sysctl("ld1", "net.ipv4.ip_forward=0")
        rc, items = doctor(nat, "ld1", "-c", str(config(nat, "masq")), "--no-probe")
    finally:
        nat.sysctl("ld1", "net.ipv4.ip_forward=1")
    assert rc == 1
    item = items["IPv4 forwarding (net.ipv4.ip_forward)"]
    assert item["status"] == "fail" and "sysctl -w net.ipv4.ip_forward=1" in item["fix"]


def test_text_output_is_the_checklist(dr: Topology) -> None:
    got = dr.run("ld1", sys.executable, "-m", "saru", "doctor", "-c", str(config(dr, "gate")), "--no-probe",
                 check=False)
    assert got.returncode == 0, got.stderr
    lines = got.stdout.splitlines()
    assert all(line.startswith(("[ ok ] ", "[warn] ", "       fix: ")) for line in lines[:-1]), lines
    assert lines[-1].endswith("0 failed, 0 warnings")
    assert subprocess.run([sys.executable, "-m", "saru", "doctor", "-c", "/nonexistent.cf"], capture_output=True,
                          check=False).returncode == 2
