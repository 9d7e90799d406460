"""Local faults provoked for real in a ``saru-…`` network namespace (issue #14 §2): a removed route
and a dead resolver make ``run_check`` report a local fault (the real keeps its state), while a
route that exists but leads nowhere is the real's failure. Each case runs ``run_check`` in a
Python process inside the namespace (``ip netns exec``, which also bind-mounts the namespace's
resolv.conf from /etc/netns/<name>/)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import require

PROBE = """
import asyncio, json, sys
from saru.checks.base import run_check
from saru.model import CheckSpec
spec = CheckSpec(checktype="connect", service="none", protocol="tcp", address=sys.argv[1], port=80,
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


def probe(ns: str, address: str, timeout: float = 0.5) -> dict[str, object]:
    out = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", PROBE, address, str(timeout)],
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


def test_dead_resolver_is_a_local_fault(ns: str) -> None:
    result = probe(ns, "real.saru-test.invalid", timeout=5)
    assert not result["ok"] and result["local_fault"] == "resolver", result
