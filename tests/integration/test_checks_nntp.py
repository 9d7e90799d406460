"""nntp negotiate check against a real leafnode (run per connection by socat, own config and spool)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from saru.checks.base import run_check
from saru.model import CheckSpec
from tests.helpers import HungServer, free_port, require
from tests.servers.directory import ipv6_loopback
from tests.servers.mail import HOST, NNTP_FQDN, MailServer, start_leafnode


def nntp(port: int, timeout: float = 2.0, **kw: str) -> CheckSpec:
    return CheckSpec("negotiate", "nntp", "tcp", HOST, port, negotiatetimeout=timeout, **kw)


@pytest.fixture(scope="module")
def leafnode(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailServer]:
    server = start_leafnode(tmp_path_factory.mktemp("leafnode"))
    try:
        yield server
    finally:
        server.stop()


async def test_up_on_a_2xx_greeting(leafnode: MailServer):
    result = await run_check(nntp(leafnode.ports["nntp"]))
    assert result.ok, result
    assert result.message.startswith("200 Leafnode NNTP Daemon")
    assert f"(my fqdn: {NNTP_FQDN})" in result.message
    # the check waits (up to 1 s) for the answer to its QUIT: a short latency proves it was sent
    assert result.latency < 0.5


async def test_request_and_receive_are_ignored(leafnode: MailServer):
    result = await run_check(nntp(leafnode.ports["nntp"], request="/nothing", receive="^never$"))
    assert result.ok, result


async def test_ipv6(tmp_path: Path):
    """nntp is one of the services ldirectord supports on virtual6."""
    require(ipv6_loopback(), "no IPv6 loopback")
    server = start_leafnode(tmp_path / "leafnode", host="::1")
    try:
        result = await run_check(CheckSpec("negotiate", "nntp", "tcp", "::1", server.ports["nntp"],
                                           negotiatetimeout=2))
    finally:
        server.stop()
    assert result.ok, result


async def test_down_when_the_server_is_not_ready(tmp_path: Path):
    """leafnode without a usable host name greets with 503 (a real not-ready answer)."""
    server = start_leafnode(tmp_path / "leafnode", fqdn=False)
    try:
        result = await run_check(nntp(server.ports["nntp"]))
    finally:
        server.stop()
    assert not result.ok
    assert result.message.startswith("NNTP server not ready: 503 Leafnode must have a unique")


async def test_down_when_stopped(tmp_path: Path):
    server = start_leafnode(tmp_path / "leafnode")
    try:
        assert (await run_check(nntp(server.ports["nntp"]))).ok
    finally:
        await asyncio.to_thread(server.stop)
    result = await run_check(nntp(server.ports["nntp"]))
    assert (result.ok, result.message) == (False, "connection refused")


async def test_down_when_nothing_listens():
    result = await run_check(nntp(free_port()))
    assert (result.ok, result.message) == (False, "connection refused")


async def test_hung_server_is_down_after_the_timeout(hung_server: HungServer):
    result = await run_check(nntp(hung_server.port, timeout=0.5))
    assert (result.ok, result.message) == (False, "timeout after 0.5s")
    assert 0.45 <= result.latency < 0.8
