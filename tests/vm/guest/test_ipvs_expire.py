"""saru.toml ``[director] expire_nodest_conn`` on the IPVS plane: the plane sets the kernel's
``net.ipv4.vs.expire_nodest_conn`` at start, and the kernel then ends (or keeps) the connections of a
removed real — with real LVS-NAT traffic: a client's request left unfinished on a real, the real
removed, the request finished. On, the client is reset at once; off, IPVS silently drops the
connection's packets (the removed real is no longer "available"): the client waits for its timeout.
A real at weight 0 is still available and keeps its connections either way."""

from __future__ import annotations

import asyncio
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from saru.dataplane.ipvs import IpvsDataplane
from saru.dataplane.ipvs.netlink import run_in_netns
from saru.dataplane.ipvs.plane import EXPIRE_NODEST_CONN
from saru.diff import diff
from saru.model import Dest, Service, ServiceKey, ServiceSettings, Table
from tests.vm.guest.lvs_nat import namespace, port_open, sh, wait_until

# A topology of its own (lvs_nat's shape, other names and subnets): the connections this test leaves
# hanging on purpose keep their namespaces alive for a while after deletion, which must not stop the
# next test from making lvs_nat's.
VIP = "10.99.7.100"
CLIENT = ("sx-cli", "dx-cli", "10.99.7.1", "10.99.7.2")
REALS = [("sx-rs1", "dx-rs1", "10.99.8.1", "10.99.8.11"), ("sx-rs2", "dx-rs2", "10.99.9.1", "10.99.9.12")]
REAL_IPS = [real[3] for real in REALS]
PORT = 8085
KEY = ServiceKey("tcp", VIP, PORT)


@pytest.fixture
def topology(tmp_path: Path) -> Iterator[None]:
    servers: list[subprocess.Popen[bytes]] = []
    try:
        Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")
        namespace(*CLIENT)
        sh("ip", "addr", "add", f"{VIP}/32", "dev", CLIENT[1])
        for number, (ns, director_if, director_ip, real_ip) in enumerate(REALS, 1):
            namespace(ns, director_if, director_ip, real_ip)
            docroot = tmp_path / f"www{number}"
            docroot.mkdir()
            (docroot / "index.html").write_text(f"hello from rs{number}\n")
            servers.append(subprocess.Popen(
                ["ip", "netns", "exec", ns, "busybox", "httpd", "-f", "-p", f"{real_ip}:80", "-h", str(docroot)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_until(lambda ip=real_ip: port_open(ip, 80), f"httpd on {real_ip}:80")
        yield
    finally:
        for server in servers:
            server.kill()
            server.wait()
        for ns in [CLIENT[0], *(r[0] for r in REALS)]:
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


def table(ips: list[str]) -> Table:
    return Table.of([Service(KEY, ServiceSettings("rr"), {(ip, 80): Dest(ip, 80, "masq", 1) for ip in ips})])


@pytest.fixture
def sysctl() -> Iterator[None]:
    before = EXPIRE_NODEST_CONN.read_text()
    yield
    EXPIRE_NODEST_CONN.write_text(before)


def half_request() -> socket.socket:
    """A connection from the client namespace to the VIP with an unfinished HTTP request on it."""
    sock = run_in_netns(f"/run/netns/{CLIENT[0]}", lambda: socket.create_connection((VIP, PORT), timeout=3))
    sock.sendall(b"GET / HTTP/1.0\r\n")
    return sock


async def test_a_removed_real_s_connection(topology: None, sysctl: None) -> None:
    """On, then off, on one topology (its namespaces are not made twice in a row)."""
    for expire in (True, False):
        EXPIRE_NODEST_CONN.write_text("0\n" if expire else "1\n")  # the plane must change it
        plane = IpvsDataplane()
        plane.expire_nodest_conn = expire
        await plane.start()
        try:
            assert EXPIRE_NODEST_CONN.read_text().strip() == ("1" if expire else "0")
            await plane.apply(diff(await plane.read(), table(REAL_IPS)))
            with half_request() as sock:
                port = sock.getsockname()[1]
                entry = next(e for e in await plane.connections()
                             if e.client[1] == port and e.virtual == (VIP, PORT))
                real = entry.dest[0]
                await plane.apply(diff(await plane.read(), table([ip for ip in REAL_IPS if ip != real])))
                sock.sendall(b"\r\n")
                got = b""
                try:
                    while chunk := await asyncio.to_thread(sock.recv, 4096):
                        got += chunk
                except OSError as exc:  # reset (or no answer at all)
                    got += repr(exc).encode()
                if expire:  # the entry is expired: the retransmission meets no socket and is reset
                    assert got.startswith(b"ConnectionResetError"), got
                else:  # IPVS drops the packets of a connection whose real is gone (not a drain)
                    assert got == b"TimeoutError('timed out')", got
                    assert any(e.client[1] == port for e in await plane.connections())
        finally:
            await plane.apply(diff(await plane.read(), Table()))
            await plane.close()
