"""An LVS-NAT topology inside the test guest: client and real-server namespaces around the director.

The director is the guest's root namespace with the VIP on the client-facing veth; each real
server runs busybox httpd in its own namespace behind its own veth. The guest has no network card,
so none of these addresses can reach anything outside it.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

VIP = "10.99.1.100"
CLIENT = ("sv-cli", "d-cli", "10.99.1.1", "10.99.1.2")
REALS = [("sv-rs1", "d-rs1", "10.99.2.1", "10.99.2.11"), ("sv-rs2", "d-rs2", "10.99.3.1", "10.99.3.12")]
REAL_IPS = [real[3] for real in REALS]


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=30).stdout


def namespace(ns: str, director_if: str, director_ip: str, inner_ip: str) -> None:
    sh("ip", "netns", "add", ns)
    sh("ip", "link", "add", director_if, "type", "veth", "peer", "name", "eth0", "netns", ns)
    sh("ip", "addr", "add", f"{director_ip}/24", "dev", director_if)
    sh("ip", "link", "set", director_if, "up")
    sh("ip", "-n", ns, "addr", "add", f"{inner_ip}/24", "dev", "eth0")
    sh("ip", "-n", ns, "link", "set", "eth0", "up")
    sh("ip", "-n", ns, "link", "set", "lo", "up")
    sh("ip", "-n", ns, "route", "add", "default", "via", director_ip)


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def wait_until(condition: object, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


class Topology:
    """The namespaces and the real servers' httpd processes (index.html says ``hello from rsN``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.servers: dict[int, subprocess.Popen[bytes]] = {}

    def start_real(self, number: int) -> None:
        ns, _, _, real_ip = REALS[number - 1]
        docroot = self.root / f"www{number}"
        docroot.mkdir(exist_ok=True)
        (docroot / "index.html").write_text(f"hello from rs{number}\n")
        self.servers[number] = subprocess.Popen(
            ["ip", "netns", "exec", ns, "busybox", "httpd", "-f", "-p", f"{real_ip}:80", "-h", str(docroot)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: port_open(real_ip, 80), f"httpd on {real_ip}:80")

    def stop_real(self, number: int) -> None:
        server = self.servers.pop(number)
        server.kill()
        server.wait()
        real_ip = REALS[number - 1][3]
        wait_until(lambda: not port_open(real_ip, 80), f"httpd on {real_ip}:80 to stop")

    def requests(self, count: int, port: int = 80) -> str:
        """``count`` HTTP requests from the client namespace to the VIP, new connection each."""
        return sh("ip", "netns", "exec", CLIENT[0], "curl", "-sS", "--max-time", "10",
                  "-H", "Connection: close", *[f"http://{VIP}:{port}/"] * count)

    def teardown(self) -> None:
        for number in list(self.servers):
            server = self.servers.pop(number)
            server.kill()
            server.wait()
        for ns in [CLIENT[0], *(r[0] for r in REALS)]:
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


@pytest.fixture
def lvs_nat(tmp_path: Path) -> Iterator[Topology]:
    topology = Topology(tmp_path)
    try:
        Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")
        namespace(*CLIENT)
        sh("ip", "addr", "add", f"{VIP}/32", "dev", CLIENT[1])
        for number, real in enumerate(REALS, 1):
            namespace(*real)
            topology.start_real(number)
        yield topology
    finally:
        topology.teardown()
