"""Drift on the nftables plane: Saru's table changed behind the daemon's back is found and re-applied.

``nft flush ruleset`` (what Debian's nftables.service does on restart) and ``nft flush chain``
inside Saru's table, in the director namespace of the UltraMonkey topology (NAT: reals behind the
director), with a real ``saru run --dataplane nft`` and real nginx reals that stay healthy — so no
health change can be what brings the table back.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from saru.control import request_sync
from saru.daemon.commands import STARTING
from tests.helpers import require
from tests.lab import ROOT
from tests.lab.guide import REALS, VIP, Topology

pytestmark = pytest.mark.timeout(120)

FE1, FE2 = REALS["fe1"][0], REALS["fe2"][0]
CONFIG = """\
checktimeout=2
checkinterval=1
autoreload=no
quiescent=no
logfile="{log}"

virtual={vip}:80
\treal={fe1}:80 masq
\treal={fe2}:80 masq
\tservice=http
\trequest="haCheker/haCheck.html"
\treceive="up and running"
\tscheduler=rr
\tprotocol=tcp
\tchecktype=negotiate
"""
HEALTH_EVENT = re.compile(r"Real server (up|down)|Quiescent|Deleted real")


@pytest.fixture
def topo(tmp_path: Path) -> Iterator[Topology]:
    ok, why = Topology.available()
    require(ok, why)
    with Topology(tmp_path) as t:
        t.mode("nat")
        t.nginx("fe1")
        t.nginx("fe2")
        yield t


class Daemon:
    """``saru run --dataplane nft`` in the director namespace."""

    def __init__(self, topo: Topology, workdir: Path, *extra: str) -> None:
        self.topo = topo
        self.cf = workdir / "ldirectord.cf"
        self.log = workdir / "saru.log"
        self.cf.write_text(CONFIG.format(log=self.log, vip=VIP, fe1=FE1, fe2=FE2))
        self.control = workdir / "saru.sock"
        self.proc = topo.python("ld1", "saru", "run", "-c", str(self.cf), "--dataplane", "nft", "--control",
                                str(self.control), *extra, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait(lambda: self._ready(), 20, "the daemon's first table")

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            assert self.proc.stderr is not None
            raise AssertionError(f"saru run exited {self.proc.returncode}: {self.proc.stderr.read()}")
        try:
            answer = request_sync(self.control, "status", timeout=5)
        except OSError:
            return False
        if not answer["ok"] and answer.get("error") == STARTING:  # the socket is up before the data plane
            return False
        assert answer["ok"], answer
        return bool(answer["ready"])

    def status(self) -> dict[str, Any]:
        answer = request_sync(self.control, "status", timeout=5)
        assert answer["ok"], answer
        return answer

    def saru(self, *args: str) -> str:
        """A ``saru`` command on the host (the control socket is a file; no namespace needed)."""
        done = subprocess.run([sys.executable, "-m", "saru", *args, "--control", str(self.control)],
                              capture_output=True, text=True, timeout=30, cwd=ROOT, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def logtext(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def wait(condition: Callable[[], object], timeout: float, what: str) -> float:
    """Poll ``condition`` until true; the seconds it took (AssertionError after ``timeout``)."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, f"{what}: not within {timeout} s"
        time.sleep(0.05)
    return time.monotonic() - start


def kernel_reals(topo: Topology) -> set[str]:
    """The reals Saru's NAT table holds, read with the nft command (not through Saru)."""
    got = topo.run("ld1", "nft", "list", "table", "inet", "saru", check=False)
    return {fe for fe in (FE1, FE2) if re.search(rf"(?<![\d.]){re.escape(fe)}(?![\d])", got.stdout)}


def nat_pre_rules(topo: Topology) -> int:
    got = topo.run("ld1", "nft", "-j", "list", "chain", "inet", "saru", "nat_pre", check=False)
    if got.returncode:
        return -1
    return sum(1 for item in json.loads(got.stdout)["nftables"] if "rule" in item)


def served(topo: Topology, n: int = 6) -> dict[str, int]:
    got = topo.run("cl", sys.executable, "-m", "tests.kernel.load", "burst", f"http://{VIP}/", str(n), "1",
                   timeout=60)
    result: dict[str, Any] = json.loads(got.stdout.strip().splitlines()[-1])
    assert result["failed"] == 0, result
    return dict(result["servers"])


def test_flushed_ruleset_and_flushed_chain_come_back_by_the_periodic_check(topo: Topology, tmp_path: Path) -> None:
    daemon = Daemon(topo, tmp_path)  # the default --drift-interval
    assert kernel_reals(topo) == {FE1, FE2}
    rules = nat_pre_rules(topo)
    assert rules > 0
    assert served(topo) == {"fe1": 3, "fe2": 3}
    before = len(daemon.logtext())

    topo.run("ld1", "nft", "flush", "ruleset")
    assert kernel_reals(topo) == set()
    took = wait(lambda: kernel_reals(topo) == {FE1, FE2}, 10, "the flushed table re-applied")
    assert took < 10
    assert served(topo) == {"fe1": 3, "fe2": 3}
    drift = daemon.status()["drift"]
    assert drift["count"] == 1 and drift["interval"] == 2.0, drift
    gone = f"virtual service tcp {VIP}:80 missing (with 2 reals); table inet saru missing"
    assert drift["last_detail"] == gone, drift
    assert (f"Table drift on the nft data plane (found by periodic check): {gone}; "
            "re-applied Saru's table") in daemon.logtext()

    # damage the table model does not show: the dispatch rules gone, every service chain intact
    topo.run("ld1", "nft", "flush", "chain", "inet", "saru", "nat_pre")
    assert nat_pre_rules(topo) == 0
    wait(lambda: nat_pre_rules(topo) == rules, 10, "the flushed chain rebuilt")
    assert served(topo) == {"fe1": 3, "fe2": 3}
    drift = daemon.status()["drift"]
    assert drift["count"] == 2, drift
    assert f"chain nat_pre has 0 rule(s), Saru wrote {rules}" in drift["last_detail"], drift
    assert not HEALTH_EVENT.search(daemon.logtext()[before:]), daemon.logtext()[before:]  # no health change


MISSING = f"virtual service tcp {VIP}:80 missing (with 2 reals); table inet saru missing"


def test_status_checks_the_kernel_and_repairs_before_answering(topo: Topology, tmp_path: Path) -> None:
    daemon = Daemon(topo, tmp_path, "--drift-interval", "0")  # no periodic check: only the commands
    topo.run("ld1", "nft", "flush", "ruleset")
    doc = daemon.status()
    assert kernel_reals(topo) == {FE1, FE2}  # no waiting: the answer came after the repair
    assert doc["drift"]["count"] == 1 and doc["drift"]["last_detail"] == MISSING, doc["drift"]
    assert doc["drift"]["interval"] == 0
    assert [r["in_table"] for r in doc["virtuals"][0]["reals"]] == [True, True]
    text = daemon.saru("status")
    assert re.search(r"^drift: kernel table checked on status/plan/reload; 1 found and repaired, "
                     rf"last at [\d: -]+: {re.escape(MISSING)}$", text, re.M), text
    assert served(topo) == {"fe1": 3, "fe2": 3}
    # in sync: a check finds nothing and counts nothing
    assert daemon.status()["drift"]["count"] == 1


def test_plan_says_what_it_found_and_repaired(topo: Topology, tmp_path: Path) -> None:
    """``saru plan`` (the control "table" command): the daemon checks the kernel, repairs first, and
    the plan says so, then plans from the kernel's truth."""
    daemon = Daemon(topo, tmp_path, "--drift-interval", "0")
    topo.run("ld1", "nft", "flush", "ruleset")
    out = daemon.saru("plan", "-c", str(daemon.cf))
    assert kernel_reals(topo) == {FE1, FE2}, out
    assert (f"# Table drift on the nft data plane (found by table request (saru plan)): {MISSING}; "
            "re-applied Saru's table") in out, out
    assert "# no changes" in out, out
    assert "# Table drift" not in daemon.saru("plan", "-c", str(daemon.cf))  # in sync now


def test_reload_repairs(topo: Topology, tmp_path: Path) -> None:
    daemon = Daemon(topo, tmp_path, "--drift-interval", "0")
    topo.run("ld1", "nft", "flush", "ruleset")
    assert daemon.saru("reload").strip() == "reloaded"
    assert kernel_reals(topo) == {FE1, FE2}
    assert served(topo) == {"fe1": 3, "fe2": 3}
    assert f"(found by reload): {MISSING}; re-applied Saru's table" in daemon.logtext()
