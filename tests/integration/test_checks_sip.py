"""SIP negotiate checks (OPTIONS) against a real SIPp UAS on 127.0.0.1, over UDP and TCP."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from saru.checks.base import run_check
from saru.model import CheckSpec
from tests.helpers import HungServer, free_port, require
from tests.servers.directory import SilentUdp, ipv6_loopback
from tests.servers.misc import Server, start_sipp

LOGIN = "ldirectord@director.test"


@pytest.fixture(scope="module", params=["udp", "tcp"])
def sipp(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A SIPp UAS answering 200 OK, over the virtual's protocol (the fixture's param)."""
    server = start_sipp(tmp_path_factory.mktemp(f"sipp-{request.param}"), transport=request.param)
    server.name = request.param  # the transport, for the tests
    try:
        yield server
    finally:
        server.stop()


async def message_log(server: Server, requests: int, timeout: float = 5.0) -> str:
    """SIPp's message trace once it holds at least ``requests`` OPTIONS (polled with a deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        text = server.read("messages.log")
        if text.count("OPTIONS sip:") >= requests or time.monotonic() > deadline:
            return text
        await asyncio.sleep(0.02)


def sip(port: int, protocol: str = "udp", timeout: float = 2.0, address: str = "127.0.0.1",
        **kw: str) -> CheckSpec:
    return CheckSpec("negotiate", "sip", protocol, address, port, login=LOGIN,  # type: ignore[arg-type]
                     negotiatetimeout=timeout, **kw)


async def test_up_on_200_ok(sipp):
    result = await run_check(sip(sipp.port, sipp.name))
    assert (result.ok, result.message) == (True, "SIP/2.0 200 OK")
    assert result.latency < 1


async def test_request_names_the_login_and_the_transport(sipp):
    for _ in range(2):
        assert (await run_check(sip(sipp.port, sipp.name))).ok
    sent = await message_log(sipp, requests=2)
    assert f"OPTIONS sip:{LOGIN} SIP/2.0" in sent
    vias = re.findall(r"Via: SIP/2.0/(\w+) 127\.0\.0\.1:\d+;branch=(z9hG4bK[0-9a-f]+)", sent)
    assert vias and all(transport == sipp.name.upper() for transport, _ in vias)
    assert len({branch for _, branch in vias}) == sent.count("OPTIONS sip:")  # a fresh branch per check


async def test_every_check_is_a_new_transaction(sipp):
    for _ in range(3):
        assert (await run_check(sip(sipp.port, sipp.name))).ok


@pytest.mark.parametrize("protocol", ["udp", "tcp"])
async def test_down_on_an_error_status(tmp_path: Path, protocol: str):
    server = start_sipp(tmp_path / "sipp404", status=404, reason="Not Found", transport=protocol)
    try:
        result = await run_check(sip(server.port, protocol))
    finally:
        server.stop()
    assert (result.ok, result.message) == (False, "SIP/2.0 404 Not Found")


@pytest.mark.parametrize("protocol", ["udp", "tcp"])
async def test_down_when_stopped(tmp_path: Path, protocol: str):
    server = start_sipp(tmp_path / "sipp-stopped", transport=protocol)
    assert (await run_check(sip(server.port, protocol))).ok
    server.stop()
    result = await run_check(sip(server.port, protocol))
    assert (result.ok, result.message) == (False, "connection refused")
    assert result.latency < 0.5  # ICMP port unreachable ends a UDP check at once


@pytest.mark.parametrize("protocol", ["udp", "tcp"])
async def test_up_over_ipv6(tmp_path: Path, protocol: str):
    require(ipv6_loopback(), "::1 is not available")
    server = start_sipp(tmp_path / "sipp6", transport=protocol, host="::1")
    try:
        result = await run_check(sip(server.port, protocol, address="::1"))
        sent = await message_log(server, requests=1)
    finally:
        server.stop()
    assert (result.ok, result.message) == (True, "SIP/2.0 200 OK")
    assert f"Via: SIP/2.0/{protocol.upper()} [::1]:" in sent


async def test_udp_down_within_the_timeout_when_nothing_answers():
    silent = SilentUdp()
    try:
        result = await run_check(sip(silent.port, "udp", timeout=0.8))
    finally:
        silent.close()
    assert (result.ok, result.message) == (False, "timeout after 0.8s")
    assert 0.75 < result.latency < 1.2


async def test_tcp_down_within_the_timeout_when_the_server_never_answers(hung_server: HungServer):
    result = await run_check(sip(hung_server.port, "tcp", timeout=0.5))
    assert (result.ok, result.message) == (False, "timeout after 0.5s")
    assert 0.45 < result.latency < 0.9


async def test_no_port_is_down():
    result = await run_check(sip(0))
    assert (result.ok, result.message) == (False, "no port to check")


async def test_nothing_listening_on_udp_is_refused():
    result = await run_check(sip(free_port(kind=socket.SOCK_DGRAM)))
    assert (result.ok, result.message) == (False, "connection refused")
