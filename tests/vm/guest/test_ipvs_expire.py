"""saru.toml ``[director] expire_nodest_conn`` on the IPVS plane: the plane sets the kernel's
``net.ipv4.vs.expire_nodest_conn`` at start, and the kernel then ends (or keeps) the connections of a
removed real — with real LVS-NAT traffic: a client's request left unfinished on a real, the real
removed, the request finished. On, the client is reset at once; off, IPVS silently drops the
connection's packets (the removed real is no longer "available"): the client waits for its timeout.
A real at weight 0 is still available and keeps its connections either way."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest

from saru.dataplane.ipvs import IpvsDataplane
from saru.dataplane.ipvs.netlink import run_in_netns
from saru.dataplane.ipvs.plane import EXPIRE_NODEST_CONN
from saru.diff import diff
from saru.model import Dest, Service, ServiceKey, ServiceSettings, Table
from tests.vm.guest.lvs_nat import CLIENT, REAL_IPS, VIP, Topology

PORT = 8085  # a port of its own: TIME_WAIT entries of other tests' services do not count here
KEY = ServiceKey("tcp", VIP, PORT)


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


async def test_a_removed_real_s_connection(lvs_nat: Topology, sysctl: None) -> None:
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
