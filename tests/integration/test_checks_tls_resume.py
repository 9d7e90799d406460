"""TLS session resumption of the HTTPS check against a real nginx (``saru.checks.tlsclient``).

nginx issues session tickets by default (``ssl_session_tickets on``): the second check of a real
resumes the session of the first (``SSLSocket.session_reused``, counted by ``SESSIONS``); with
``[checks] tls_session_resumption = false`` every check is a full handshake; a session the server
refuses (a restarted nginx has new ticket keys) costs one full handshake and the check stays up.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from saru.checks import tlsclient
from saru.checks.base import run_check
from saru.config.native import parse_settings
from saru.model import CheckSpec

pytestmark = pytest.mark.needs_nginx

PAGE = {"/check.html": "status: OK alive\n"}


def https(port: int) -> CheckSpec:
    return CheckSpec("negotiate", "https", "tcp", "127.0.0.1", port, request="/check.html",
                     receive="OK alive", negotiatetimeout=5.0)


@pytest.fixture(autouse=True)
def fresh_sessions() -> Iterator[None]:
    tlsclient.configure(resume=True)
    tlsclient.SESSIONS.clear()
    yield
    tlsclient.configure(resume=True)
    tlsclient.SESSIONS.clear()


def counts() -> tuple[int, int]:
    return tlsclient.SESSIONS.full, tlsclient.SESSIONS.resumed


async def test_the_second_check_resumes_the_first_ones_session(nginx):
    server = nginx(files=PAGE, https=True)
    full, resumed = counts()
    first = await run_check(https(server.port))
    assert first.ok, first.message
    assert counts() == (full + 1, resumed)
    for n in range(1, 4):
        result = await run_check(https(server.port))
        assert result.ok, result.message
        assert counts() == (full + 1, resumed + n)  # the one session of the full handshake, resumed


async def test_resumption_off_forces_full_handshakes(nginx):
    server = nginx(files=PAGE, https=True)
    settings = parse_settings("[checks]\ntls_session_resumption = false\n")
    assert settings.checks.tls_session_resumption is False
    tlsclient.configure(resume=settings.checks.tls_session_resumption)
    full, resumed = counts()
    for _ in range(3):
        result = await run_check(https(server.port))
        assert result.ok, result.message
    assert counts() == (full + 3, resumed)
    assert len(tlsclient.SESSIONS) == 0


async def test_a_refused_session_costs_one_full_handshake(nginx):
    server = nginx(files=PAGE, https=True)
    assert (await run_check(https(server.port))).ok
    server.stop()
    server.start()  # new ticket keys: the session offered next is refused
    full, resumed = counts()
    result = await run_check(https(server.port))
    assert result.ok, result.message
    assert counts() == (full + 1, resumed)
    assert (await run_check(https(server.port))).ok
    assert counts() == (full + 1, resumed + 1)


async def test_a_failed_check_forgets_the_session(nginx):
    server = nginx(files=PAGE, https=True)
    assert (await run_check(https(server.port))).ok
    assert len(tlsclient.SESSIONS) == 1
    server.stop()
    down = await run_check(https(server.port))
    assert not down.ok and down.message == "connection refused"
    assert len(tlsclient.SESSIONS) == 0
