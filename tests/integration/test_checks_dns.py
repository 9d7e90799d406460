"""DNS negotiate checks against a real dnsmasq (UDP and TCP, IPv4 and IPv6 loopback)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from saru.checks.base import run_check
from saru.checks.dns import EMPTY_RECEIVE
from saru.model import CheckSpec
from tests.helpers import HungServer, free_port, require
from tests.servers.directory import (
    DNS_ADDRESS,
    DNS_BIG_COUNT,
    DNS_BIG_NAME,
    DNS_NAME,
    DNS_PTR_NAME,
    Server,
    SilentUdp,
    ipv6_loopback,
    start_dnsmasq,
)


@pytest.fixture(scope="module")
def dnsmasq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_dnsmasq(tmp_path_factory.mktemp("dnsmasq"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["udp", "tcp"])
def protocol(request: pytest.FixtureRequest) -> str:
    """The virtual's protocol picks the transport of the query."""
    return str(request.param)


def dns(port: int, protocol: str = "udp", timeout: float = 2.0, address: str = "127.0.0.1",
        **kw: str) -> CheckSpec:
    values = {"request": f"/{DNS_NAME}", "receive": DNS_ADDRESS.replace(".", r"\."), **kw}
    return CheckSpec("negotiate", "dns", protocol, address, port, negotiatetimeout=timeout,  # type: ignore[arg-type]
                     **values)


async def test_up_when_the_a_record_matches(dnsmasq, protocol):
    result = await run_check(dns(dnsmasq.port, protocol))
    assert (result.ok, result.message) == (True, f"answer {DNS_ADDRESS}")
    assert 0 < result.latency < 1


async def test_up_on_a_reverse_lookup(dnsmasq, protocol):
    result = await run_check(dns(dnsmasq.port, protocol, request="/192.0.2.20", receive=r"^rev\.example"))
    assert (result.ok, result.message) == (True, f"answer {DNS_PTR_NAME}")


async def test_truncated_udp_answer_is_retried_over_tcp(dnsmasq):
    last = rf"^198\.51\.100\.{DNS_BIG_COUNT}$"
    result = await run_check(dns(dnsmasq.port, "udp", request=f"/{DNS_BIG_NAME}", receive=last))
    assert (result.ok, result.message) == (True, f"answer 198.51.100.{DNS_BIG_COUNT}")


async def test_request_without_leading_slash(dnsmasq):
    assert (await run_check(dns(dnsmasq.port, request=DNS_NAME))).ok


async def test_ipv6(tmp_path: Path):
    require(ipv6_loopback(), "no IPv6 loopback")
    server = start_dnsmasq(tmp_path / "dnsmasq6", host="::1")
    try:
        for protocol in ("udp", "tcp"):
            result = await run_check(dns(server.port, protocol, address="::1"))
            assert result.ok, result
    finally:
        await asyncio.to_thread(server.stop)  # lets the loop close our sockets


async def test_down_when_the_answer_does_not_match(dnsmasq, protocol):
    result = await run_check(dns(dnsmasq.port, protocol, receive=r"^192\.0\.2\.11$"))
    assert not result.ok
    assert result.message == rf"receive pattern '^192\.0\.2\.11$' matches no answer ({DNS_ADDRESS})"


async def test_down_when_the_name_is_unknown(dnsmasq, protocol):
    result = await run_check(dns(dnsmasq.port, protocol, request="/other.example.test"))
    assert not result.ok
    assert result.message.startswith("answer ")  # dnsmasq without upstreams: REFUSED


async def test_down_with_an_empty_receive_like_ldirectord(dnsmasq):
    result = await run_check(dns(dnsmasq.port, receive=""))
    assert (result.ok, result.message) == (False, EMPTY_RECEIVE)


async def test_down_with_an_empty_request(dnsmasq):
    result = await run_check(dns(dnsmasq.port, request="/"))
    assert not result.ok
    assert result.message.startswith("request is empty")


async def test_down_when_stopped(tmp_path: Path, protocol):
    server = start_dnsmasq(tmp_path / "dnsmasq")
    try:
        assert (await run_check(dns(server.port, protocol))).ok
    finally:
        await asyncio.to_thread(server.stop)  # lets the loop close our sockets
    result = await run_check(dns(server.port, protocol))
    assert (result.ok, result.message) == (False, "connection refused")
    assert result.latency < 0.5


async def test_down_when_nothing_listens(protocol):
    result = await run_check(dns(free_port(), protocol))
    assert not result.ok


async def test_hung_tcp_server_is_down_after_the_timeout(hung_server: HungServer):
    result = await run_check(dns(hung_server.port, "tcp", timeout=0.5))
    assert (result.ok, result.message) == (False, "timeout after 0.5s")
    assert 0.45 <= result.latency < 0.8


async def test_silent_udp_server_is_down_after_the_timeout():
    server = SilentUdp()
    try:
        result = await run_check(dns(server.port, "udp", timeout=0.5))
    finally:
        server.close()
    assert (result.ok, result.message) == (False, "timeout after 0.5s")
    assert 0.45 <= result.latency < 0.8
