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
* Bodies are read by Content-Length, chunked transfer-encoding, or until close, capped at 1 MiB (and
  4,096 chunks); at most 16 interim (1xx) responses; a socket is read at most 16 times per event-loop turn.

The response parser is incremental and pure. HTTP and HTTPS run on a bare non-blocking socket (TLS
on it with ``ssl.SSLSocket``, resuming the server's session: ``saru.checks.tlsclient``) — no streams
or transports; the benchmark (bench/checks_bench.py) runs thousands of checks per CPU-second.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import re
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from saru import __version__
from saru.checks.base import CheckFailed, register
from saru.checks.receive import compile_receive, found_in_place, receive_found
from saru.checks.receive import perl_to_python as perl_to_python  # this module's name before receive.py
from saru.checks.tcp import open_tcp, wait_fd
from saru.checks.tlsclient import SESSIONS, handshake
from saru.checks.tlsclient import tls_context as tls_context  # this module's name for it before tlsclient.py
from saru.model import CheckResult, CheckSpec
from saru.net import is_number

USER_AGENT = f"saru/{__version__}"
MAX_BODY = 1 << 20
MAX_HEAD = 64 << 10
#: a body in more chunks than this is cut there, like one longer than MAX_BODY (each chunk costs
#: Python work: a server sending one-byte chunks must not cost more than a normal body)
MAX_CHUNKS = 4096
#: interim (1xx) responses accepted before the real one
MAX_INTERIM = 16
#: reads of one readable socket per event-loop turn: a server that always has more to send must not
#: hold the loop (every other check, the VRRP timers and the API share it)
READS_PER_WAKEUP = 16
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


#: the header lines that frame the body, found in the raw head without splitting it into lines
_FRAMING = re.compile(rb"\r\n[ \t]*(content-length|transfer-encoding)[ \t]*:([^\r\n]*)", re.IGNORECASE)


def header_fields(head_lines: str) -> dict[str, str]:
    """The header fields of a response head after its status line (names lower case, repeated
    fields joined with ", ")."""
    headers: dict[str, str] = {}
    for line in head_lines.split("\r\n") if head_lines else ():
        name, sep, value = line.partition(":")
        if sep:
            key, text = name.strip().lower(), value.strip()
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


class ResponseParser:
    """Feed it bytes; it tells when a whole response (head + body, capped) has arrived.

    Only the fields that frame the body are looked for while parsing; ``headers`` (every field) is
    worked out when first asked for — a check that gets its 200 never needs it."""

    def __init__(self, head_only: bool = False, max_body: int = MAX_BODY) -> None:
        self.head_only = head_only
        self.max_body = max_body
        self.status = 0
        self.reason = ""
        self._fields = ""  # the head after the status line (``headers`` parses it when asked)
        self._headers: dict[str, str] | None = None
        self.body = bytearray()
        self.truncated = False
        self._buf = bytearray()
        self._state = "head"
        self._remaining = 0
        self._chunks = 0
        self._interim = 0

    @property
    def complete(self) -> bool:
        return self._state == "done"

    @property
    def headers(self) -> dict[str, str]:
        """The final response's header fields (names lower case, repeated fields joined with ", ")."""
        if self._headers is None:
            self._headers = header_fields(self._fields)
        return self._headers

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
        """Parse what the buffer holds. It is read from an offset and compacted once at the end: deleting
        each small piece from the front of the buffer made a stream of tiny chunks quadratic (a server
        sending ``1\r\na\r\n`` for ever held the event loop for tens of seconds)."""
        buf = self._buf
        pos = 0
        try:
            while True:
                state = self._state
                if state == "head":
                    end = buf.find(b"\r\n\r\n", pos)
                    if end < 0:
                        if len(buf) - pos > MAX_HEAD:
                            raise CheckFailed("HTTP response header too large")
                        return
                    head = bytes(buf[pos:end])
                    pos = end + 4
                    self._parse_head(head)
                elif state in ("length", "chunk_data"):
                    take = min(len(buf) - pos, self._remaining)
                    if take:
                        self._append(buf[pos:pos + take])
                        pos += take
                        self._remaining -= take
                    if self._state == "done":
                        return
                    if self._remaining:
                        return
                    self._state = "done" if state == "length" else "chunk_crlf"
                elif state == "close":
                    if len(buf) > pos:
                        self._append(buf[pos:])
                        pos = len(buf)
                    return
                elif state == "chunk_crlf":
                    if len(buf) - pos < 2:
                        return
                    pos += 2
                    self._state = "chunk_size"
                elif state in ("chunk_size", "trailer"):
                    eol = buf.find(b"\r\n", pos)
                    if eol < 0:
                        if len(buf) - pos > 4096:
                            raise CheckFailed("invalid chunked encoding")
                        return
                    line = bytes(buf[pos:eol])
                    pos = eol + 2
                    if state == "trailer":
                        if not line:
                            self._state = "done"
                        continue
                    size_text = line.split(b";", 1)[0].strip()
                    if not size_text or size_text.strip(b"0123456789abcdefABCDEF"):  # int() takes "-1", "1_0"
                        raise CheckFailed("invalid chunked encoding")
                    size = int(size_text, 16)
                    self._chunks += 1
                    if size and self._chunks > MAX_CHUNKS:  # cut here, like a body over MAX_BODY
                        self.truncated = True
                        self._state = "done"
                        return
                    self._remaining = size
                    self._state = "chunk_data" if size else "trailer"
                else:  # done
                    return
        finally:
            del buf[:pos]

    def _parse_head(self, head: bytes) -> None:
        status_line, _, rest = head.decode("latin-1").partition("\r\n")
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not is_number(parts[1]) \
                or len(parts[1]) != 3:
            raise CheckFailed("invalid HTTP response")
        status = int(parts[1])
        if 100 <= status < 200:  # interim response (100 Continue …): the real one follows
            self._interim += 1
            if self._interim > MAX_INTERIM:
                raise CheckFailed(f"more than {MAX_INTERIM} interim (1xx) HTTP responses")
            self._state = "head"
            return
        self.status = status
        self.reason = parts[2].strip() if len(parts) > 2 else ""
        self._fields, self._headers = rest, None
        if self.head_only or status in (204, 304):
            self._state = "done"
            return
        chunked, length = False, None
        for name, value in _FRAMING.findall(head):
            if len(name) == 17:  # transfer-encoding
                chunked = chunked or b"chunked" in value.lower()
            elif length is None:  # the first Content-Length, and the first value of a list in it
                length = value.split(b",")[0].strip().decode("latin-1")
        if chunked:
            self._state = "chunk_size"
        elif length is not None:
            if not is_number(length) or len(length) > 18:  # int() takes "-5", "+5", "5_0"; 4,300 digits at most
                raise CheckFailed("invalid Content-Length")
            self._remaining = int(length)
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


_WOULD_BLOCK = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


def _drain(sock: socket.socket, parser: ResponseParser) -> bool | None:
    """Feed the parser what has arrived on ``sock`` (plain or TLS), at most READS_PER_WAKEUP reads:
    True once the response is complete, False when the socket has nothing more now, None when the
    bound was reached with more to read (the caller lets every other task have its turn first)."""
    try:
        for _ in range(READS_PER_WAKEUP):
            data = sock.recv(65536)
            if not data:
                parser.finish()
                return True
            if parser.feed(data):
                return True
    except _WOULD_BLOCK:
        return False
    return None


async def _exchange(sock: socket.socket, request: bytes, parser: ResponseParser) -> None:
    """Send ``request`` on the connected non-blocking ``sock`` (plain or TLS) and read the response.

    After sending, the check lets the loop go round once before it reads: the checks due together
    send their requests in one go, and by the time each reads, a nearby server has usually answered
    — no poller registration then. Only a check still without its answer waits for readability.
    """
    loop = asyncio.get_running_loop()
    fd = sock.fileno()
    view = memoryview(request)
    while view:
        try:
            view = view[sock.send(view):]
        except _WOULD_BLOCK:
            await wait_fd(loop, fd, writable=True)
    await asyncio.sleep(0)
    while (state := _drain(sock, parser)) is not True:
        if state is None:  # a fast sender: read on after one turn of the loop (TLS may hold it decrypted)
            await asyncio.sleep(0)
        else:
            await wait_fd(loop, fd, writable=False)


async def _exchange_tls(target: Target, request: bytes, parser: ResponseParser) -> None:
    """HTTPS on the same bare socket with TLS on top (SNI = ``target.sni``, no certificate
    verification), resuming the server's TLS session when it has one (``saru.checks.tlsclient``)."""
    key = (target.connect_host, target.port, target.sni)
    try:
        tls = await handshake(await open_tcp(target.connect_host, target.port), target.sni, SESSIONS.offer(key))
        try:
            await _exchange(tls, request, parser)
            SESSIONS.handshake_done(key, tls)
        finally:
            tls.close()
    except BaseException:
        SESSIONS.forget(key)  # the next check starts afresh
        raise


async def fetch(target: Target, method: str = "GET", request: bytes | None = None) -> ResponseParser:
    """Send one request to ``target`` (``request``: its bytes, prebuilt) and return the response."""
    parser = ResponseParser(head_only=method == "HEAD")
    request = request or build_request(method, target)
    if target.scheme == "https":
        await _exchange_tls(target, request, parser)
    else:  # HTTP over a bare non-blocking socket: no transport objects, the cheapest path asyncio has
        sock = await open_tcp(target.connect_host, target.port)
        try:
            await _exchange(sock, request, parser)
        finally:
            sock.close()
    return parser


# --------------------------------------------------------------------------------------------------
# The check
# --------------------------------------------------------------------------------------------------


async def body_found(response: ResponseParser, receive: str, method: str) -> bool | None:
    """Whether ``receive`` is in the body, matched under a time limit (``receive_found``); None when
    it is not asked (not 2xx, HEAD, no receive)."""
    if not 200 <= response.status < 300 or method == "HEAD" or not receive:
        return None
    pattern = compile_receive(receive)
    found = found_in_place(pattern, response.body)
    return found if found is not None else await receive_found(pattern, bytes(response.body))


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
        if response.status not in REDIRECT_STATUSES:
            break
        location = response.headers.get("location")
        if not location:
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
