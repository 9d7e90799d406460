"""The UltraMonkey guide's network, built from network namespaces for kernel tests.

Every namespace is named ``saru-<id>-<role>`` with a per-test unique id; nothing is created in the
root namespace (veth pairs are created inside the namespaces, the bridge lives in its own
namespace), and ``down()`` deletes everything, processes first, even after a failure.

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

import itertools
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import NGINX_CONF, netns_usable

VIP = "10.77.6.240"
VIP6 = "fd00:6::240"
CLIENT = "172.16.0.10"
ROLES = ("br", "cl", "rt", "ld1", "ld2", "fe1", "fe2")
REALS = {  # NAT v4, NAT v6, DR v4, DR v6
    "fe1": ("10.77.7.11", "fd00:7::11", "10.77.6.11", "fd00:6::11"),
    "fe2": ("10.77.7.12", "fd00:7::12", "10.77.6.12", "fd00:6::12"),
}
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
_counter = itertools.count()

def nginx_site(workdir: Path, role: str) -> Path:
    """The directory of real server ``role``'s nginx: document root with ``/haCheker/haCheck.html`` =
    "up and running" (the guide's check page) and ``index.html``, temp dir, ``nginx.conf``."""
    d = workdir / f"nginx-{role}"
    (d / "tmp").mkdir(parents=True, exist_ok=True)
    (d / "root" / "haCheker").mkdir(parents=True, exist_ok=True)
    (d / "root" / "index.html").write_text(f"{role} hello\n")
    (d / "root" / "haCheker" / "haCheck.html").write_text("up and running\n")
    (d / "nginx.conf").write_text(nginx_conf(d, role))
    return d


def nginx_conf(directory: Path, name: str) -> str:
    """nginx.conf of a real server: ports 80 and 8080 on IPv4 and IPv6, header X-Real-Server."""
    server = (f"    server {{\n        listen 80 default_server;\n        listen [::]:80 default_server;\n"
              f"        listen 8080;\n        listen [::]:8080;\n        root {directory}/root;\n"
              f"        add_header X-Real-Server {name} always;\n    }}")
    return NGINX_CONF.format(user="user root;", dir=directory, servers=server)

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


def available() -> tuple[bool, str]:
    """Whether this machine can build the topology (root, ip, nginx, netns)."""
    if os.geteuid() != 0:
        return False, "kernel tests need root (network namespaces)"
    for tool in ("ip", "nginx", "curl"):
        if shutil.which(tool) is None:
            return False, f"{tool} is not installed"
    return netns_usable()


class Topology:
    """Namespaces, links, addresses and processes of one test."""

    def __init__(self, workdir: Path) -> None:
        self.id = f"k{os.getpid() % 100000}x{next(_counter)}"
        self.workdir = workdir
        self.ns = {role: f"saru-{self.id}-{role}" for role in ROLES}
        self.procs: list[subprocess.Popen[str]] = []
        self.made: list[str] = []

    # -- plumbing ---------------------------------------------------------------------------------

    def run(
        self, role: str, *argv: str, check: bool = True, timeout: float = 20
    ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.run(["ip", "netns", "exec", self.ns[role], *argv], capture_output=True, text=True,
                              timeout=timeout, check=False, env=env, cwd=str(ROOT))
        if check and proc.returncode != 0:
            raise RuntimeError(f"{role}: {' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc

    def popen(self, role: str, *argv: str, **kwargs: object) -> subprocess.Popen[str]:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc: subprocess.Popen[str] = subprocess.Popen(  # type: ignore[call-overload]
            ["ip", "netns", "exec", self.ns[role], *argv], text=True, env=env, cwd=str(ROOT), **kwargs)
        self.procs.append(proc)
        return proc

    def ip(self, role: str, *args: str) -> None:
        self.run(role, "ip", *args)

    def sys(self, role: str, key: str, value: str) -> None:
        self.run(role, "sysctl", "-qw", f"{key}={value}")

    # -- building ---------------------------------------------------------------------------------

    def up(self) -> Topology:
        for role in ROLES:
            subprocess.run(["ip", "netns", "add", self.ns[role]], check=True, capture_output=True)
            self.made.append(self.ns[role])
            self.ip(role, "link", "set", "lo", "up")
        br = self.ns["br"]
        self.ip("br", "link", "add", "lan", "type", "bridge", "stp_state", "0")
        self.ip("br", "link", "set", "lan", "up")
        for role in ROLES[1:]:
            port = f"p-{role}"
            self.ip(role, "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", br)
            self.ip("br", "link", "set", port, "master", "lan")
            self.ip("br", "link", "set", port, "up")
            self.ip(role, "link", "set", "eth0", "up")
            for key in ("all", "default", "eth0"):
                self.sys(role, f"net.ipv6.conf.{key}.accept_dad", "0")
        self.addr("cl", "172.16.0.10/24", "fd00:16::10/64")
        self.ip("cl", "route", "add", "default", "via", "172.16.0.1")
        self.ip("cl", "-6", "route", "add", "default", "via", "fd00:16::1")
        self.sys("cl", "net.ipv4.ip_local_port_range", "1024 65000")
        self.sys("cl", "net.ipv4.tcp_tw_reuse", "1")
        self.addr("rt", "172.16.0.1/24", "10.77.6.1/24", "fd00:16::1/64", "fd00:6::1/64")
        self.sys("rt", "net.ipv4.ip_forward", "1")
        self.sys("rt", "net.ipv6.conf.all.forwarding", "1")
        for key in ("all", "default", "eth0"):
            self.sys("rt", f"net.ipv4.conf.{key}.send_redirects", "0")
            self.sys("ld1", f"net.ipv4.conf.{key}.send_redirects", "0")
        self.addr("ld1", "10.77.6.2/24", f"{VIP}/24", "10.77.7.1/24", "fd00:6::2/64", f"{VIP6}/64",
                  "fd00:7::1/64")
        self.ip("ld1", "route", "add", "default", "via", "10.77.6.1")
        self.ip("ld1", "-6", "route", "add", "default", "via", "fd00:6::1")
        self.sys("ld1", "net.ipv4.ip_forward", "1")
        self.sys("ld1", "net.ipv6.conf.all.forwarding", "1")
        self.addr("ld2", "10.77.6.3/24", "fd00:6::3/64")
        return self

    def addr(self, role: str, *cidrs: str) -> None:
        for cidr in cidrs:
            extra = ["nodad"] if ":" in cidr else []
            self.ip(role, "addr", "add", cidr, "dev", "eth0", *extra)

    def mode(self, mode: str) -> None:
        """``nat``: reals on 10.77.7.0/24 behind the director; ``dr``: reals on the LAN, VIP on lo."""
        for role, (nat4, nat6, dr4, dr6) in REALS.items():
            if mode == "nat":
                self.addr(role, f"{nat4}/24", f"{nat6}/64")
                self.ip(role, "route", "add", "default", "via", "10.77.7.1")
                self.ip(role, "-6", "route", "add", "default", "via", "fd00:7::1")
            else:
                self.addr(role, f"{dr4}/24", f"{dr6}/64")
                self.ip(role, "addr", "add", f"{VIP}/32", "dev", "lo")
                self.ip(role, "addr", "add", f"{VIP6}/128", "dev", "lo")  # NDP answers only on eth0
                for key in ("all", "eth0"):
                    self.sys(role, f"net.ipv4.conf.{key}.arp_ignore", "1")
                    self.sys(role, f"net.ipv4.conf.{key}.arp_announce", "2")
                self.ip(role, "route", "add", "default", "via", "10.77.6.1")
                self.ip(role, "-6", "route", "add", "default", "via", "fd00:6::1")

    # -- servers ----------------------------------------------------------------------------------

    def nginx(self, role: str) -> Path:
        """Start nginx in ``role``; returns its document root (``/haCheker/haCheck.html`` = up)."""
        d = nginx_site(self.workdir, role)
        self.popen(role, "nginx", "-c", str(d / "nginx.conf"), "-e", str(d / "error.log"),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.wait_http(role, "http://127.0.0.1/haCheker/haCheck.html")
        return d / "root"

    def wait_http(self, role: str, url: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            got = self.run(role, "curl", "-sf", "-m", "1", "-o", "/dev/null", url, check=False)
            if got.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} in {role} did not answer within {timeout}s")
            time.sleep(0.05)

    def udp_echo(self, role: str) -> None:
        proc = self.popen(role, sys.executable, "-c", UDP_ECHO, role, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"

    def python(self, role: str, module: str, *args: str, **kwargs: object) -> subprocess.Popen[str]:
        return self.popen(role, sys.executable, "-m", module, *args, **kwargs)

    # -- teardown ---------------------------------------------------------------------------------

    def down(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in reversed(self.procs):
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        for role in ("fe1", "fe2"):  # nginx's worker runs as root in the namespace; the master got TERM
            pid = self.workdir / f"nginx-{role}" / "nginx.pid"
            if pid.exists():
                try:
                    os.kill(int(pid.read_text().strip()), 15)
                except (ValueError, ProcessLookupError):
                    pass
        for ns in reversed(self.made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        self.made.clear()
