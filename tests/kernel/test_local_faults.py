"""Local faults provoked for real in ``saru-…`` network namespaces (issue #14 §2).

A ``Lab`` of two namespaces, ``d`` (the director, 10.77.1.1) and ``r`` (a real, 10.77.1.2), joined by
a veth pair:

* ``run_check`` in a Python process inside ``d`` (``ip netns exec``, which also bind-mounts the
  namespace's resolv.conf from /etc/netns/<name>/): a removed route, an unreachable route and a dead
  resolver are local faults, and so is the director's own link without carrier; a route that leads
  to nobody is the real's failure; a local nftables drop makes a ping check's send fail with
  ``EPERM`` (local);
* a real ``saru run`` in ``d`` checking a real HTTP server in ``r``: its route removed — the real
  stays up, the alarm is raised and cleared; the server stopped — the real goes down, as it should.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Self

import pytest

from tests.director import Director
from tests.helpers import free_port, require
from tests.lab import Lab

PROBE = """
import asyncio, json, sys
from saru.checks.base import run_check
from saru.model import CheckSpec
spec = CheckSpec(checktype=sys.argv[3], service="none", protocol="tcp", address=sys.argv[1], port=80,
                 checktimeout=float(sys.argv[2]))
r = asyncio.run(run_check(spec))
print(json.dumps({"ok": r.ok, "local_fault": r.local_fault, "message": r.message}))
"""
DIRECTOR, REAL = "10.77.1.1", "10.77.1.2"


class TwoHosts(Lab):
    roles = ("d", "r")
    tag = "lf"

    def up(self) -> Self:
        super().up()
        self.veth("d", "eth0", "r", "eth0")
        for role, cidr in (("d", f"{DIRECTOR}/24"), ("r", f"{REAL}/24")):
            self.add_address(role, cidr)
            self[role].ip("link", "set", "eth0", "up")
        # the director's resolver: an address of its own where nothing listens on port 53
        self.resolv = Path("/etc/netns") / self["d"].netns
        self.resolv.mkdir(parents=True, exist_ok=True)
        (self.resolv / "resolv.conf").write_text(f"nameserver {DIRECTOR}\noptions timeout:1 attempts:1\n")
        return self

    def down(self) -> None:
        super().down()
        shutil.rmtree(Path("/etc/netns") / self["d"].netns, ignore_errors=True)


@pytest.fixture
def lab() -> Iterator[TwoHosts]:
    ok, why = TwoHosts.available()
    require(ok, why)
    with TwoHosts() as hosts:
        yield hosts


def probe(lab: TwoHosts, address: str, timeout: float = 0.5, checktype: str = "connect") -> dict[str, object]:
    out = lab.run("d", sys.executable, "-c", PROBE, address, str(timeout), checktype, timeout=30)
    return json.loads(out.stdout)


def test_removed_route_is_a_local_fault_but_a_routed_silence_is_not(lab: TwoHosts) -> None:
    routed = probe(lab, "10.77.1.9")  # on the link, a route, but no host answers ARP for it
    assert not routed["ok"] and routed["local_fault"] == "", routed
    gone = probe(lab, "10.88.0.2")  # no route at all
    assert not gone["ok"] and gone["local_fault"] == "no_route", gone
    lab.ip("d", "route", "add", "unreachable", "10.88.0.0/16")
    unreachable = probe(lab, "10.88.0.2")  # an unreachable route: still the director's
    assert unreachable["local_fault"] == "no_route", unreachable


def test_the_directors_own_link_down_is_a_local_fault(lab: TwoHosts) -> None:
    lab.run("r", "ip", "link", "set", "eth0", "down")  # the cable's other end: no carrier here
    result = probe(lab, REAL, timeout=5)  # ARP fails: "no route to host", through a dead link
    assert not result["ok"] and result["local_fault"] == "no_route", result


def test_a_local_firewall_is_a_local_fault_for_a_ping_check(lab: TwoHosts) -> None:
    require(shutil.which("nft") is not None, "needs nft")
    lab.nft("d", f"table inet lf {{\n chain out {{\n  type filter hook output priority 0;\n"
                 f"  ip daddr {REAL} drop\n }}\n}}\n")
    result = probe(lab, REAL, checktype="ping")
    assert not result["ok"] and result["local_fault"] == "eperm", result


def test_dead_resolver_is_a_local_fault(lab: TwoHosts) -> None:
    result = probe(lab, "real.saru-test.invalid", timeout=5)
    assert not result["ok"] and result["local_fault"] == "resolver", result


def test_the_daemon_keeps_the_real_through_a_removed_route_but_believes_a_dead_server(
        lab: TwoHosts, tmp_path: Path) -> None:
    web = tmp_path / "web"
    web.mkdir()
    server = lab.popen("r", sys.executable, "-m", "http.server", "80", "--bind", REAL, "--directory", str(web),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    vip = free_port()
    config = f"checktimeout=1\nvirtual=127.0.0.1:{vip}\n\treal={REAL}:80 masq\n\tchecktype=connect\n" \
             "\tcheckinterval=0.2\n"
    d = Director(tmp_path, config, env={**lab.environ(), "SARU_LOG_REMINDER_INTERVAL": "0.5"},
                 prefix=("ip", "netns", "exec", lab["d"].netns))
    try:
        d.wait_ready(30)
        assert d.real_states()[f"{REAL}:80"] == ("up", 1)
        at = time.monotonic()
        lab.ip("d", "route", "del", "10.77.1.0/24", "dev", "eth0")
        d.wait_for(rf"ALARM: local fault \(no_route\): the director cannot check {REAL}:80", after=at)
        alarms = d.status()["alarms"]
        assert alarms["active"] and [f["reason"] for f in alarms["local_faults"]] == ["no_route"]
        assert d.real_states()[f"{REAL}:80"] == ("up", 1)
        lab.ip("d", "route", "add", "10.77.1.0/24", "dev", "eth0", "src", DIRECTOR)
        d.wait_for(r"Local fault \(no_route\) cleared", after=at)
        assert "Real server down" not in d.log_text()
        assert d.status()["alarms"]["active"] is False

        at = time.monotonic()
        server.terminate()
        server.wait(10)
        d.wait_for(rf"Real server down: {REAL}:80 .*connection refused", after=at)  # the real's own failure
        assert d.real_states()[f"{REAL}:80"] == ("down", None)
    finally:
        d.stop()
