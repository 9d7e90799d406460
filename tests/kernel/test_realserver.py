"""``saru realserver apply|check`` in the real-server namespaces of the guide's topology.

The reals start with their LAN address only (no VIP on lo, ARP sysctls at the kernel defaults); the
tests prepare them with the command, check the files under ``--root``, idempotence and an exact
``--undo``, then the behaviour that matters: after ``apply`` the reals stay silent to ARP for the VIP
(while the director answers) and LVS-DR traffic through the director (nftables plane) reaches both.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import require
from tests.kernel.test_nft_dataplane import Ctl, burst, gate, service
from tests.lab.guide import REALS, VIP, VIP6, Topology

pytestmark = pytest.mark.timeout(120)
ARP_KEYS = [f"net.ipv4.conf.{i}.{n}" for n in ("arp_ignore", "arp_announce") for i in ("all", "eth0")]


@pytest.fixture(scope="module")
def topo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    ok, why = Topology.available()
    require(ok, why)
    with Topology(tmp_path_factory.mktemp("realserver")) as t:
        for role, (_, _, dr4, dr6) in REALS.items():  # the LAN address only: apply does the rest
            t.add_address(role, f"{dr4}/24", f"{dr6}/64")
            t.ip(role, "route", "add", "default", "via", "10.77.6.1")
            t.ip(role, "-6", "route", "add", "default", "via", "fd00:6::1")
        t.nginx("fe1")
        t.nginx("fe2")
        yield t


def saru(topo: Topology, role: str, *args: str) -> tuple[int, str]:
    got = topo.run(role, sys.executable, "-m", "saru", "realserver", *args, check=False, timeout=60)
    assert got.returncode in (0, 1), got.stderr
    return got.returncode, got.stdout


def lo_addresses(topo: Topology, role: str) -> set[str]:
    data = json.loads(topo.run(role, "ip", "-j", "addr", "show", "dev", "lo").stdout)
    return {f"{a['local']}/{a['prefixlen']}" for a in data[0]["addr_info"]}


def sysctls(topo: Topology, role: str) -> dict[str, str]:
    return {key: topo.run(role, "sysctl", "-n", key).stdout.strip() for key in ARP_KEYS}


def tree(root: Path) -> dict[str, tuple[str, float] | None]:
    """Every directory (None) and file (content, mtime) under root."""
    found: dict[str, tuple[str, float] | None] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        found[rel] = (path.read_text(), path.stat().st_mtime) if path.is_file() else None
    return found


def arp_macs(topo: Topology, role: str, address: str) -> set[str]:
    code = ("import json, sys; from saru.setup.probe import arp_answers; "
            "print(json.dumps([a.mac for a in arp_answers('eth0', sys.argv[1], 0.4)]))")
    return set(json.loads(topo.run(role, sys.executable, "-c", code, address).stdout))


def mac(topo: Topology, role: str) -> str:
    return str(json.loads(topo.run(role, "ip", "-j", "link", "show", "eth0").stdout)[0]["address"]).lower()


# --------------------------------------------------------------------------------------------------


def test_apply_check_idempotent_persistent_and_exact_undo(topo: Topology, tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc" / "network").mkdir(parents=True)
    (root / "etc" / "network" / "interfaces").write_text(
        "auto lo\niface lo inet loopback\n\nsource /etc/network/interfaces.d/*\n")
    (root / "etc" / "sysctl.d").mkdir()
    (root / "etc" / "sysctl.d" / "10-local.conf").write_text("net.ipv4.conf.all.arp_announce = 2\n")
    topo.sysctl("fe1", "net.ipv4.conf.all.arp_announce=2")  # already right before apply: must survive undo
    topo.ip("fe1", "addr", "add", f"{VIP6}/128", "dev", "lo")  # likewise
    before = (tree(root), lo_addresses(topo, "fe1"), sysctls(topo, "fe1"))
    vips = ("--vip", VIP, "--vip", VIP6, "--root", str(root))

    rc, out = saru(topo, "fe1", "check", *vips)
    assert rc == 1 and f"[miss] VIP {VIP}/32 on lo" in out

    rc, out = saru(topo, "fe1", "apply", *vips)
    assert rc == 0
    assert f"added {VIP}/32 on lo" in out and "on lo" not in out.replace(f"added {VIP}/32 on lo", "")
    assert "set net.ipv4.conf.eth0.arp_ignore = 1 (was 0)" in out
    assert "net.ipv4.conf.all.arp_announce" not in out  # it was already 2
    assert {f"{VIP}/32", f"{VIP6}/128"} <= lo_addresses(topo, "fe1")
    assert sysctls(topo, "fe1") == dict.fromkeys(ARP_KEYS[:2], "1") | dict.fromkeys(ARP_KEYS[2:], "2")

    rc, out = saru(topo, "fe1", "check", *vips, "--json")
    report = json.loads(out)
    assert rc == 0 and report["ok"] and report["interface"] == "eth0" and report["netconf"] == "ifupdown"
    assert {item["status"] for item in report["items"]} == {"ok"} and len(report["items"]) == 8

    conf = (root / "etc/sysctl.d/90-saru-realserver.conf").read_text()
    assert [line for line in conf.splitlines() if not line.startswith("#")] == [
        "net.ipv4.conf.all.arp_ignore = 1", "net.ipv4.conf.eth0.arp_ignore = 1",
        "net.ipv4.conf.all.arp_announce = 2", "net.ipv4.conf.eth0.arp_announce = 2"]
    snippet = (root / "etc/network/interfaces.d/saru-realserver").read_text()
    assert f"auto lo:saru0\niface lo:saru0 inet static\n    address {VIP}/32\n" in snippet
    assert f"iface lo inet6 static\n    address {VIP6}/128\n" in snippet
    assert (root / "var/lib/saru/realserver.json").exists()

    try:  # the VIP on the NIC too: the real would answer ARP for it whatever the sysctls say
        topo.ip("fe1", "addr", "add", f"{VIP}/24", "dev", "eth0")
        rc, out = saru(topo, "fe1", "check", *vips)
    finally:
        topo.ip("fe1", "addr", "del", f"{VIP}/24", "dev", "eth0")
    assert rc == 1 and f"[fail] VIP {VIP} only on lo: also on {VIP}/24 dev eth0" in out
    assert f"fix: ip addr del {VIP}/24 dev eth0" in out

    applied = tree(root)
    rc, out = saru(topo, "fe1", "apply", *vips)
    assert rc == 0 and out.startswith("nothing to do")
    assert tree(root) == applied  # not even rewritten (same mtimes)

    rc, out = saru(topo, "fe1", "apply", "--undo", "--root", str(root))
    assert rc == 0 and f"removed {VIP}/32 from lo" in out
    assert (tree(root), lo_addresses(topo, "fe1"), sysctls(topo, "fe1")) == before
    assert sysctls(topo, "fe1")["net.ipv4.conf.all.arp_announce"] == "2" and f"{VIP6}/128" in before[1]
    rc, out = saru(topo, "fe1", "apply", "--undo", "--root", str(root))
    assert rc == 0 and out.startswith("nothing to undo")
    topo.sysctl("fe1", "net.ipv4.conf.all.arp_announce=0")
    topo.ip("fe1", "addr", "del", f"{VIP6}/128", "dev", "lo")


def test_prepared_reals_stay_silent_to_arp_and_serve_direct_routing(topo: Topology, tmp_path: Path) -> None:
    roots = {role: tmp_path / role for role in REALS}
    try:
        for role, root in roots.items():
            rc, _ = saru(topo, role, "apply", "--vip", VIP, "--root", str(root), "--netconf", "none")
            assert rc == 0
        # ARP for the VIP from the LAN (the router's side): only the director answers
        assert arp_macs(topo, "rt", VIP) == {mac(topo, "ld1")}
        try:  # negative control: the same real with arp_ignore back at 0 does answer
            for key in ("all", "eth0"):
                topo.sysctl("fe1", f"net.ipv4.conf.{key}.arp_ignore=0")
            assert mac(topo, "fe1") in arp_macs(topo, "rt", VIP)
        finally:
            for key in ("all", "eth0"):
                topo.sysctl("fe1", f"net.ipv4.conf.{key}.arp_ignore=1")
        # LVS-DR through the director: the reals accept packets for the VIP and answer the client directly
        ctl = Ctl(topo)
        ctl.apply(service(80, [gate("fe1"), gate("fe2")]))
        result = burst(topo, f"http://{VIP}/", 20, concurrency=1)
        assert result["failed"] == 0 and set(result["servers"]) == {"fe1", "fe2"}, result
        ctl.apply()
    finally:
        for role, root in roots.items():
            saru(topo, role, "apply", "--undo", "--root", str(root))
    for role, root in roots.items():
        assert f"{VIP}/32" not in lo_addresses(topo, role)
        assert not os.listdir(root) if root.exists() else True
