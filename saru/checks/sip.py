"""``negotiate`` for service ``sip``: a SIP ``OPTIONS`` request over the virtual's protocol.

What goes on the wire (compare ldirectord's ``check_sip``, research §2.2)::

    OPTIONS sip:<login> SIP/2.0
    Via: SIP/2.0/<UDP|TCP> <local address>:<local port>;branch=z9hG4bK<random>;rport
    Max-Forwards: 70
    To: <sip:<login>>
    From: <sip:<login>>;tag=<random>
    Call-ID: <random>@saru
    CSeq: 1 OPTIONS
    Contact: <sip:<login>>
    Accept: application/sdp
    User-Agent: saru/<version>
    Content-Length: 0

UDP (the default) uses a connected datagram socket, so an ICMP port unreachable ends the check at
once as "connection refused"; the request is retransmitted after 0.5, 1, 2, 4 s (RFC 3261 timer A).
TCP is used when the virtual is tcp, and then the Via says ``SIP/2.0/TCP`` (ldirectord always said
UDP). Provisional 1xx responses are skipped; up on a final 2xx (ldirectord: exactly ``200 OK``).
"""

from __future__ import annotations

import asyncio
import os
import socket

from saru import __version__
from saru.checks.base import CheckFailed, register
from saru.checks.tcp import open_tcp, resolve
from saru.model import CheckResult, CheckSpec
from saru.net import is_number

MAX_MESSAGE = 64 << 10
FIRST_RETRANSMIT = 0.5  # RFC 3261 T1
MAX_RETRANSMIT = 4.0  # RFC 3261 T2


def sip_host(address: str, port: int) -> str:
    """``host:port`` as a SIP URI authority (IPv6 in brackets)."""
    host = address.strip("[]")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def build_options(login: str, target: str, transport: str, local: str, call_id: str, branch: str,
                  tag: str) -> bytes:
    """The OPTIONS request; ``login`` is the user@host to ask about (``target`` if empty)."""
    uri = f"sip:{login or target}"
    return (
        f"OPTIONS {uri} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} {local};branch={branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"To: <{uri}>\r\n"
        f"From: <{uri}>;tag={tag}\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 1 OPTIONS\r\n"
        f"Contact: <{uri}>\r\n"
        "Accept: application/sdp\r\n"
        f"User-Agent: saru/{__version__}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def _random(n: int) -> str:
    return os.urandom(n).hex()


def parse_response(message: bytes) -> tuple[int, str, dict[str, str]]:
    """(status, status line, headers by lower-case name) of a SIP response; raises on a non-response."""
    head = message.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    lines = head.replace("\r\n", "\n").split("\n")
    status_line = lines[0].strip()
    parts = status_line.split(None, 2)
    if len(parts) < 2 or parts[0] != "SIP/2.0" or not is_number(parts[1]) or len(parts[1]) != 3:
        raise CheckFailed(f"not a SIP response: '{status_line[:80]}'")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers.setdefault(_COMPACT.get(name.strip().lower(), name.strip().lower()), value.strip())
    return int(parts[1]), status_line, headers


#: RFC 3261 compact header names we look at
_COMPACT = {"i": "call-id", "v": "via", "f": "from", "t": "to", "l": "content-length"}


def content_length(headers: dict[str, str]) -> int:
    length = headers.get("content-length", "0").strip() or "0"
    if not is_number(length) or len(length) > 18:
        raise CheckFailed("invalid Content-Length in SIP response")
    return int(length)


def _local(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return sip_host(host, port)


async def _exchange_udp(spec: CheckSpec, ids: tuple[str, str, str]) -> tuple[int, str]:
    loop = asyncio.get_running_loop()
    family, sockaddr = await resolve(spec.address, spec.port, socket.SOCK_DGRAM)
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.connect(sockaddr)  # connected: only the real's datagrams, and ICMP errors, reach us
        request = build_options(spec.login, sip_host(spec.address, spec.port), "UDP", _local(sock), *ids)
        wait = FIRST_RETRANSMIT
        while True:
            sock.send(request)
            try:
                async with asyncio.timeout(wait):
                    while True:
                        try:
                            status, line, headers = parse_response(await loop.sock_recv(sock, 65535))
                        except CheckFailed:
                            continue  # not a SIP response: keep waiting for ours
                        if headers.get("call-id") == ids[0] and status >= 200:
                            return status, line
            except TimeoutError:
                wait = min(wait * 2, MAX_RETRANSMIT)


async def _exchange_tcp(spec: CheckSpec, ids: tuple[str, str, str]) -> tuple[int, str]:
    loop = asyncio.get_running_loop()
    sock = await open_tcp(spec.address, spec.port)
    with sock:
        request = build_options(spec.login, sip_host(spec.address, spec.port), "TCP", _local(sock), *ids)
        await loop.sock_sendall(sock, request)
        buf = bytearray()
        while True:
            data = await loop.sock_recv(sock, 65536)
            if not data:
                raise CheckFailed("connection closed without a SIP response" if not buf
                                  else "connection closed in the middle of a SIP response")
            buf += data
            while (end := buf.find(b"\r\n\r\n")) >= 0:
                message = bytes(buf[: end + 4])
                status, line, headers = parse_response(message)
                length = content_length(headers)
                if len(buf) < end + 4 + length:
                    break
                del buf[: end + 4 + length]
                if status >= 200:
                    return status, line
            if len(buf) > MAX_MESSAGE:
                raise CheckFailed("SIP response too large")


@register("negotiate", "sip")
async def check_sip(spec: CheckSpec) -> CheckResult:
    """Send OPTIONS; up on a final 2xx response."""
    if spec.port <= 0:
        raise CheckFailed("no port to check")
    if any(c in spec.login for c in "\r\n <>"):
        raise CheckFailed("invalid SIP login (it must be a user@host)")
    ids = (f"{_random(12)}@saru", f"z9hG4bK{_random(10)}", _random(6))
    if spec.protocol == "tcp":
        status, line = await _exchange_tcp(spec, ids)
    else:
        status, line = await _exchange_udp(spec, ids)
    ok = 200 <= status < 300
    return CheckResult(ok=ok, message=line[:120], failure="" if ok else "status")
