"""HTTP/HTTPS negotiate checks against real nginx servers (and a few tiny servers of our own)."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from saru.checks.base import run_check
from saru.model import CheckSpec
from tests.helpers import make_self_signed_cert

pytestmark = pytest.mark.needs_nginx

PAGE = {"/check.html": "status: OK alive\n"}
VHOSTS = {"www.example.test": {"/check.html": "vhost www.example.test alive\n"}}


def http(port: int, service: str = "http", timeout: float = 5.0, **kw) -> CheckSpec:
    return CheckSpec("negotiate", service, "tcp", "127.0.0.1", port, negotiatetimeout=timeout,
                     **{"request": "/check.html", **kw})


# ---- up / down on real nginx --------------------------------------------------------------------------

async def test_up_when_the_page_matches_the_receive_regex(nginx):
    server = nginx(files=PAGE)
    result = await run_check(http(server.port, receive=r"OK\s+al(i)ve"))
    assert result.ok, result
    assert result.message == "HTTP 200 OK"
    assert 0 < result.latency < 1


async def test_up_without_receive_on_any_2xx(nginx):
    server = nginx(files=PAGE)
    assert (await run_check(http(server.port))).ok


async def test_down_when_the_page_is_missing(nginx):
    server = nginx(files=PAGE)
    result = await run_check(http(server.port, request="/missing.html"))
    assert not result.ok
    assert result.message.startswith("HTTP 404")


async def test_down_when_the_page_does_not_match(nginx):
    server = nginx(files=PAGE)
    result = await run_check(http(server.port, receive="maintenance"))
    assert not result.ok
    assert result.message.startswith("receive pattern 'maintenance' not found")


async def test_down_when_the_server_is_stopped(nginx):
    server = nginx(files=PAGE)
    assert (await run_check(http(server.port))).ok
    server.stop()
    result = await run_check(http(server.port))
    assert (result.ok, result.message) == (False, "connection refused")


async def test_head_checks_the_status_only(nginx):
    server = nginx(files=PAGE)
    assert (await run_check(http(server.port, httpmethod="HEAD", receive="not in a HEAD reply"))).ok
    missing = await run_check(http(server.port, httpmethod="HEAD", request="/missing.html"))
    assert not missing.ok and missing.message.startswith("HTTP 404")


async def test_virtualhost_selects_the_nginx_server_block(nginx):
    server = nginx(files=PAGE, server_names=VHOSTS)
    assert (await run_check(http(server.port, virtualhost="www.example.test", receive="vhost www"))).ok
    assert not (await run_check(http(server.port, receive="vhost www"))).ok  # default server block


async def test_https_with_virtualhost(nginx):
    server = nginx(files=PAGE, https=True, server_names=VHOSTS)
    assert (await run_check(http(server.port, "https", virtualhost="www.example.test",
                                 receive="vhost www"))).ok
    plain = await run_check(http(server.port, "https", receive="OK alive"))  # IP: no SNI, default block
    assert plain.ok, plain


async def test_redirect_is_followed(nginx):
    server = nginx(files={"/dir/index.html": "redirected OK\n"})
    result = await run_check(http(server.port, request="/dir", receive="redirected OK"))
    assert result.ok, result


async def test_redirect_to_the_virtual_host_stays_on_the_real(nginx):
    server = nginx(files=PAGE, server_names={"www.example.test": {"/dir/index.html": "vhost dir\n"}})
    # nginx answers 301 Location: http://www.example.test:<port>/dir/ — a name that resolves nowhere
    result = await run_check(http(server.port, request="/dir", virtualhost="www.example.test",
                                  receive="vhost dir"))
    assert result.ok, result


async def test_hung_server_is_down_after_the_timeout(hung_server):
    result = await run_check(http(hung_server.port, timeout=0.5))
    assert not result.ok
    assert result.message == "timeout after 0.5s"
    assert 0.45 <= result.latency < 0.8


# ---- tiny servers of our own: SNI, chunked, redirect loops ---------------------------------------------

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[int]]]:
    servers: list[asyncio.Server] = []

    async def start(handler: Handler, ssl_context: ssl.SSLContext | None = None) -> int:
        server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=ssl_context)
        servers.append(server)
        return server.sockets[0].getsockname()[1]

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


async def test_https_sends_the_virtualhost_as_sni(serve, tmp_path: Path):
    cert, key = make_self_signed_cert(tmp_path, ("www.example.test",))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    seen: list[str | None] = []

    def record_sni(sock: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
        seen.append(name)

    context.sni_callback = record_sni
    requests: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(await read_request(reader))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()

    port = await serve(handler, context)
    assert (await run_check(http(port, "https", virtualhost="www.example.test", receive="ok"))).ok
    assert (await run_check(http(port, "https", receive="ok"))).ok
    assert seen == ["www.example.test", None]
    assert b"Host: www.example.test\r\n" in requests[0]
    assert f"Host: 127.0.0.1:{port}\r\n".encode() in requests[1]


async def test_https_to_a_plain_http_server_is_the_reals_tls_failure_not_a_local_fault(serve):
    """The TLS error's errno is OpenSSL's code (SSL_ERROR_SSL = 1), once read as EPERM: the real stayed
    up with a "local fault" alarm instead of going down."""
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(4096)
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    port = await serve(handler)
    result = await run_check(http(port, "https", receive="ok"))
    assert (result.ok, result.failure, result.local_fault) == (False, "tls", "")
    assert result.message == "TLS error: WRONG_VERSION_NUMBER", result.message


async def test_chunked_response(serve):
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for piece in (b"all ", b"systems ", b"go"):
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(5)  # keeps the connection open: the parser must stop at the last chunk
        writer.close()

    port = await serve(handler)
    result = await run_check(http(port, timeout=2, receive="systems go"))
    assert result.ok and result.latency < 1


async def test_redirect_loop_gives_up_after_seven(serve):
    hits = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal hits
        hits += 1
        await read_request(reader)
        writer.write(b"HTTP/1.1 302 Found\r\nLocation: /again\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    port = await serve(handler)
    result = await run_check(http(port))
    assert not result.ok and result.message.startswith("too many redirects")
    assert hits == 8  # the request and 7 redirects, like LWP


async def test_server_closing_without_answer(serve):
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.close()

    port = await serve(handler)
    result = await run_check(http(port))
    assert (result.ok, result.message) == (False, "connection closed without a response")


async def test_relative_redirect_keeps_the_virtual_host(serve):
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await read_request(reader)).decode()
        if head.startswith("GET /check.html "):
            writer.write(b"HTTP/1.1 302 Found\r\nLocation: /next\r\nContent-Length: 0\r\n\r\n")
        else:
            host = next(line for line in head.split("\r\n") if line.startswith("Host:"))
            body = f"{head.split()[1]} {host}".encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()

    port = await serve(handler)
    result = await run_check(http(port, virtualhost="www.example.test",
                                  receive=rf"^/next Host: www\.example\.test:{port}$"))
    assert result.ok, result


async def test_ipv6_real(nginx):
    try:
        socket.socket(socket.AF_INET6).bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    server = nginx(host="::1", files=PAGE)
    spec = CheckSpec("negotiate", "http", "tcp", "::1", server.port, request="/check.html", receive="alive")
    result = await run_check(spec)
    assert result.ok, result
