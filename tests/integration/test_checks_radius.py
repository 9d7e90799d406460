"""RADIUS negotiate checks against a real FreeRADIUS 3 (own trimmed raddb in a tmp directory)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from saru.checks.base import run_check
from saru.model import CheckSpec
from tests.helpers import free_port, require
from tests.servers.directory import (
    RADIUS_PASSWORD,
    RADIUS_SECRET,
    RADIUS_USER,
    Server,
    SilentUdp,
    ipv6_loopback,
    start_freeradius,
)


@pytest.fixture(scope="module")
def radiusd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_freeradius(tmp_path_factory.mktemp("radius"), ipv6=ipv6_loopback())
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def silent_udp() -> Iterator[SilentUdp]:
    server = SilentUdp()
    yield server
    server.close()


def radius(port: int, timeout: float = 2.0, address: str = "127.0.0.1", **kw: str) -> CheckSpec:
    values = {"login": RADIUS_USER, "passwd": RADIUS_PASSWORD, "secret": RADIUS_SECRET, **kw}
    return CheckSpec("negotiate", "radius", "udp", address, port, negotiatetimeout=timeout, **values)


async def test_up_on_access_accept(radiusd):
    result = await run_check(radius(radiusd.port))
    assert (result.ok, result.message) == (True, "Access-Accept")
    assert 0 < result.latency < 1


async def test_ipv6(radiusd):
    require(ipv6_loopback(), "no IPv6 loopback")
    result = await run_check(radius(radiusd.port, address="::1"))
    assert (result.ok, result.message) == (True, "Access-Accept")


async def test_down_on_access_reject_for_a_wrong_password(radiusd):
    """ldirectord counted Access-Reject as up (W8); Saru does not."""
    result = await run_check(radius(radiusd.port, passwd="wrong-password"))
    assert (result.ok, result.message) == (False, "Access-Reject")
    assert result.latency < 1  # reject_delay is 0 in the test server


async def test_down_on_access_reject_for_an_unknown_user(radiusd):
    result = await run_check(radius(radiusd.port, login="nobody-here"))
    assert (result.ok, result.message) == (False, "Access-Reject")


async def test_long_password_spanning_several_blocks(radiusd):
    """A wrong 40-byte password is hidden over three 16-byte blocks and still rejected cleanly."""
    result = await run_check(radius(radiusd.port, passwd="x" * 40))
    assert (result.ok, result.message) == (False, "Access-Reject")


async def test_down_on_a_wrong_secret(radiusd):
    """FreeRADIUS drops a request whose Message-Authenticator does not verify: down by timeout."""
    result = await run_check(radius(radiusd.port, timeout=0.5, secret="not-the-secret"))
    assert (result.ok, result.message) == (False, "timeout after 0.5s")
    assert radiusd.log_shows("invalid Message-Authenticator")


async def test_down_without_a_secret(radiusd):
    result = await run_check(radius(radiusd.port, secret=""))
    assert (result.ok, result.message) == (False, "no secret configured: the radius check needs secret")


async def test_down_when_stopped(tmp_path: Path):
    server = start_freeradius(tmp_path / "radius")
    try:
        assert (await run_check(radius(server.port))).ok
    finally:
        await asyncio.to_thread(server.stop)  # lets the loop close our sockets
    result = await run_check(radius(server.port))
    assert (result.ok, result.message) == (False, "connection refused")
    assert result.latency < 0.5


async def test_down_when_nothing_listens():
    result = await run_check(radius(free_port("127.0.0.1", socket.SOCK_DGRAM)))
    assert (result.ok, result.message) == (False, "connection refused")


async def test_silent_server_is_down_after_the_timeout(silent_udp):
    result = await run_check(radius(silent_udp.port, timeout=0.5))
    assert (result.ok, result.message) == (False, "timeout after 0.5s")
    assert 0.45 <= result.latency < 0.8


async def test_request_is_retransmitted_unchanged(silent_udp):
    """RFC 2865: a retransmission keeps the identifier and the Request Authenticator."""
    result = await run_check(radius(silent_udp.port, timeout=1.5))
    assert result.message == "timeout after 1.5s"
    silent_udp.sock.setblocking(False)
    packets = []
    while True:
        try:
            packets.append(silent_udp.sock.recv(4096))
        except BlockingIOError:
            break
    assert len(packets) == 2  # at 0 s and at 1 s
    assert packets[0] == packets[1]
    assert packets[0][0] == 1  # Access-Request


async def test_checktimeout_bounds_the_check_like_ldirectords_alarm(silent_udp):
    result = await run_check(replace(radius(silent_udp.port, timeout=5), checktimeout=0.5))
    assert (result.ok, result.message) == (False, "timeout after 0.5s")
    assert 0.45 <= result.latency < 0.8
