"""The forwarding benchmark's network: ``tests.lab.guide.Topology`` with one NAT real and one DR real.

``fe1`` is an LVS-NAT real (10.77.7.11, default route through the director), ``fe2`` an LVS-DR real
(10.77.6.12 on the LAN, the VIP on ``lo``, ARP for it suppressed, default route through the router).
The director ``ld1`` runs Saru's ``NftDataplane`` (driven through ``tests.kernel.nftctl``) with a NAT
virtual ``VIP:80 → fe1:80`` (stateful, stateless for the ``nat-stateless`` variant, stateful with
``[nft] flowtable = ["eth0"]`` for ``nat-flowtable``: the bench restarts the controller in the mode a
variant needs), a DR virtual ``VIP:8080 → fe2:8080``,
and haproxy (``mode tcp``) on ``VIP:81 → fe1:80``. IPv4 only; every address is inside the namespaces.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from saru.control.codec import table_to_list
from saru.model import Dest, Service, ServiceKey, ServiceSettings, Table
from tests.lab.guide import REALS, VIP, Topology

NAT_REAL = REALS["fe1"][0]
DR_REAL = REALS["fe2"][2]
HAPROXY_PORT = 81
URLS = {
    "direct": f"http://{DR_REAL}/",
    "nat": f"http://{VIP}/",
    "nat-stateless": f"http://{VIP}/",
    "nat-flowtable": f"http://{VIP}/",
    "routed": f"http://{NAT_REAL}:8080/",  # not the stateless real fe1:80, whose packets are rewritten
    "dr": f"http://{VIP}:8080/",
    "haproxy": f"http://{VIP}:{HAPROXY_PORT}/",
}
EXPECTED_SERVER = {"direct": "fe2", "nat": "fe1", "nat-stateless": "fe1", "nat-flowtable": "fe1", "routed": "fe1",
                   "dr": "fe2", "haproxy": "fe1"}
#: the NAT mode each variant needs (``[nft] nat``); the others run in whatever mode is set. ``routed``
#: (the NAT real's own address, forwarded by the director without NAT) runs with no conntrack hook in
#: the director: the floor of any NAT through it
NAT_MODE = {"nat": "stateful", "nat-stateless": "stateless", "nat-flowtable": "flowtable", "routed": "stateless"}
#: the director's devices the NAT flows cross (it has one: client side and real side share the LAN)
FLOWTABLE_DEVICES = ("eth0",)
FLOWTABLE_PROBE = """add table inet saru_probe
add flowtable inet saru_probe ft { hook ingress priority filter; devices = { eth0 }; }
delete table inet saru_probe
"""


def flowtable_usable(topo: Topology) -> bool:
    """Whether the director's kernel can make a flowtable (CONFIG_NF_FLOW_TABLE_INET)."""
    return topo.run("ld1", "nft", "-f", "-", input=FLOWTABLE_PROBE, check=False).returncode == 0

HAPROXY_CONF = """\
global
    maxconn 8000
    nbthread 2
defaults
    mode tcp
    timeout connect 2s
    timeout client 30s
    timeout server 30s
frontend vip
    bind {vip}:{port}
    default_backend reals
backend reals
    balance roundrobin
    server fe1 {real}:80
"""


def configure_reals(topo: Topology) -> None:
    """fe1 as a NAT real, fe2 as a direct-routing real (what ``Topology.mode`` does, one role each)."""
    topo.add_address("fe1", f"{NAT_REAL}/24")
    topo.ip("fe1", "route", "add", "default", "via", "10.77.7.1")
    topo.ip("rt", "route", "add", "10.77.7.0/24", "via", "10.77.6.2")  # the "routed" variant's path
    topo.add_address("fe2", f"{DR_REAL}/24")
    topo.ip("fe2", "addr", "add", f"{VIP}/32", "dev", "lo")
    for key in ("all", "eth0"):
        topo.sysctl("fe2", f"net.ipv4.conf.{key}.arp_ignore=1")
        topo.sysctl("fe2", f"net.ipv4.conf.{key}.arp_announce=2")
    topo.ip("fe2", "route", "add", "default", "via", "10.77.6.1")


def saru_table() -> Table:
    nat = Service(ServiceKey("tcp", VIP, 80), ServiceSettings("rr"), {(NAT_REAL, 80): Dest(NAT_REAL, 80, "masq")})
    dr = Service(ServiceKey("tcp", VIP, 8080), ServiceSettings("rr"),
                 {(DR_REAL, 8080): Dest(DR_REAL, 8080, "gate")})
    return Table.of([nat, dr])


class NftCtl:
    """``tests.kernel.nftctl`` running in the director namespace (one JSON line per request)."""

    def __init__(self, topo: Topology, nat: str = "stateful") -> None:
        self.nat = nat  # "stateful", "stateless" or "flowtable" (stateful with [nft] flowtable)
        extra = ["--flowtable", ",".join(FLOWTABLE_DEVICES)] if nat == "flowtable" else []
        self.proc = topo.python("ld1", "tests.kernel.nftctl", "--nat", "stateful" if nat == "flowtable" else nat,
                                *extra, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._line()

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(10)

    def _line(self) -> dict[str, Any]:
        assert self.proc.stdout is not None and self.proc.stderr is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"nftctl died: {self.proc.stderr.read()}")
        answer: dict[str, Any] = json.loads(line)
        if not answer.get("ok"):
            raise RuntimeError(f"nftctl: {answer.get('error')}")
        return answer

    def apply(self, table: Table) -> list[str]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": "apply", "table": table_to_list(table)}) + "\n")
        self.proc.stdin.flush()
        ops: list[str] = self._line()["ops"]
        return ops


def start_haproxy(topo: Topology, workdir: Path) -> int:
    """haproxy in the director namespace; returns its pid (``ip netns exec`` execs it in place)."""
    conf = workdir / "haproxy.cfg"
    conf.write_text(HAPROXY_CONF.format(vip=VIP, port=HAPROXY_PORT, real=NAT_REAL))
    proc = topo.popen("ld1", "haproxy", "-f", str(conf), "-db", stdout=subprocess.DEVNULL,
                      stderr=subprocess.DEVNULL)
    return proc.pid


def served_by(topo: Topology, url: str) -> str:
    """The X-Real-Server header of one request from the client namespace ('' when it failed)."""
    got = topo.run("cl", "curl", "-s", "-m", "2", "-o", "/dev/null", "-D", "-", url, check=False)
    for line in got.stdout.splitlines():
        if line.lower().startswith("x-real-server:"):
            return line.split(":", 1)[1].strip()
    return ""
