"""``negotiate`` for service ``simpletcp``: send a line-based request, wait for a matching line.

What goes on the wire (ldirectord's ``check_simpletcp``, research §2.2): the ``request`` without the
leading ``/`` the config added, with each literal ``\\n`` of the config turned into a newline and no
trailing newline added. Over TCP the write side is then shut down (``SHUT_WR``) so that servers that
read to end-of-file answer; over UDP (a udp virtual) the request is one datagram and every datagram
received is split into lines.

Up as soon as one received line (including its newline, as Perl reads it) matches ``receive`` (a Perl
regex, searched); an empty ``receive`` matches the first line. At most 1 MiB is read.
"""

from __future__ import annotations

import asyncio
import socket

from saru.checks.base import CheckFailed, register
from saru.checks.receive import compile_receive, receive_found
from saru.checks.tcp import open_tcp, resolve
from saru.model import CheckResult, CheckSpec

MAX_READ = 1 << 20


def request_bytes(request: str) -> bytes:
    """The bytes to send: ``request`` minus its leading ``/``, literal ``\\n`` → newline."""
    text = request[1:] if request.startswith("/") else request
    return text.replace("\\n", "\n").encode("utf-8")


def shown(line: bytes) -> str:
    """A received line for a message (trimmed, printable)."""
    text = line.decode("utf-8", "replace").strip()
    return text if len(text) <= 80 else text[:77] + "..."


class LineMatcher:
    """Feed received bytes; ``matched`` is the first complete (or final) line that matches."""

    def __init__(self, receive: str) -> None:
        self.pattern = compile_receive(receive)
        self.receive = receive
        self.matched: bytes | None = None
        self.last = b""
        self.total = 0
        self._buf = bytearray()

    async def feed(self, data: bytes) -> bool:
        """Add received bytes; True once a line matched (matched under a time limit, ``receive_found``)."""
        self.total += len(data)
        self._buf += data
        while self.matched is None:
            end = self._buf.find(b"\n")
            if end < 0:
                break
            line = bytes(self._buf[: end + 1])
            del self._buf[: end + 1]
            await self._check(line)
        if self.matched is None and self.total > MAX_READ:
            raise CheckFailed(f"receive pattern '{self.receive}' not found in the first {MAX_READ} bytes")
        return self.matched is not None

    async def finish(self) -> bool:
        """End of input: the unterminated last line counts too."""
        if self.matched is None and self._buf:
            await self._check(bytes(self._buf))
            self._buf.clear()
        return self.matched is not None

    async def _check(self, line: bytes) -> None:
        self.last = line
        if await receive_found(self.pattern, line):
            self.matched = line

    def failure(self) -> CheckFailed:
        if not self.total:
            return CheckFailed("connection closed without an answer")
        return CheckFailed(f"receive pattern '{self.receive}' not found (last line: '{shown(self.last)}')")


async def exchange_tcp(address: str, port: int, request: bytes, matcher: LineMatcher) -> None:
    loop = asyncio.get_running_loop()
    sock = await open_tcp(address, port)
    with sock:
        if request:
            await loop.sock_sendall(sock, request)
        sock.shutdown(socket.SHUT_WR)
        while True:
            data = await loop.sock_recv(sock, 65536)
            if not data:
                if await matcher.finish():
                    return
                raise matcher.failure()
            if await matcher.feed(data):
                return


async def exchange_udp(address: str, port: int, request: bytes, matcher: LineMatcher) -> None:
    """One datagram out; datagrams in until a line matches (ICMP unreachable → connection refused)."""
    loop = asyncio.get_running_loop()
    if port <= 0:
        raise CheckFailed("no port to check")
    family, sockaddr = await resolve(address, port, socket.SOCK_DGRAM)
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.connect(sockaddr)  # connected: only the real's datagrams, and ICMP errors, reach us
        sock.send(request)
        while True:
            data = await loop.sock_recv(sock, 65535)
            if await matcher.feed(data) or await matcher.finish():
                return


@register("negotiate", "simpletcp")
async def check_simpletcp(spec: CheckSpec) -> CheckResult:
    """Send ``request``, then read lines until one matches ``receive``."""
    matcher = LineMatcher(spec.receive)  # a bad pattern fails before any I/O
    request = request_bytes(spec.request)
    if spec.protocol == "udp":
        await exchange_udp(spec.address, spec.port, request, matcher)
    else:
        await exchange_tcp(spec.address, spec.port, request, matcher)
    assert matcher.matched is not None
    return CheckResult(ok=True, message=f"got '{shown(matcher.matched)}'")
