"""The last check's class in HAProxy's words: real checks against loopback servers, classified."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from saru.checks.base import run_check
from saru.checks.result_class import RESULT_CLASSES, result_class
from saru.model import CheckResult, CheckSpec
from tests.helpers import HungServer, free_port, start_nginx


def spec(checktype: str, port: int, service: str = "none", **kw: object) -> CheckSpec:
    return CheckSpec(checktype=checktype, service=service, protocol="tcp", address="127.0.0.1", port=port,
                     checktimeout=0.5, negotiatetimeout=0.5, **kw)  # type: ignore[arg-type]


def test_unchecked_results_are_unknown() -> None:
    assert result_class(None) == "UNK"
    assert result_class(CheckResult(ok=False, message="Server in maintenance")) == "UNK"
    assert result_class(CheckResult(ok=True, message="checktype on")) == "UNK"


def test_every_class_is_listed() -> None:
    for layer in ("L4", "L7", "PROC"):
        for failure in ("", "timeout", "connect", "socket", "tls", "status", "response"):
            for ok in (True, False):
                assert result_class(CheckResult(ok=ok, layer=layer, failure=failure)) in RESULT_CLASSES


async def test_connect_check_classes() -> None:
    closed = free_port()
    assert result_class(await run_check(spec("connect", closed))) == "L4CON"
    with socket.create_server(("127.0.0.1", 0)) as server:
        assert result_class(await run_check(spec("connect", server.getsockname()[1]))) == "L4OK"


async def test_http_check_classes(tmp_path: Path) -> None:
    nginx = start_nginx(tmp_path / "rs", files={"/ok.html": "hello"})
    hung = HungServer()
    try:
        ok = await run_check(spec("negotiate", nginx.port, "http", request="/ok.html", receive="hello"))
        assert (ok.ok, result_class(ok)) == (True, "L7OK")
        status = await run_check(spec("negotiate", nginx.port, "http", request="/missing.html"))
        assert (result_class(status), status.message) == ("L7STS", "HTTP 404 Not Found")
        wrong = await run_check(spec("negotiate", nginx.port, "http", request="/ok.html", receive="bye"))
        assert result_class(wrong) == "L7RSP"
        timeout = await run_check(spec("negotiate", hung.port, "http"))
        assert result_class(timeout) == "L7TOUT", timeout
    finally:
        hung.close()
        nginx.stop()
    refused = await run_check(spec("negotiate", nginx.port, "http"))
    assert result_class(refused) == "L4CON", refused


async def test_external_check_classes(tmp_path: Path) -> None:
    assert result_class(await run_check(spec("external", 80, checkcommand="/bin/true"))) == "PROCOK"
    assert result_class(await run_check(spec("external", 80, checkcommand="/bin/false"))) == "PROCERR"
    script = tmp_path / "slow.sh"
    script.write_text("#!/bin/sh\nsleep 5\n")
    script.chmod(0o755)
    assert result_class(await run_check(spec("external", 80, checkcommand=str(script)))) == "PROCTOUT"


@pytest.mark.parametrize("failure,expected", [("tls", "L6RSP"), ("socket", "SOCKERR"), ("response", "L7RSP")])
def test_l7_failures(failure: str, expected: str) -> None:
    assert result_class(CheckResult(ok=False, layer="L7", failure=failure)) == expected
