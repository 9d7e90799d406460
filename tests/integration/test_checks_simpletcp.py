"""simpletcp negotiate checks against a real line protocol served by socat (TCP and UDP) on 127.0.0.1."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from saru.checks.base import run_check
from saru.checks.simpletcp import MAX_READ, request_bytes
from saru.model import CheckSpec
from tests.helpers import HungServer, free_port, require
from tests.servers.directory import SilentUdp
from tests.servers.misc import Server, start_line_server


@pytest.fixture(scope="module")
def line_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_line_server(tmp_path_factory.mktemp("lines-tcp"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def udp_line_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_line_server(tmp_path_factory.mktemp("lines-udp"), protocol="udp")
    try:
        yield server
    finally:
        server.stop()


def simpletcp(port: int, protocol: str = "tcp", timeout: float = 2.0, **kw: str) -> CheckSpec:
    values = {"request": "/PING", "receive": r"^\+PONG", **kw}
    return CheckSpec("negotiate", "simpletcp", protocol, "127.0.0.1", port,  # type: ignore[arg-type]
                     negotiatetimeout=timeout, **values)


def test_request_bytes():
    assert request_bytes("/PING") == b"PING"
    assert request_bytes("/ECHO a\\nPING") == b"ECHO a\nPING"
    assert request_bytes("/") == b""


async def test_up_when_a_line_matches(line_server):
    result = await run_check(simpletcp(line_server.port))
    assert (result.ok, result.message) == (True, "got '+PONG'")
    assert result.latency < 1


async def test_literal_backslash_n_separates_lines(line_server):
    spec = simpletcp(line_server.port, request="/ECHO first\\nECHO second", receive="^second$")
    result = await run_check(spec)
    assert (result.ok, result.message) == (True, "got 'second'")


async def test_empty_receive_matches_the_first_line(line_server):
    result = await run_check(simpletcp(line_server.port, receive=""))
    assert (result.ok, result.message) == (True, "got '+OK saru test server'")


async def test_down_when_no_line_matches(line_server):
    result = await run_check(simpletcp(line_server.port, request="/HELLO"))
    assert not result.ok
    assert result.message == r"receive pattern '^\+PONG' not found (last line: '-ERR unknown command')"


async def test_up_over_udp(udp_line_server):
    # one datagram per request; the line server answers the datagram's complete lines
    result = await run_check(simpletcp(udp_line_server.port, "udp", request="/PING\\n"))
    assert (result.ok, result.message) == (True, "got '+PONG'")


async def test_udp_down_when_no_line_matches(udp_line_server):
    result = await run_check(simpletcp(udp_line_server.port, "udp", request="/PING\\n", receive="^nope",
                                       timeout=0.8))
    assert (result.ok, result.message) == (False, "timeout after 0.8s")


@pytest.mark.parametrize("protocol", ["tcp", "udp"])
async def test_down_when_stopped(tmp_path: Path, protocol: str):
    server = start_line_server(tmp_path / "stopped", protocol=protocol)
    assert (await run_check(simpletcp(server.port, protocol, request="/PING\\n"))).ok
    server.stop()
    result = await run_check(simpletcp(server.port, protocol, request="/PING\\n"))
    assert (result.ok, result.message) == (False, "connection refused")
    assert result.latency < 0.5


async def test_down_when_the_server_closes_without_answering(tmp_path: Path):
    require(shutil.which("true") is not None, "true is not installed")
    server = start_line_server(tmp_path / "mute", program=shutil.which("true"))
    try:
        result = await run_check(simpletcp(server.port))
    finally:
        server.stop()
    assert (result.ok, result.message) == (False, "connection closed without an answer")


async def test_reading_is_capped(tmp_path: Path):
    require(shutil.which("yes") is not None, "yes is not installed")
    server = start_line_server(tmp_path / "yes", program=shutil.which("yes"))
    try:
        result = await run_check(simpletcp(server.port, receive="^n"))
    finally:
        server.stop()
    assert not result.ok
    assert result.message == f"receive pattern '^n' not found in the first {MAX_READ} bytes"


async def test_down_within_the_timeout_when_the_server_never_answers(hung_server: HungServer):
    result = await run_check(simpletcp(hung_server.port, timeout=0.5))
    assert (result.ok, result.message) == (False, "timeout after 0.5s")
    assert 0.45 < result.latency < 0.9


async def test_udp_down_within_the_timeout_when_nothing_answers():
    silent = SilentUdp()
    try:
        result = await run_check(simpletcp(silent.port, "udp", timeout=0.5))
    finally:
        silent.close()
    assert (result.ok, result.message) == (False, "timeout after 0.5s")
    assert 0.45 < result.latency < 0.9


async def test_nothing_listening_on_udp_is_refused():
    result = await run_check(simpletcp(free_port(kind=socket.SOCK_DGRAM), "udp"))
    assert (result.ok, result.message) == (False, "connection refused")
