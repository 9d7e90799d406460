"""TLS session resumption of the HTTPS check against a real nginx (``saru.checks.tlsclient``).

nginx issues session tickets by default (``ssl_session_tickets on``): the second check of a real
resumes the session of the first (``SSLSocket.session_reused``, counted by ``SESSIONS``); with
``[checks] tls_session_resumption = false`` every check is a full handshake; a session the server
refuses (a restarted nginx has new ticket keys) costs one full handshake and the check stays up;
the daemon applies the setting at start and on reload (nginx logs ``$ssl_session_reused``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from saru.checks import tlsclient
from saru.checks.base import run_check
from saru.config.native import parse_settings
from saru.model import CheckSpec
from tests.director import Director
from tests.helpers import Nginx, free_port

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


async def test_checks_resume_unless_turned_off_and_a_failure_forgets_the_session(nginx):
    server = nginx(files=PAGE, https=True)
    full, resumed = counts()
    first = await run_check(https(server.port))
    assert first.ok, first.message
    assert counts() == (full + 1, resumed)
    for n in range(1, 4):
        result = await run_check(https(server.port))
        assert result.ok, result.message
        assert counts() == (full + 1, resumed + n)  # the one session of the full handshake, resumed

    settings = parse_settings("[checks]\ntls_session_resumption = false\n")
    assert settings.checks.tls_session_resumption is False
    tlsclient.configure(resume=settings.checks.tls_session_resumption)
    full, resumed = counts()
    for _ in range(3):
        result = await run_check(https(server.port))
        assert result.ok, result.message
    assert counts() == (full + 3, resumed)
    assert len(tlsclient.SESSIONS) == 0

    tlsclient.configure(resume=True)
    assert (await run_check(https(server.port))).ok
    assert len(tlsclient.SESSIONS) == 1
    server.stop()
    down = await run_check(https(server.port))
    assert not down.ok and down.message == "connection refused"
    assert len(tlsclient.SESSIONS) == 0  # a failed connection forgets the session


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


CONFIG = """\
checktimeout=3
checkinterval=1
logfile="{log}"

virtual=127.0.0.1:{port}
\treal=127.0.0.1:{real} masq
\tservice=https
\tchecktype=negotiate
\trequest="/check.html"
\treceive="OK alive"
"""


def logging_reuse(server: Nginx) -> Path:
    """Restart ``server`` logging each request's ``$ssl_session_reused`` ("r" or ".")."""
    log = server.directory / "access.log"
    conf = server.directory / "nginx.conf"
    conf.write_text(conf.read_text().replace(
        "access_log off;", f'log_format reuse "$ssl_session_reused";\n    access_log {log} reuse;'))
    server.stop()
    server.start()
    return log


def lines(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def wait_lines(log: Path, count: int, timeout: float = 15.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while len(lines(log)) < count:
        assert time.monotonic() < deadline, f"only {lines(log)} in {timeout}s"
        time.sleep(0.05)
    return lines(log)


def test_the_daemon_resumes_and_a_reload_turns_it_off(nginx, tmp_path: Path) -> None:
    """As nginx sees it: the daemon's checks resume; after a reload with resumption off they do not."""
    server = nginx(files=PAGE, https=True)
    log = logging_reuse(server)
    settings = tmp_path / "saru.toml"
    settings.write_text("[checks]\ntls_session_resumption = true\n")
    d = Director(tmp_path, CONFIG.format(log=tmp_path / "saru.log", port=free_port(), real=server.port),
                 ("--settings", str(settings)))
    try:
        d.wait_ready(20)
        seen = wait_lines(log, 3)
        assert seen[0] == "." and "r" in seen[1:], seen  # a full handshake, then resumed ones
        settings.write_text("[checks]\ntls_session_resumption = false\n")
        answer = d.command("reload")
        assert answer["reloaded"] is True, answer
        after = len(lines(log))
        assert wait_lines(log, after + 3)[after:] == [".", ".", "."]
    finally:
        assert d.stop() == 0, d.log_text()
