"""connect and ping checks on loopback."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from saru.checks.base import run_check
from saru.checks.tcp import echo_request, icmp_checksum, is_echo_reply
from saru.model import CheckSpec
from tests.helpers import free_port, require


def connect(port: int, address: str = "127.0.0.1", protocol: str = "tcp", timeout: float = 2) -> CheckSpec:
    return CheckSpec("connect", "none", protocol, address, port, checktimeout=timeout)  # type: ignore[arg-type]


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield sock
    sock.close()


async def test_connect_up(listener):
    result = await run_check(connect(listener.getsockname()[1]))
    assert (result.ok, result.message) == (True, "connected")


async def test_connect_ipv6(listener):
    try:
        sock6 = socket.socket(socket.AF_INET6)
        sock6.bind(("::1", 0))
    except OSError:
        require(False, "no IPv6 loopback")
    with sock6:
        sock6.listen(4)
        assert (await run_check(connect(sock6.getsockname()[1], "::1"))).ok


async def test_connect_refused():
    result = await run_check(connect(free_port()))
    assert (result.ok, result.message) == (False, "connection refused")


async def test_connect_without_a_port():
    result = await run_check(connect(0))
    assert (result.ok, result.message) == (False, "no port to check")


async def test_connect_timeout_when_the_backlog_is_full():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(0)
    port = sock.getsockname()[1]
    fillers = []
    try:
        for _ in range(3):  # fill the accept queue; further SYNs are dropped
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        result = await run_check(connect(port, timeout=0.3))
        assert (result.ok, result.message) == (False, "timeout after 0.3s")
        assert 0.28 <= result.latency < 0.6
    finally:
        for filler in fillers:
            filler.close()
        sock.close()


def icmp_allowed() -> bool:
    for kind in (socket.SOCK_RAW, socket.SOCK_DGRAM):
        try:
            socket.socket(socket.AF_INET, kind, socket.IPPROTO_ICMP).close()
            return True
        except PermissionError:
            continue
    return False


async def test_ping_loopback():
    require(icmp_allowed(), "ICMP sockets not permitted here")
    result = await run_check(CheckSpec("ping", "none", "tcp", "127.0.0.1", 0, checktimeout=1))
    assert result.ok and result.message.startswith("echo reply in")


async def test_udp_connect_is_a_ping():
    require(icmp_allowed(), "ICMP sockets not permitted here")
    result = await run_check(connect(53, protocol="udp"))
    assert result.ok and result.message.startswith("echo reply")


async def test_ping_ipv6_loopback():
    require(icmp_allowed(), "ICMP sockets not permitted here")
    try:
        socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).bind(("::1", 0))
    except OSError:
        require(False, "no IPv6 loopback")
    result = await run_check(CheckSpec("ping", "none", "tcp", "::1", 0, checktimeout=1))
    assert result.ok, result


def test_echo_packets():
    packet = echo_request(socket.AF_INET, 0x1234, 7, b"payload!")
    assert icmp_checksum(packet) == 0  # a valid checksum sums to zero
    reply = bytes([0]) + packet[1:]
    ip_header = bytes([0x45]) + bytes(19)
    assert is_echo_reply(socket.AF_INET, ip_header + reply, True, 0x1234, 7, b"payload!")
    assert not is_echo_reply(socket.AF_INET, ip_header + reply, True, 0x9999, 7, b"payload!")
    assert is_echo_reply(socket.AF_INET, reply, False, 0x9999, 7, b"payload!")  # dgram: kernel's id
    assert not is_echo_reply(socket.AF_INET, reply, False, 0x1234, 8, b"payload!")
