"""Passwords in check lines never leave the configuration file (docs/security.md).

A real ``saru run`` (debug logging, a log file, the HTTP API) checks a MySQL, a PostgreSQL, an LDAP and a
RADIUS real with ``passwd=``/``secret=`` (ports nothing answers: every check fails with a message).
Then every place an operator, a monitoring system or another local user can read is searched for the
secrets: the log file and stderr, ``saru status`` (text and JSON), ``saru plan``, the control socket's
status, the API's status, metrics and dashboard page, ``saru check-config`` (text and ``--json``) — and
once more after a reload of a file whose ``passwd=`` lost its quotes (the refusal's message is logged,
kept in the status, sent to the API and printed by ``saru reload``/``check-config``).
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from saru.control import request_sync
from tests.director import Director
from tests.helpers import free_port

pytestmark = pytest.mark.timeout(90)

SECRETS = ("Pw-mysql-7a1f", "Pw-pgsql-93bd", "Pw-ldap-c41e", "Secret-radius-5e02")

CONFIG = """\
checktimeout=1
negotiatetimeout=1
checkinterval=1
logfile="{log}"
virtual=127.0.0.1:{p1}
\treal=127.0.0.1:{r1} masq
\tservice=mysql
\tchecktype=negotiate
\tlogin="saru"
\tpasswd="{s0}"
\tdatabase="saru"
\trequest="SELECT 1"
virtual=127.0.0.1:{p2}
\treal=127.0.0.1:{r2} masq
\tservice=pgsql
\tchecktype=negotiate
\tlogin="saru"
\tpasswd="{s1}"
\tdatabase="saru"
\trequest="SELECT 1"
virtual=127.0.0.1:{p3}
\treal=127.0.0.1:{r3} masq
\tservice=ldap
\tchecktype=negotiate
\tlogin="cn=saru,dc=example"
\tpasswd="{s2}"
\trequest="dc=example"
virtual=127.0.0.1:{p4}
\treal=127.0.0.1:{r4} masq
\tprotocol=udp
\tservice=radius
\tchecktype=negotiate
\tlogin="saru"
\tpasswd="{s0}"
\tsecret="{s3}"
"""


def saru(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "saru", *args], capture_output=True, text=True, timeout=30)
    return done.stdout + done.stderr


def http(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
        return str(answer.read().decode())


def test_passwords_and_secrets_are_never_shown(tmp_path: Path) -> None:
    log = tmp_path / "saru.log"
    ports = {f"p{i}": free_port() for i in range(1, 5)} | {f"r{i}": free_port() for i in range(1, 5)}
    text = CONFIG.format(log=log, **ports, **{f"s{i}": s for i, s in enumerate(SECRETS)})
    api = free_port()
    settings = tmp_path / "saru.toml"
    settings.write_text(f'[api]\nlisten = "127.0.0.1:{api}"\n')
    d = Director(tmp_path, text, ("--settings", str(settings), "--debug"))
    try:
        d.wait_ready()
        cf = str(d.config)
        d.wait_for(r"Real server down: 127\.0\.0\.1:\d+ \(127\.0\.0\.1:\d+\).*", timeout=10)

        def everything(full: bool = True) -> dict[str, str]:
            seen = {
                "log file": log.read_text(), "stderr": d.log_text(),
                "status --json": saru("status", "-c", cf, "--control", str(d.control), "--json"),
                "control status": str(request_sync(d.control, "status", timeout=5)),
                "API status": http(api, "/api/v1/status"), "check-config": saru("check-config", cf),
            }
            if full:  # the places a reload error does not reach: once
                seen |= {"status": saru("status", "-c", cf, "--control", str(d.control)),
                         "plan": saru("plan", "-c", cf, "--control", str(d.control), "--json"),
                         "metrics": http(api, "/metrics"), "dashboard": http(api, "/"),
                         "check-config --json": saru("check-config", "--json", cf)}
            return seen

        def leaks(seen: dict[str, str]) -> list[tuple[str, str]]:
            return [(where, secret) for where, out in seen.items() for secret in SECRETS if secret in out]

        assert leaks(everything()) == []
        # a reload of a file whose passwd= lost its quotes: refused, and the refusal says where, not what
        d.config.write_text(text.replace(f'passwd="{SECRETS[1]}"', f"passwd={SECRETS[1]}"))
        reload = saru("reload", "-c", cf, "--control", str(d.control))
        assert "passwd must be in double quotes" in reload, reload
        deadline = time.monotonic() + 10
        while "passwd must be in double quotes" not in request_sync(d.control, "status", timeout=5).get(
                "last_reload_error", "") and time.monotonic() < deadline:
            time.sleep(0.1)
        seen = everything(full=False)
        seen["reload"] = reload
        assert "passwd must be in double quotes" in seen["API status"]
        assert leaks(seen) == []
    finally:
        d.stop()
