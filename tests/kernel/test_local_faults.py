"""Local faults provoked for real in ``saru-…`` network namespaces (issue #14 §2).

* ``run_check`` in a Python process inside a namespace (``ip netns exec``, which also bind-mounts
  the namespace's resolv.conf from /etc/netns/<name>/): a removed route and a dead resolver are
  local faults, a route that exists but leads nowhere is the real's failure;
* a real ``saru run`` in a director namespace checking a real HTTP server in another: its route
  removed — the real stays up and the alarm is raised and cleared; the server stopped — the real
  goes down, as it should;
* a local firewall (nftables OUTPUT drop) makes a ping check's send fail with ``EPERM``: local. (A
  TCP connect through the same drop only times out — a timeout is the real's, by the rule.)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.director import Director
from tests.helpers import free_port, require

PROBE = """
import asyncio, json, sys
from saru.checks.base import run_check
from saru.model import CheckSpec
spec = CheckSpec(checktype=sys.argv[3], service="none", protocol="tcp", address=sys.argv[1], port=80,
                 checktimeout=float(sys.argv[2]))
r = asyncio.run(run_check(spec))
print(json.dumps({"ok": r.ok, "local_fault": r.local_fault, "message": r.message}))
"""


@pytest.fixture
def ns() -> Iterator[str]:
    require(os.geteuid() == 0 and shutil.which("ip") is not None, "needs root and iproute2")
    name = f"saru-lf-{uuid.uuid4().hex[:6]}"
    etc = Path("/etc/netns") / name
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        etc.mkdir(parents=True, exist_ok=True)
        # a resolver inside the namespace that nobody answers for (the address is ours, port 53 closed)
        (etc / "resolv.conf").write_text("nameserver 10.77.0.1\noptions timeout:1 attempts:1\n")
        for cmd in (["ip", "link", "set", "lo", "up"],
                    ["ip", "link", "add", "d0", "type", "veth", "peer", "name", "d1"],
                    ["ip", "addr", "add", "10.77.0.1/24", "dev", "d0"], ["ip", "link", "set", "d0", "up"]):
            subprocess.run(["ip", "netns", "exec", name, *cmd], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
        shutil.rmtree(etc, ignore_errors=True)


def probe(ns: str, address: str, timeout: float = 0.5, checktype: str = "connect") -> dict[str, object]:
    out = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", PROBE, address, str(timeout), checktype],
                         check=True, capture_output=True, text=True, timeout=30,
                         cwd=Path(__file__).resolve().parents[2])
    return json.loads(out.stdout)


def test_removed_route_is_a_local_fault_but_a_routed_silence_is_not(ns: str) -> None:
    routed = probe(ns, "10.77.0.2")  # on the veth link: a route exists, nobody answers
    assert not routed["ok"] and routed["local_fault"] == "", routed
    gone = probe(ns, "10.88.0.2")  # no route at all
    assert not gone["ok"] and gone["local_fault"] == "no_route", gone
    subprocess.run(["ip", "netns", "exec", ns, "ip", "route", "add", "unreachable", "10.88.0.0/16"], check=True)
    unreachable = probe(ns, "10.88.0.2")  # an unreachable route: still the director's
    assert unreachable["local_fault"] == "no_route", unreachable


def test_a_local_firewall_is_a_local_fault_for_a_ping_check(ns: str) -> None:
    require(shutil.which("nft") is not None, "needs nft")
    subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], check=True, text=True,
                   input="table inet lf {\n chain out {\n  type filter hook output priority 0;\n"
                         "  ip daddr 10.77.0.2 drop\n }\n}\n")
    result = probe(ns, "10.77.0.2", checktype="ping")
    assert not result["ok"] and result["local_fault"] == "eperm", result


def test_dead_resolver_is_a_local_fault(ns: str) -> None:
    result = probe(ns, "real.saru-test.invalid", timeout=5)
    assert not result["ok"] and result["local_fault"] == "resolver", result


@pytest.fixture
def two_hosts(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Namespaces ``director`` (10.77.1.1, a0) and ``real`` (10.77.1.2, b0) joined by a veth pair."""
    require(os.geteuid() == 0 and shutil.which("ip") is not None, "needs root and iproute2")
    tag = uuid.uuid4().hex[:6]
    director, real = f"saru-lfd-{tag}", f"saru-lfr-{tag}"
    try:
        for name in (director, real):
            subprocess.run(["ip", "netns", "add", name], check=True)
            subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "-n", director, "link", "add", "a0", "type", "veth", "peer", "name", "b0",
                        "netns", real], check=True)
        for name, dev, addr in ((director, "a0", "10.77.1.1/24"), (real, "b0", "10.77.1.2/24")):
            subprocess.run(["ip", "-n", name, "addr", "add", addr, "dev", dev], check=True)
            subprocess.run(["ip", "-n", name, "link", "set", dev, "up"], check=True)
        yield director, real
    finally:
        for name in (director, real):
            subprocess.run(["ip", "netns", "del", name], check=False)


def test_the_daemon_keeps_the_real_through_local_faults_but_believes_a_dead_server(
        two_hosts: tuple[str, str], tmp_path: Path) -> None:
    require(shutil.which("nft") is not None, "needs nft")
    director_ns, real_ns = two_hosts
    web = tmp_path / "web"
    web.mkdir()
    server = subprocess.Popen(["ip", "netns", "exec", real_ns, sys.executable, "-m", "http.server", "80",
                               "--bind", "10.77.1.2", "--directory", str(web)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    vip = free_port()
    config = f"""\
checktimeout=1
virtual=127.0.0.1:{vip}
\treal=10.77.1.2:80 masq
\tchecktype=connect
\tcheckinterval=0.2
"""
    d = Director(tmp_path, config, env={**os.environ, "SARU_LOG_REMINDER_INTERVAL": "0.5"},
                 prefix=("ip", "netns", "exec", director_ns))
    try:
        d.wait_ready(30)
        assert d.real_states()["10.77.1.2:80"] == ("up", 1)
        ns_ip = ("ip", "-n", director_ns)
        at = time.monotonic()
        subprocess.run([*ns_ip, "route", "del", "10.77.1.0/24", "dev", "a0"], check=True)
        d.wait_for(r"ALARM: local fault \(no_route\): the director cannot check 10.77.1.2:80", after=at)
        alarms = d.status()["alarms"]
        assert alarms["active"] and [f["reason"] for f in alarms["local_faults"]] == ["no_route"]
        assert d.real_states()["10.77.1.2:80"] == ("up", 1)
        subprocess.run([*ns_ip, "route", "add", "10.77.1.0/24", "dev", "a0", "src", "10.77.1.1"], check=True)
        d.wait_for(r"Local fault \(no_route\) cleared", after=at)

        assert "Real server down" not in d.log_text()
        assert d.status()["alarms"]["active"] is False

        at = time.monotonic()
        server.terminate()
        server.wait(10)
        d.wait_for(r"Real server down: 10.77.1.2:80 .*connection refused", after=at)  # the real's own failure
        assert d.real_states()["10.77.1.2:80"] == ("down", None)
    finally:
        d.stop()
        if server.poll() is None:
            server.kill()
            server.wait()
