"""smtp/submission, pop/pops and imap/imaps negotiate checks against a real OpenSMTPD and Dovecot.

Several tests assert a latency well under ``lineproto.GOODBYE_GRACE`` (1 s): the check waits that
long at most for the answer to its QUIT/LOGOUT, so a short latency proves that the server received
the command and answered it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from saru.checks.base import run_check
from saru.checks.mail import host_domain
from saru.model import CheckSpec
from tests.helpers import HungServer, free_port
from tests.servers.mail import (
    HOST,
    MAIL_ODD_PASSWORD,
    MAIL_ODD_USER,
    MAIL_PASSWORD,
    MAIL_QUOTED_PASSWORD,
    MAIL_QUOTED_USER,
    MAIL_USER,
    MailServer,
    start_dovecot,
    start_opensmtpd,
)


def negotiate(service: str, port: int, timeout: float = 2.0, **kw: str) -> CheckSpec:
    return CheckSpec("negotiate", service, "tcp", HOST, port, negotiatetimeout=timeout, **kw)


def wait_log(server: MailServer, text: str, count: int = 1, timeout: float = 5.0) -> bool:
    """Whether ``text`` occurs ``count`` times in the server's logs within ``timeout`` (polled)."""
    deadline = time.monotonic() + timeout
    while server.log_text().count(text) < count:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture(scope="module")
def smtpd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailServer]:
    server = start_opensmtpd(tmp_path_factory.mktemp("smtpd"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def dovecot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailServer]:
    server = start_dovecot(tmp_path_factory.mktemp("dovecot"))
    try:
        yield server
    finally:
        server.stop()


#: service → Dovecot listener
DOVECOT_ROLE = {"pop": "pop3", "pops": "pop3s", "imap": "imap", "imaps": "imaps"}


# ---- smtp, submission -----------------------------------------------------------------------------

@pytest.mark.parametrize("service", ["smtp", "submission"])
async def test_smtp_up(smtpd: MailServer, service: str):
    quits = smtpd.log_text().count("reason=quit")
    result = await run_check(negotiate(service, smtpd.ports[service]))
    assert result.ok, result
    assert result.message.startswith("EHLO accepted: 220 ") and "ESMTP OpenSMTPD" in result.message
    assert result.latency < 0.5
    assert wait_log(smtpd, "reason=quit", quits + 1)  # we said QUIT


async def test_smtp_ehlo_names_this_host(smtpd: MailServer):
    """The EHLO argument is this host's dotted name, else our address literal (seen in smtpd's log)."""
    result = await run_check(negotiate("smtp", smtpd.ports["refuse_ehlo"]))
    assert not result.ok
    name = host_domain() or f"[{HOST}]"
    assert wait_log(smtpd, f'command="EHLO {name}" result="550 5.7.1 go away"')


async def test_smtp_falls_back_to_helo_when_ehlo_is_not_implemented(smtpd: MailServer):
    result = await run_check(negotiate("smtp", smtpd.ports["old_ehlo"]))
    assert result.ok, result


async def test_smtp_down_when_the_banner_is_not_2xx(smtpd: MailServer):
    result = await run_check(negotiate("smtp", smtpd.ports["closed"]))
    assert (result.ok, result.message) == (False, "SMTP banner: 554 5.3.2 no service here")


async def test_smtp_down_when_ehlo_is_refused(smtpd: MailServer):
    result = await run_check(negotiate("submission", smtpd.ports["refuse_ehlo"]))
    assert (result.ok, result.message) == (False, "EHLO refused: 550 5.7.1 go away")


async def test_smtp_down_on_a_non_smtp_server(dovecot: MailServer):
    result = await run_check(negotiate("smtp", dovecot.ports["pop3"]))
    assert not result.ok
    assert result.message.startswith("malformed SMTP reply: +OK ")


async def test_smtp_down_when_stopped(tmp_path: Path):
    server = start_opensmtpd(tmp_path / "smtpd")
    try:
        for service in ("smtp", "submission"):
            assert (await run_check(negotiate(service, server.ports[service]))).ok
    finally:
        await asyncio.to_thread(server.stop)
    for service in ("smtp", "submission"):
        result = await run_check(negotiate(service, server.ports[service]))
        assert (result.ok, result.message) == (False, "connection refused")


# ---- pop, pops, imap, imaps: shared behaviour -----------------------------------------------------

@pytest.fixture(params=["pop", "pops", "imap", "imaps"])
def mailbox(request: pytest.FixtureRequest, dovecot: MailServer) -> tuple[str, int]:
    """(service, port) of each Dovecot listener."""
    return request.param, dovecot.ports[DOVECOT_ROLE[request.param]]


async def test_up_without_login(mailbox: tuple[str, int]):
    service, port = mailbox
    result = await run_check(negotiate(service, port))
    assert result.ok, result
    assert result.message == ("+OK greeting" if service.startswith("pop") else "* OK greeting")
    assert result.latency < 0.5


async def test_up_with_login(mailbox: tuple[str, int], dovecot: MailServer):
    service, port = mailbox
    logouts = dovecot.log_text().count("Disconnected: Logged out")
    result = await run_check(negotiate(service, port, login=MAIL_USER, passwd=MAIL_PASSWORD))
    assert (result.ok, result.message) == (True, f"logged in as {MAIL_USER!r}")
    assert result.latency < 0.5
    assert wait_log(dovecot, "Disconnected: Logged out", logouts + 1)  # QUIT / LOGOUT went out


async def test_down_on_a_wrong_password(mailbox: tuple[str, int]):
    service, port = mailbox
    result = await run_check(negotiate(service, port, login=MAIL_USER, passwd="not-the-password"))
    assert not result.ok
    if service.startswith("pop"):
        assert result.message == "PASS refused: -ERR [AUTH] Authentication failed."
    else:
        assert result.message == "LOGIN refused: a1 NO [AUTHENTICATIONFAILED] Authentication failed."
    assert "not-the-password" not in result.message


async def test_down_on_an_unknown_user(mailbox: tuple[str, int]):
    service, port = mailbox
    result = await run_check(negotiate(service, port, login="nobody-here", passwd=MAIL_PASSWORD))
    assert not result.ok
    assert result.message.startswith(("PASS refused: -ERR", "LOGIN refused: a1 NO"))


async def test_down_when_stopped(tmp_path: Path):
    server = start_dovecot(tmp_path / "dovecot")
    try:
        for service, role in DOVECOT_ROLE.items():
            assert (await run_check(negotiate(service, server.ports[role]))).ok
    finally:
        await asyncio.to_thread(server.stop)
    for service, role in DOVECOT_ROLE.items():
        for login in ("", MAIL_USER):
            spec = negotiate(service, server.ports[role], login=login, passwd=MAIL_PASSWORD)
            result = await run_check(spec)
            assert (result.ok, result.message) == (False, "connection refused")


@pytest.mark.parametrize("service", ["pop", "pops"])
async def test_pop_without_login_is_down_when_nothing_listens(service: str):
    """ldirectord's bug W8: without login its POP check was up even with nothing listening."""
    result = await run_check(negotiate(service, free_port()))
    assert (result.ok, result.message) == (False, "connection refused")


@pytest.mark.parametrize("login", ["", MAIL_USER])
@pytest.mark.parametrize("service", ["smtp", "submission", "pop", "pops", "imap", "imaps"])
async def test_hung_server_is_down_after_the_timeout(hung_server: HungServer, service: str, login: str):
    result = await run_check(negotiate(service, hung_server.port, timeout=0.5, login=login, passwd="x"))
    assert (result.ok, result.message) == (False, "timeout after 0.5s")
    assert 0.45 <= result.latency < 0.8


# ---- pop, pops ------------------------------------------------------------------------------------

async def test_pop_down_on_an_imap_server(dovecot: MailServer):
    result = await run_check(negotiate("pop", dovecot.ports["imap"]))
    assert not result.ok
    assert result.message.startswith("unexpected POP3 greeting: * OK [CAPABILITY IMAP4rev1 ")


async def test_pop_refuses_a_login_with_a_line_break(dovecot: MailServer):
    result = await run_check(negotiate("pop", dovecot.ports["pop3"], login="saru\r\nDELE 1", passwd="x"))
    assert (result.ok, result.message) == (False, "login contains a line break or NUL: not sent")


@pytest.mark.parametrize(("service", "role"), [("pops", "pop3"), ("imaps", "imap")])
async def test_tls_against_a_plain_port_is_down(dovecot: MailServer, service: str, role: str):
    result = await run_check(negotiate(service, dovecot.ports[role], timeout=1))
    assert not result.ok
    assert result.message.startswith("TLS handshake failed")
    assert result.latency < 0.5


# ---- imap, imaps ----------------------------------------------------------------------------------

@pytest.mark.parametrize("service", ["imap", "imaps"])
@pytest.mark.parametrize(("login", "passwd"), [(MAIL_ODD_USER, MAIL_ODD_PASSWORD),
                                               (MAIL_QUOTED_USER, MAIL_QUOTED_PASSWORD)],
                         ids=["literal", "quoted"])
async def test_imap_quoted_strings_and_literals(dovecot: MailServer, service: str, login: str, passwd: str):
    """Quotes, backslashes and spaces go in quoted strings, non-ASCII in a literal (``{n}``, ``+``)."""
    port = dovecot.ports[DOVECOT_ROLE[service]]
    result = await run_check(negotiate(service, port, login=login, passwd=passwd))
    assert (result.ok, result.message) == (True, f"logged in as {login!r}")
    result = await run_check(negotiate(service, port, login=login, passwd=passwd[:-1]))
    assert not result.ok
    assert result.message.startswith("LOGIN refused: a1 NO")


async def test_imap_down_on_a_pop_server(dovecot: MailServer):
    result = await run_check(negotiate("imap", dovecot.ports["pop3"]))
    assert not result.ok
    assert result.message.startswith("unexpected IMAP greeting: +OK ")


async def test_request_and_receive_are_ignored(dovecot: MailServer, smtpd: MailServer):
    """Like ldirectord, these services do not use request/receive."""
    for spec in (negotiate("imap", dovecot.ports["imap"], request="/nothing", receive="^never$"),
                 negotiate("pop", dovecot.ports["pop3"], request="/nothing", receive="^never$"),
                 negotiate("smtp", smtpd.ports["smtp"], request="/nothing", receive="^never$")):
        assert (await run_check(spec)).ok
