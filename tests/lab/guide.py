"""The UltraMonkey guide's network, built from network namespaces (a ``Lab``) for the kernel and HA tests.

Every namespace is named ``saru-k<pid>x<n>-<role>``; nothing is created in the root namespace, and
``down()`` deletes everything, processes first, even after a failure.

```
 cl  172.16.0.10/24 fd00:16::10/64  ── gw rt
 rt  172.16.0.1 + 10.77.6.1 (+ v6) — the upstream router
 ld1 10.77.6.2 + VIP 10.77.6.240 / fd00:6::240, 10.77.7.1 / fd00:7::1 (gateway of NAT reals)
 ld2 10.77.6.3 (the standby director of the guide; idle here)
 fe1 10.77.7.11 / fd00:7::11 (NAT) or 10.77.6.11 / fd00:6::11 + VIPs on lo (DR)
 fe2 10.77.7.12 / fd00:7::12 (NAT) or 10.77.6.12 / fd00:6::12 + VIPs on lo (DR)
     both: nginx on :80 and :8080 (header X-Real-Server), UDP echo on :5353
```
All of them hang off bridge ``lan`` in namespace ``br`` (one L2 segment, one-armed director).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Self

from tests.lab.netns import Lab
from tests.lab.nginx import start_nginx_site
from tests.lab.probe import can_build

VIP = "10.77.6.240"
VIP6 = "fd00:6::240"
CLIENT = "172.16.0.10"
ROLES = ("br", "cl", "rt", "ld1", "ld2", "fe1", "fe2")
REALS = {  # NAT v4, NAT v6, DR v4, DR v6
    "fe1": ("10.77.7.11", "fd00:7::11", "10.77.6.11", "fd00:6::11"),
    "fe2": ("10.77.7.12", "fd00:7::12", "10.77.6.12", "fd00:6::12"),
}

UDP_ECHO = """\
import socket, sys
name = sys.argv[1]
s4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s4.bind(("0.0.0.0", 5353))
print("ready", flush=True)
while True:
    data, peer = s4.recvfrom(2048)
    s4.sendto(name.encode() + b":" + data, peer)
"""


class Topology(Lab):
    """The guide's namespaces, links and addresses (``up``), the reals' mode, their servers."""

    roles = ROLES
    tag = "k"

    def __init__(self, workdir: Path) -> None:
        super().__init__()
        self.workdir = workdir

    @staticmethod
    def available() -> tuple[bool, str]:
        """Whether this machine can build the topology (root, ip, nginx, curl, netns)."""
        return can_build("nginx", "curl", what="kernel tests (network namespaces)")

    # -- building ---------------------------------------------------------------------------------

    def up(self) -> Self:
        super().up()
        self.bridge("br", "lan", "stp_state", "0")
        for role in ROLES[1:]:
            self.plug(role, "br", "lan", f"p-{role}")
            self.sysctl(role, *(f"net.ipv6.conf.{key}.accept_dad=0" for key in ("all", "default", "eth0")))
        self.add_address("cl", "172.16.0.10/24", "fd00:16::10/64")
        self.ip("cl", "route", "add", "default", "via", "172.16.0.1")
        self.ip("cl", "-6", "route", "add", "default", "via", "fd00:16::1")
        self.sysctl("cl", "net.ipv4.ip_local_port_range=1024 65000", "net.ipv4.tcp_tw_reuse=1")
        self.add_address("rt", "172.16.0.1/24", "10.77.6.1/24", "fd00:16::1/64", "fd00:6::1/64")
        self.sysctl("rt", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
        for role in ("rt", "ld1"):
            self.sysctl(role, *(f"net.ipv4.conf.{key}.send_redirects=0" for key in ("all", "default", "eth0")))
        self.add_address("ld1", "10.77.6.2/24", f"{VIP}/24", "10.77.7.1/24", "fd00:6::2/64", f"{VIP6}/64",
                         "fd00:7::1/64")
        self.ip("ld1", "route", "add", "default", "via", "10.77.6.1")
        self.ip("ld1", "-6", "route", "add", "default", "via", "fd00:6::1")
        self.sysctl("ld1", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
        self.add_address("ld2", "10.77.6.3/24", "fd00:6::3/64")
        return self

    def mode(self, mode: str) -> None:
        """``nat``: reals on 10.77.7.0/24 behind the director; ``dr``: reals on the LAN, VIP on lo."""
        for role, (nat4, nat6, dr4, dr6) in REALS.items():
            if mode == "nat":
                self.add_address(role, f"{nat4}/24", f"{nat6}/64")
                self.ip(role, "route", "add", "default", "via", "10.77.7.1")
                self.ip(role, "-6", "route", "add", "default", "via", "fd00:7::1")
            else:
                self.add_address(role, f"{dr4}/24", f"{dr6}/64")
                self.ip(role, "addr", "add", f"{VIP}/32", "dev", "lo")
                self.ip(role, "addr", "add", f"{VIP6}/128", "dev", "lo")  # NDP answers only on eth0
                self.sysctl(role, *(f"net.ipv4.conf.{key}.{name}={value}" for key in ("all", "eth0")
                                    for name, value in (("arp_ignore", 1), ("arp_announce", 2))))
                self.ip(role, "route", "add", "default", "via", "10.77.6.1")
                self.ip(role, "-6", "route", "add", "default", "via", "fd00:6::1")

    # -- servers ----------------------------------------------------------------------------------

    def nginx(self, role: str) -> Path:
        """Start nginx in ``role``; returns its document root (``/haCheker/haCheck.html`` = up)."""
        return start_nginx_site(self[role], self.workdir) / "root"

    def udp_echo(self, role: str) -> None:
        proc = self.popen(role, sys.executable, "-c", UDP_ECHO, role, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
