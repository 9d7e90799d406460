"""``negotiate`` for services ``http`` and ``https``: a small asyncio HTTP/1.1 client of our own.

What goes on the wire (compare ldirectord's LWP check, research §2.2)::

    GET /<request> HTTP/1.1
    Host: <virtualhost, or the real's address with :port when not the default>
    User-Agent: saru/<version>
    Connection: close

* HTTPS sends the ``virtualhost`` as TLS SNI when it is a name (ldirectord sent none); certificates
  are not verified, like ldirectord's ``verify_hostname => 0``.
* Up when the final status is 2xx and, for GET, the body matches ``receive`` (a Perl regular
  expression searched anywhere in the raw body, translated to Python ``re``); HEAD checks status only.
* Redirects are followed like LWP (up to 7, GET/HEAD kept). A redirect to the real's own address
  or to the virtual host name stays on the real, with ``Host: <name>[:port]`` from the new URL.
* Bodies are read by Content-Length, chunked transfer-encoding, or until close, capped at 1 MiB.

The response parser is incremental and pure. Plain HTTP runs on a bare non-blocking socket, HTTPS on
an asyncio TLS transport with a small ``Protocol`` (both cheaper than streams: the benchmark runs
thousands of checks per CPU-second).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from saru import __version__
from saru.checks.base import CheckFailed, register
from saru.checks.receive import compile_receive, receive_found
from saru.checks.receive import perl_to_python as perl_to_python  # this module's name before receive.py
from saru.checks.tcp import open_tcp
from saru.model import CheckResult, CheckSpec

USER_AGENT = f"saru/{__version__}"
MAX_BODY = 1 << 20
MAX_HEAD = 64 << 10
MAX_REDIRECTS = 7  # LWP's default max_redirect
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
DEFAULT_PORTS = {"http": 80, "https": 443}


# --------------------------------------------------------------------------------------------------
# URLs, request
# --------------------------------------------------------------------------------------------------


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def host_port(host: str, port: int, scheme: str) -> str:
    """URL authority / Host header value: brackets for IPv6, ``:port`` unless the scheme's default."""
    host = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return host if port == DEFAULT_PORTS[scheme] else f"{host}:{port}"


def hostname_of(authority: str) -> str:
    """The host part of ``name``, ``name:port``, ``[v6]`` or ``[v6]:port``."""
    if authority.startswith("["):
        return authority[1 : authority.find("]")] if "]" in authority else authority[1:]
    return authority.rsplit(":", 1)[0] if authority.count(":") == 1 else authority


@dataclass(frozen=True)
class Target:
    """One request to send: where to connect, what URL it is, which Host header and SNI to use."""

    scheme: str  # http | https
    connect_host: str  # address (or name) to connect to
    port: int
    path: str  # request-target, e.g. "/status?x=1"
    host_header: str
    sni: str  # "" = no SNI
    authority: str = ""  # host[:port] of the URL (base for relative redirects); default host_header

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.authority or self.host_header}{self.path}"


def _sni_for(host: str) -> str:
    return "" if not host or is_ip(host) else host


def initial_target(spec: CheckSpec) -> Target:
    """The first request of a check: ``http(s)://<rip>:<port>/<request>`` or an absolute ``request``."""
    scheme = "https" if spec.service == "https" else "http"
    uri = spec.request[1:] if spec.request.startswith("/") else spec.request
    if uri.startswith(("http://", "https://")):  # used verbatim: overrides the real's address/port
        url = urlsplit(uri)
        scheme = url.scheme
        host = url.hostname or spec.address
        port = url.port or DEFAULT_PORTS[scheme]
        path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        authority = host_port(host, port, scheme)
        header = spec.virtualhost or authority
        return Target(scheme, host, port, path, header, _sni_for(hostname_of(header)), authority)
    # The URL as a browser would see it (base of relative redirects): the virtual host if any,
    # else the real's address, with the real port. LWP used the real's address and dropped the
    # Host header on redirects; keeping the virtual host keeps a relative redirect on its vhost.
    name = hostname_of(spec.virtualhost) if spec.virtualhost else spec.address
    authority = host_port(name, spec.port, scheme)
    header = spec.virtualhost or authority
    sni = _sni_for(hostname_of(spec.virtualhost)) if spec.virtualhost else ""
    return Target(scheme, spec.address, spec.port, "/" + uri, header, sni, authority)


def redirect_target(current: Target, location: str, same_server: frozenset[str]) -> Target:
    """Where a redirect leads; names in ``same_server`` keep the connection on the current server."""
    url = urlsplit(urljoin(current.url, location.strip()))
    if url.scheme not in DEFAULT_PORTS or not url.hostname:
        raise CheckFailed(f"redirect to unsupported URL {location!r}")
    port = url.port or DEFAULT_PORTS[url.scheme]
    host = url.hostname
    connect = current.connect_host if host.lower() in same_server else host
    path = (url.path or "/") + (f"?{url.query}" if url.query else "")
    authority = host_port(host, port, url.scheme)
    return Target(url.scheme, connect, port, path, authority, _sni_for(host), authority)


def build_request(method: str, target: Target) -> bytes:
    """The request bytes (no body)."""
    return (
        f"{method} {target.path} HTTP/1.1\r\n"
        f"Host: {target.host_header}\r\n"
        f"User-Agent: {USER_AGENT}\r\n"
        "Accept: */*\r\n"
        "Connection: close\r\n\r\n"
    ).encode("latin-1")


# --------------------------------------------------------------------------------------------------
# Response parsing (incremental, pure)
# --------------------------------------------------------------------------------------------------


class ResponseParser:
    """Feed it bytes; it tells when a whole response (head + body, capped) has arrived."""

    def __init__(self, head_only: bool = False, max_body: int = MAX_BODY) -> None:
        self.head_only = head_only
        self.max_body = max_body
        self.status = 0
        self.reason = ""
        self.headers: dict[str, str] = {}
        self.body = bytearray()
        self.truncated = False
        self._buf = bytearray()
        self._state = "head"
        self._remaining = 0

    @property
    def complete(self) -> bool:
        return self._state == "done"

    def feed(self, data: bytes) -> bool:
        """Add received bytes; True once the response is complete."""
        if self._state != "done":
            self._buf += data
            self._advance()
        return self._state == "done"

    def finish(self) -> None:
        """The peer closed the connection: complete a read-until-close body, or raise."""
        if self._state in ("close", "done"):
            self._state = "done"
        elif self._state == "head":
            raise CheckFailed("connection closed without a response" if not self._buf
                              else "incomplete HTTP response header")
        else:
            raise CheckFailed("connection closed before the end of the HTTP body")

    def _advance(self) -> None:
        buf = self._buf
        while True:
            state = self._state
            if state == "head":
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > MAX_HEAD:
                        raise CheckFailed("HTTP response header too large")
                    return
                head = bytes(buf[:end])
                del buf[: end + 4]
                self._parse_head(head)
            elif state in ("length", "chunk_data"):
                take = min(len(buf), self._remaining)
                if take:
                    self._append(buf[:take])
                    del buf[:take]
                    self._remaining -= take
                if self._state == "done":
                    return
                if self._remaining:
                    return
                self._state = "done" if state == "length" else "chunk_crlf"
            elif state == "close":
                if buf:
                    self._append(buf)
                    buf.clear()
                return
            elif state == "chunk_crlf":
                if len(buf) < 2:
                    return
                del buf[:2]
                self._state = "chunk_size"
            elif state in ("chunk_size", "trailer"):
                eol = buf.find(b"\r\n")
                if eol < 0:
                    if len(buf) > 4096:
                        raise CheckFailed("invalid chunked encoding")
                    return
                line = bytes(buf[:eol])
                del buf[: eol + 2]
                if state == "trailer":
                    if not line:
                        self._state = "done"
                    continue
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise CheckFailed("invalid chunked encoding") from None
                self._remaining = size
                self._state = "chunk_data" if size else "trailer"
            else:  # done
                return

    def _parse_head(self, head: bytes) -> None:
        status_line, _, rest = head.decode("latin-1").partition("\r\n")
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise CheckFailed("invalid HTTP response")
        status = int(parts[1])
        if 100 <= status < 200:  # interim response (100 Continue …): the real one follows
            self._state = "head"
            return
        self.status = status
        self.reason = parts[2].strip() if len(parts) > 2 else ""
        headers: dict[str, str] = {}
        for line in rest.split("\r\n") if rest else ():
            name, sep, value = line.partition(":")
            if sep:
                key, text = name.strip().lower(), value.strip()
                headers[key] = f"{headers[key]}, {text}" if key in headers else text
        self.headers = headers
        if self.head_only or status in (204, 304):
            self._state = "done"
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            self._state = "chunk_size"
        elif "content-length" in headers:
            try:
                self._remaining = int(headers["content-length"].split(",")[0])
            except ValueError:
                raise CheckFailed("invalid Content-Length") from None
            self._state = "length" if self._remaining > 0 else "done"
        else:
            self._state = "close"

    def _append(self, data: bytes | bytearray) -> None:
        room = self.max_body - len(self.body)
        self.body += data[:room]
        if len(data) >= room:
            self.truncated = len(data) > room or self._state == "close"
            self._state = "done"


# --------------------------------------------------------------------------------------------------
# Transport
# --------------------------------------------------------------------------------------------------


class _Exchange(asyncio.Protocol):
    """Write one request, feed the response to a parser, resolve ``done`` when it is complete."""

    def __init__(self, request: bytes, parser: ResponseParser, done: asyncio.Future[None]) -> None:
        self.request = request
        self.parser = parser
        self.done = done

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if self.done.done():
            return
        try:
            complete = self.parser.feed(data)
        except CheckFailed as exc:
            self.done.set_exception(exc)
            return
        if complete:
            self.done.set_result(None)

    def eof_received(self) -> bool | None:
        if not self.done.done():
            try:
                self.parser.finish()
            except CheckFailed as exc:
                self.done.set_exception(exc)
            else:
                self.done.set_result(None)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(exc or CheckFailed("connection closed by peer"))


@functools.cache
def tls_context() -> ssl.SSLContext:
    """Client TLS context without certificate verification (ldirectord's behaviour)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def _exchange_plain(target: Target, request: bytes, parser: ResponseParser) -> None:
    """HTTP over a bare non-blocking socket: no transport objects, the cheapest path asyncio has."""
    loop = asyncio.get_running_loop()
    sock = await open_tcp(target.connect_host, target.port)
    try:
        try:
            sent = sock.send(request)
        except BlockingIOError:
            sent = 0
        if sent < len(request):
            await loop.sock_sendall(sock, request[sent:])
        done: asyncio.Future[None] = loop.create_future()

        def readable() -> None:
            try:
                while True:
                    data = sock.recv(65536)
                    if not data:
                        parser.finish()
                        break
                    if parser.feed(data):
                        break
            except BlockingIOError:
                return
            except Exception as exc:
                if not done.done():
                    done.set_exception(exc)
                return
            if not done.done():
                done.set_result(None)

        fd = sock.fileno()
        loop.add_reader(fd, readable)
        try:
            await done
        finally:
            loop.remove_reader(fd)
    finally:
        sock.close()


async def _exchange_tls(target: Target, request: bytes, parser: ResponseParser) -> None:
    """HTTPS through an asyncio TLS transport (SNI = ``target.sni``, no certificate verification)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    transport, _ = await loop.create_connection(
        lambda: _Exchange(request, parser, done),
        target.connect_host.strip("[]"),
        target.port,
        ssl=tls_context(),
        server_hostname=target.sni,
    )
    try:
        await done
    except BaseException:
        transport.abort()
        raise
    transport.close()


async def fetch(target: Target, method: str = "GET", request: bytes | None = None) -> ResponseParser:
    """Send one request to ``target`` (``request``: its bytes, prebuilt) and return the response."""
    parser = ResponseParser(head_only=method == "HEAD")
    request = request or build_request(method, target)
    if target.scheme == "https":
        await _exchange_tls(target, request, parser)
    else:
        await _exchange_plain(target, request, parser)
    return parser


# --------------------------------------------------------------------------------------------------
# The check
# --------------------------------------------------------------------------------------------------


async def body_found(response: ResponseParser, receive: str, method: str) -> bool | None:
    """Whether ``receive`` is in the body, matched under a time limit (``receive_found``); None when
    it is not asked (not 2xx, HEAD, no receive)."""
    if not 200 <= response.status < 300 or method == "HEAD" or not receive:
        return None
    return await receive_found(compile_receive(receive), bytes(response.body))


def evaluate(response: ResponseParser, receive: str, method: str, found: bool | None = None) -> CheckResult:
    """Verdict on the final response: 2xx and (HEAD, or no receive, or receive found in the body;
    ``found``: the answer of ``body_found``, else it is searched here)."""
    status_line = f"HTTP {response.status} {response.reason}".rstrip()
    if not 200 <= response.status < 300:
        return CheckResult(ok=False, message=status_line, failure="status")
    if found is None and method != "HEAD" and receive:
        found = compile_receive(receive).search(response.body) is not None
    if method != "HEAD" and receive and not found:
        return CheckResult(ok=False, message=f"receive pattern '{receive}' not found ({status_line})")
    return CheckResult(ok=True, message=status_line)


@dataclass(frozen=True)
class _Plan:
    """Everything about a check that does not change between runs (computed once per spec)."""

    method: str
    target: Target
    request: bytes
    same_server: frozenset[str]


@functools.lru_cache(maxsize=8192)
def _plan(spec: CheckSpec) -> _Plan:
    method = spec.httpmethod.upper()
    if spec.receive and method != "HEAD":
        compile_receive(spec.receive)  # a bad pattern fails before any I/O (and is not cached)
    target = initial_target(spec)
    same_server = frozenset(
        name.lower()
        for name in (spec.address.strip("[]"), hostname_of(spec.virtualhost or ""),
                     hostname_of(target.host_header))
        if name
    )
    return _Plan(method, target, build_request(method, target), same_server)


async def follow_redirects(response: ResponseParser, target: Target, method: str,
                           next_target: Callable[[Target, str], Target]) -> ResponseParser:
    """Follow up to MAX_REDIRECTS redirects like LWP (``next_target(current, Location)`` says where a
    hop goes: the http check stays on the real, the http_proxy check goes through the proxy again);
    the final response."""
    for hop in range(MAX_REDIRECTS + 1):
        location = response.headers.get("location")
        if response.status not in REDIRECT_STATUSES or not location:
            break
        if hop == MAX_REDIRECTS:
            raise CheckFailed(f"too many redirects (last: HTTP {response.status} to {location})")
        target = next_target(target, location)
        response = await fetch(target, method)
    return response


@register("negotiate", "http", "https")
async def check_http(spec: CheckSpec) -> CheckResult:
    """GET/HEAD the request URL (following redirects) and match the body against ``receive``."""
    plan = _plan(spec)
    method, target = plan.method, plan.target
    response = await fetch(target, method, plan.request)
    response = await follow_redirects(
        response, target, method, lambda current, location: redirect_target(current, location, plan.same_server))
    return evaluate(response, spec.receive, method, await body_found(response, spec.receive, method))
