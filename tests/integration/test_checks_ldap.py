"""LDAP/LDAPS negotiate checks against a real slapd (mdb backend, own config in a tmp directory)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from saru.checks.base import run_check
from saru.model import CheckSpec
from tests.helpers import HungServer, free_port, make_self_signed_cert, require
from tests.servers.directory import (
    LDAP_ALICE_PASSWORD,
    LDAP_ROOTDN,
    LDAP_ROOTPW,
    LDAP_SUFFIX,
    Server,
    ipv6_loopback,
    start_slapd,
)

HEALTH = f"/cn=health,{LDAP_SUFFIX}"
ALICE = f"uid=alice,ou=people,{LDAP_SUFFIX}"


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_slapd(tmp_path_factory.mktemp("slapd"), ipv6=ipv6_loopback())
    try:
        yield server
    finally:
        server.stop()


def ldap(port: int, service: str = "ldap", timeout: float = 2.0, address: str = "127.0.0.1",
         **kw: str) -> CheckSpec:
    return CheckSpec("negotiate", service, "tcp", address, port, negotiatetimeout=timeout,
                     **{"request": HEALTH, **kw})


@pytest.fixture(params=["ldap", "ldaps"])
def service(request: pytest.FixtureRequest, slapd: Server) -> tuple[str, int]:
    """Each test runs over plain LDAP and over LDAPS (TLS from the first byte)."""
    if request.param == "ldaps":
        return "ldaps", slapd.extra_ports["ldaps"]
    return "ldap", slapd.port


# ---- up -----------------------------------------------------------------------------------------------

async def test_up_with_an_anonymous_bind(service):
    name, port = service
    result = await run_check(ldap(port, name))
    assert (result.ok, result.message) == (True, f"found {HEALTH[1:]}")
    assert 0 < result.latency < 1


async def test_up_with_the_rootdn_bind_and_a_matching_receive(service):
    name, port = service
    spec = ldap(port, name, login=LDAP_ROOTDN, passwd=LDAP_ROOTPW, receive=r"^cn=health,dc=")
    result = await run_check(spec)
    assert result.ok, result


async def test_up_with_a_user_bind(service):
    name, port = service
    result = await run_check(ldap(port, name, login=ALICE, passwd=LDAP_ALICE_PASSWORD, request=f"/{ALICE}"))
    assert result.ok, result


async def test_login_without_passwd_binds_anonymously(service):
    """ldirectord binds with credentials only when login *and* passwd are set."""
    name, port = service
    assert (await run_check(ldap(port, name, login=LDAP_ROOTDN))).ok


async def test_request_without_leading_slash_and_the_root_dse(service):
    name, port = service
    assert (await run_check(ldap(port, name, request=LDAP_SUFFIX))).ok
    result = await run_check(ldap(port, name, request="/"))
    assert (result.ok, result.message) == (True, "found the root DSE")


async def test_ipv6(slapd):
    require("ldap6" in slapd.extra_ports, "no IPv6 loopback")
    result = await run_check(ldap(slapd.extra_ports["ldap6"], address="::1"))
    assert result.ok, result


# ---- down ---------------------------------------------------------------------------------------------

async def test_down_on_a_wrong_password(service):
    name, port = service
    result = await run_check(ldap(port, name, login=LDAP_ROOTDN, passwd="not-the-password"))
    assert (result.ok, result.message) == (False, "bind failed: invalidCredentials (49)")


async def test_down_when_the_base_does_not_exist(service):
    name, port = service
    result = await run_check(ldap(port, name, request=f"/cn=missing,{LDAP_SUFFIX}"))
    assert not result.ok
    assert result.message == f"search of 'cn=missing,{LDAP_SUFFIX}' failed: noSuchObject (32)"


async def test_down_when_the_receive_does_not_match_the_dn(service):
    name, port = service
    result = await run_check(ldap(port, name, receive="^uid="))
    assert (result.ok, result.message) == (
        False, f"receive pattern '^uid=' does not match DN '{HEALTH[1:]}'")


async def test_down_on_an_invalid_base_dn(slapd):
    result = await run_check(ldap(slapd.port, request="/not a dn"))
    assert not result.ok
    assert "invalidDNSyntax (34)" in result.message


async def test_down_when_stopped(tmp_path: Path):
    server = start_slapd(tmp_path / "slapd")
    try:
        assert (await run_check(ldap(server.port))).ok
        assert (await run_check(ldap(server.extra_ports["ldaps"], "ldaps"))).ok
    finally:
        await asyncio.to_thread(server.stop)  # lets the loop close our sockets
    for name, port in (("ldap", server.port), ("ldaps", server.extra_ports["ldaps"])):
        result = await run_check(ldap(port, name))
        assert (result.ok, result.message) == (False, "connection refused")


async def test_down_when_nothing_listens():
    result = await run_check(ldap(free_port()))
    assert (result.ok, result.message) == (False, "connection refused")


@pytest.mark.parametrize("name", ["ldap", "ldaps"])
async def test_hung_server_is_down_after_the_timeout(hung_server: HungServer, name: str):
    result = await run_check(ldap(hung_server.port, name, timeout=0.5))
    assert (result.ok, result.message) == (False, "timeout after 0.5s")
    assert 0.45 <= result.latency < 0.8


async def test_ldaps_against_a_plain_ldap_port_is_down(slapd):
    result = await run_check(ldap(slapd.port, "ldaps", timeout=1))
    assert not result.ok
    assert result.latency < 1.5
    assert result.message.startswith("TLS handshake failed")


async def test_plain_ldap_against_a_tls_server_is_down(tmp_path: Path):
    """A TLS-only server answers our BindRequest with a TLS alert or nothing: down, never up."""
    cert, key = make_self_signed_cert(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    async with server:
        port = server.sockets[0].getsockname()[1]
        result = await run_check(ldap(port, timeout=1))
    assert (result.ok, result.message) == (False, "connection closed by peer")


async def test_checktimeout_bounds_the_check_like_ldirectords_alarm(hung_server: HungServer):
    spec = replace(ldap(hung_server.port, timeout=5), checktimeout=0.5)
    result = await run_check(spec)
    assert (result.ok, result.message) == (False, "timeout after 0.5s")
    assert 0.45 <= result.latency < 0.8
