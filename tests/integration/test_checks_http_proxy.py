"""http_proxy negotiate checks: a real tinyproxy (the real server) in front of a real nginx (the origin)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from saru.checks.base import run_check
from saru.model import CheckSpec
from tests.helpers import HungServer, Nginx, free_port
from tests.servers.misc import Server, start_tinyproxy


@pytest.fixture
def tinyproxy(tmp_path: Path) -> Iterator[Server]:
    server = start_tinyproxy(tmp_path / "tinyproxy")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def origin(nginx) -> Nginx:
    return nginx("origin", files={"/check.html": "proxied and up\n", "/dir/index.html": "directory index\n"})


def proxy_check(port: int, request: str, receive: str = "", timeout: float = 2.0,
                method: str = "GET") -> CheckSpec:
    return CheckSpec("negotiate", "http_proxy", "tcp", "127.0.0.1", port, request=request, receive=receive,
                     httpmethod=method, negotiatetimeout=timeout)


async def test_up_through_the_proxy(tinyproxy, origin):
    result = await run_check(proxy_check(tinyproxy.port, f"/{origin.url}/check.html", "proxied and up"))
    assert (result.ok, result.message) == (True, "HTTP 200 OK")
    assert result.latency < 1


async def test_head_checks_the_status_only(tinyproxy, origin):
    spec = proxy_check(tinyproxy.port, f"/{origin.url}/check.html", "absent", method="HEAD")
    result = await run_check(spec)
    assert (result.ok, result.message) == (True, "HTTP 200 OK")


async def test_redirects_are_followed_through_the_proxy(tinyproxy, origin):
    # nginx answers /dir with a 301 to /dir/
    result = await run_check(proxy_check(tinyproxy.port, f"/{origin.url}/dir", "directory index"))
    assert (result.ok, result.message) == (True, "HTTP 200 OK")


async def test_down_when_the_body_does_not_match(tinyproxy, origin):
    result = await run_check(proxy_check(tinyproxy.port, f"/{origin.url}/check.html", "proxied and down"))
    assert not result.ok
    assert result.message == "receive pattern 'proxied and down' not found (HTTP 200 OK)"


async def test_down_on_an_error_status(tinyproxy, origin):
    result = await run_check(proxy_check(tinyproxy.port, f"/{origin.url}/missing.html"))
    assert (result.ok, result.message) == (False, "HTTP 404 Not Found")


async def test_down_when_the_origin_is_unreachable(tinyproxy):
    result = await run_check(proxy_check(tinyproxy.port, f"/http://127.0.0.1:{free_port()}/check.html"))
    assert not result.ok
    assert result.message.startswith("HTTP 5")


async def test_down_when_the_proxy_is_stopped(tmp_path: Path, origin):
    proxy = start_tinyproxy(tmp_path / "stopped")
    spec = proxy_check(proxy.port, f"/{origin.url}/check.html", "proxied")
    assert (await run_check(spec)).ok
    proxy.stop()
    result = await run_check(spec)
    assert (result.ok, result.message) == (False, "connection refused")


@pytest.mark.parametrize("request_", ["/check.html", "/https://127.0.0.1/check.html", "/ftp://127.0.0.1/x"])
async def test_request_must_be_an_absolute_http_url(tinyproxy, request_):
    result = await run_check(proxy_check(tinyproxy.port, request_))
    assert not result.ok
    assert result.message == f"http_proxy request must be an absolute http:// URL, not '{request_[1:]}'"


async def test_down_within_the_timeout_when_the_proxy_never_answers(hung_server: HungServer):
    result = await run_check(proxy_check(hung_server.port, "/http://127.0.0.1/check.html", timeout=0.5))
    assert (result.ok, result.message) == (False, "timeout after 0.5s")
    assert 0.45 < result.latency < 0.9
