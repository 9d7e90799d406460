"""FTP negotiate checks against a real vsftpd (anonymous login, passive mode) on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from saru.checks.base import run_check
from saru.checks.ftp import MAX_CONTENT, default_passwd
from saru.checks.spec import check_spec_for
from saru.config.ldirectord import parse_text
from saru.model import CheckSpec
from tests.helpers import HungServer, free_port, require
from tests.servers.directory import ipv6_loopback
from tests.servers.misc import Server, start_vsftpd

PASSWORD = "saru@test"
BIG = "x" * (MAX_CONTENT + 4096) + "TAIL\n"
FILES = {"check.html": "<p>ftp is up</p>\n", "empty.txt": "", "big.bin": "HEAD\n" + BIG,
         "sub/deep.txt": "deep file\n"}


@pytest.fixture(scope="module")
def vsftpd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_vsftpd(tmp_path_factory.mktemp("vsftpd"), FILES, passwords=(PASSWORD, default_passwd()))
    try:
        yield server
    finally:
        server.stop()


def ftp(port: int, timeout: float = 3.0, address: str = "127.0.0.1", **kw: str) -> CheckSpec:
    values = {"request": "/check.html", "receive": "ftp is up", "login": "anonymous", "passwd": PASSWORD,
              **kw}
    return CheckSpec("negotiate", "ftp", "tcp", address, port, negotiatetimeout=timeout, **values)  # type: ignore[arg-type]


async def test_up_when_the_file_matches(vsftpd):
    result = await run_check(ftp(vsftpd.port))
    assert (result.ok, result.message) == (True, "retrieved check.html (17 bytes)")
    assert result.latency < 1


async def test_up_in_a_subdirectory(vsftpd):
    result = await run_check(ftp(vsftpd.port, request="/sub/deep.txt", receive="^deep"))
    assert result.ok, result.message


async def test_default_credentials_are_anonymous_and_ldirectord_at_host(vsftpd):
    result = await run_check(ftp(vsftpd.port, login="", passwd=""))
    assert result.ok, result.message


async def test_empty_receive_is_up_when_the_download_succeeds(vsftpd):
    result = await run_check(ftp(vsftpd.port, request="/empty.txt", receive=""))
    assert (result.ok, result.message) == (True, "retrieved empty.txt (0 bytes)")


async def test_down_when_the_content_does_not_match(vsftpd):
    result = await run_check(ftp(vsftpd.port, receive="ftp is down"))
    assert not result.ok
    assert result.message == "receive pattern 'ftp is down' not found in check.html (17 bytes)"


async def test_down_when_the_file_is_missing(vsftpd):
    result = await run_check(ftp(vsftpd.port, request="/missing.html", receive=""))
    assert not result.ok
    assert result.message.startswith("RETR missing.html: 550")


async def test_down_on_a_wrong_password(vsftpd):
    result = await run_check(ftp(vsftpd.port, passwd="intruder@example"))
    assert (result.ok, result.message) == (False, "login failed: 530 Login incorrect.")


async def test_down_on_a_wrong_user(vsftpd):
    result = await run_check(ftp(vsftpd.port, login="operator", passwd="secret"))
    assert not result.ok
    assert result.message.startswith("login failed: 530")
    assert "secret" not in result.message


async def test_download_is_capped_at_one_mebibyte(vsftpd):
    head = await run_check(ftp(vsftpd.port, request="/big.bin", receive="^HEAD"))
    assert (head.ok, head.message) == (True, f"retrieved big.bin ({MAX_CONTENT}+ bytes)")
    tail = await run_check(ftp(vsftpd.port, request="/big.bin", receive="TAIL"))
    assert not tail.ok
    assert "not found in big.bin" in tail.message


async def test_server_still_serves_after_an_aborted_transfer(vsftpd):
    await run_check(ftp(vsftpd.port, request="/big.bin", receive="^HEAD"))
    assert (await run_check(ftp(vsftpd.port))).ok


async def test_invalid_receive_pattern_is_reported(vsftpd):
    result = await run_check(ftp(vsftpd.port, receive="("))
    assert not result.ok
    assert result.message.startswith("invalid receive pattern '('")


async def test_data_connection_goes_to_the_real_when_pasv_names_another_address(tmp_path: Path):
    # a server behind NAT advertises an address the director cannot use: the real's address is used
    server = start_vsftpd(tmp_path / "nat", FILES, passwords=(PASSWORD,), pasv_address="192.0.2.7")
    try:
        result = await run_check(ftp(server.port))
    finally:
        server.stop()
    assert (result.ok, result.message) == (
        True, "retrieved check.html (17 bytes; PASV named 192.0.2.7, used 127.0.0.1)")


async def test_ipv6_uses_epsv(tmp_path: Path):
    require(ipv6_loopback(), "::1 is not available")
    server = start_vsftpd(tmp_path / "v6", FILES, passwords=(PASSWORD,), host="::1")
    try:
        result = await run_check(ftp(server.port, address="::1"))
    finally:
        server.stop()
    assert (result.ok, result.message) == (True, "retrieved check.html (17 bytes)")


async def test_down_when_stopped(tmp_path: Path):
    server = start_vsftpd(tmp_path / "stopped", FILES, passwords=(PASSWORD,))
    assert (await run_check(ftp(server.port))).ok
    server.stop()
    result = await run_check(ftp(server.port))
    assert (result.ok, result.message) == (False, "connection refused")


async def test_down_when_nothing_listens():
    result = await run_check(ftp(free_port()))
    assert (result.ok, result.message) == (False, "connection refused")


async def test_down_within_the_timeout_when_the_server_never_answers(hung_server: HungServer):
    result = await run_check(ftp(hung_server.port, timeout=0.5))
    assert (result.ok, result.message) == (False, "timeout after 0.5s")
    assert 0.45 < result.latency < 0.9


async def test_config_defaults_reach_the_check(vsftpd):
    """service=ftp in ldirectord.cf fills login/passwd; check_spec_for hands them to the check."""
    config = parse_text(
        "virtual=127.0.0.1:21\n"
        f"\treal=127.0.0.1:{vsftpd.port} masq\n"
        "\tservice=ftp\n\tchecktype=negotiate\n\trequest=\"check.html\"\n\treceive=\"ftp is up\"\n"
    )
    virtual = config.virtuals[0]
    spec = check_spec_for(virtual, virtual.reals[0])
    assert (spec.login, spec.passwd) == ("anonymous", default_passwd())
    result = await run_check(spec)
    assert result.ok, result.message
