"""``negotiate`` for service ``radius``: one RADIUS Access-Request (RFC 2865) with a codec of our own.

What goes on the wire (compare ldirectord's Authen::Radius ``check_pwd``, research §2.2)::

    Access-Request  User-Name = <login>, User-Password = <passwd> (hidden with <secret>, RFC 2865
                    §5.2), NAS-Identifier = "saru", Message-Authenticator (RFC 3579 HMAC-MD5)

sent over UDP to the real at the check port (1812 by default).

* **Only Access-Accept is up.** Access-Reject is down with the message "Access-Reject", and so is an
  Access-Challenge (ldirectord counted *any* reply as up, research W8).
* The reply must carry the right Response Authenticator (and Message-Authenticator, when present)
  for our secret; otherwise it is down ("response authenticator mismatch: wrong secret?"). A
  server that does not know our secret drops the request silently: that is down by timeout.
* The request is retransmitted unchanged (same id and authenticator, as RFC 2865 requires) after 1,
  2, 4 … seconds until the check's timeout — the smaller of ``checktimeout`` and ``negotiatetimeout``,
  as in ldirectord; an ICMP port unreachable ends it as "connection refused".

The codec (``access_request``, ``hide_password``, ``parse_reply``) is pure.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import socket
import struct
from dataclasses import dataclass

from saru.checks.base import CheckFailed, format_seconds, register
from saru.checks.tcp import resolve
from saru.model import CheckResult, CheckSpec

ACCESS_REQUEST = 1
ACCESS_ACCEPT = 2
ACCESS_REJECT = 3
ACCESS_CHALLENGE = 11
CODE_NAMES = {
    ACCESS_ACCEPT: "Access-Accept",
    ACCESS_REJECT: "Access-Reject",
    ACCESS_CHALLENGE: "Access-Challenge",
}

USER_NAME = 1
USER_PASSWORD = 2
REPLY_MESSAGE = 18
NAS_IDENTIFIER = 32
MESSAGE_AUTHENTICATOR = 80

NAS_ID = b"saru"
MAX_PASSWORD = 128
FIRST_RETRANSMIT = 1.0


# --------------------------------------------------------------------------------------------------
# Codec (pure)
# --------------------------------------------------------------------------------------------------


def attribute(kind: int, value: bytes) -> bytes:
    """One attribute (type, length, value); values are limited to 253 bytes."""
    if len(value) > 253:
        raise CheckFailed(f"RADIUS attribute {kind} is too long")
    return struct.pack("!BB", kind, len(value) + 2) + value


def hide_password(password: bytes, secret: bytes, authenticator: bytes) -> bytes:
    """RFC 2865 §5.2: pad to 16-byte blocks, XOR each with MD5(secret + previous cipher block)."""
    if len(password) > MAX_PASSWORD:
        raise CheckFailed(f"passwd longer than {MAX_PASSWORD} bytes")
    padded = (password + b"\0" * (-len(password) % 16)) or b"\0" * 16
    out = bytearray()
    previous = authenticator
    for i in range(0, len(padded), 16):
        key = hashlib.md5(secret + previous).digest()
        block = bytes(a ^ b for a, b in zip(padded[i : i + 16], key, strict=True))
        out += block
        previous = block
    return bytes(out)


def unhide_password(hidden: bytes, secret: bytes, authenticator: bytes) -> bytes:
    """The inverse of :func:`hide_password` (padding removed); used by tests."""
    out = bytearray()
    previous = authenticator
    for i in range(0, len(hidden), 16):
        key = hashlib.md5(secret + previous).digest()
        block = hidden[i : i + 16]
        out += bytes(a ^ b for a, b in zip(block, key, strict=True))
        previous = block
    return bytes(out).rstrip(b"\0")


def _header(code: int, ident: int, length: int, authenticator: bytes) -> bytes:
    return struct.pack("!BBH", code, ident, length) + authenticator


def access_request(ident: int, authenticator: bytes, user: str, password: str, secret: bytes) -> bytes:
    """A complete Access-Request packet, Message-Authenticator included."""
    attributes = (
        attribute(USER_NAME, user.encode("utf-8"))
        + attribute(USER_PASSWORD, hide_password(password.encode("utf-8"), secret, authenticator))
        + attribute(NAS_IDENTIFIER, NAS_ID)
    )
    zeroed = attribute(MESSAGE_AUTHENTICATOR, b"\0" * 16)
    length = 20 + len(attributes) + len(zeroed)
    packet = _header(ACCESS_REQUEST, ident, length, authenticator) + attributes + zeroed
    mac = hmac.new(secret, packet, hashlib.md5).digest()
    return packet[:-16] + mac


def parse_attributes(data: bytes) -> list[tuple[int, bytes]]:
    """The (type, value) attributes of a packet body."""
    out: list[tuple[int, bytes]] = []
    offset = 0
    while offset < len(data):
        if len(data) - offset < 2 or data[offset + 1] < 2 or offset + data[offset + 1] > len(data):
            raise ValueError("malformed attribute")
        kind, size = data[offset], data[offset + 1]
        out.append((kind, data[offset + 2 : offset + size]))
        offset += size
    return out


@dataclass(frozen=True)
class Reply:
    """A verified reply to our request."""

    code: int
    reply_message: str = ""

    @property
    def name(self) -> str:
        return CODE_NAMES.get(self.code, f"RADIUS code {self.code}")


def parse_reply(packet: bytes, ident: int, request_authenticator: bytes, secret: bytes) -> Reply | None:
    """The reply if ``packet`` answers our request (None when it is not ours: wrong id or size).

    Raises :class:`CheckFailed` when it is ours but does not authenticate with ``secret``.
    """
    if len(packet) < 20:
        return None
    code, rident, length = struct.unpack("!BBH", packet[:4])
    if rident != ident or length < 20 or length > len(packet):
        return None
    packet = packet[:length]
    expected = hashlib.md5(packet[:4] + request_authenticator + packet[20:] + secret).digest()
    if not hmac.compare_digest(expected, packet[4:20]):
        raise CheckFailed("response authenticator mismatch: wrong secret?")
    try:
        attributes = parse_attributes(packet[20:])
    except ValueError:
        raise CheckFailed("malformed RADIUS reply") from None
    message = b""
    offset = 20
    for kind, value in attributes:
        if kind == MESSAGE_AUTHENTICATOR:
            zeroed = packet[: offset + 2] + b"\0" * 16 + packet[offset + 18 :]
            signed = zeroed[:4] + request_authenticator + zeroed[20:]
            mac = hmac.new(secret, signed, hashlib.md5).digest()
            if len(value) != 16 or not hmac.compare_digest(mac, value):
                raise CheckFailed("Message-Authenticator mismatch: wrong secret?")
        elif kind == REPLY_MESSAGE:
            message += value
        offset += len(value) + 2
    return Reply(code, message.decode("utf-8", "replace"))


# --------------------------------------------------------------------------------------------------
# I/O
# --------------------------------------------------------------------------------------------------


async def radius_exchange(address: str, port: int, packet: bytes, secret: bytes) -> Reply:
    """Send ``packet`` (retransmitting it) and return the first verified reply to it."""
    if port <= 0:
        raise CheckFailed("no port to check")
    loop = asyncio.get_running_loop()
    family, sockaddr = await resolve(address, port, socket.SOCK_DGRAM)
    ident, authenticator = packet[1], packet[4:20]
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.connect(sockaddr)  # only the real's replies reach us; ICMP errors are reported
        wait = FIRST_RETRANSMIT
        while True:
            sock.send(packet)
            try:
                async with asyncio.timeout(wait):
                    while True:
                        reply = parse_reply(await loop.sock_recv(sock, 4096), ident, authenticator, secret)
                        if reply is not None:
                            return reply
            except TimeoutError:
                wait *= 2


@register("negotiate", "radius")
async def check_radius(spec: CheckSpec) -> CheckResult:
    """Access-Request for login/passwd with ``secret``: up on Access-Accept only.

    Bounded by ``checktimeout`` as well as ``negotiatetimeout``, like ldirectord's ``alarm``.
    """
    if not spec.secret:
        raise CheckFailed("no secret configured: the radius check needs secret")
    secret = spec.secret.encode("utf-8")
    ident = os.urandom(1)[0]
    authenticator = os.urandom(16)
    packet = access_request(ident, authenticator, spec.login, spec.passwd, secret)
    alarm = asyncio.timeout(spec.checktimeout if spec.checktimeout < spec.negotiatetimeout else None)
    try:
        async with alarm:
            reply = await radius_exchange(spec.address, spec.port, packet, secret)
    except TimeoutError:
        if alarm.expired():
            raise CheckFailed(f"timeout after {format_seconds(spec.checktimeout)}s", failure="timeout") from None
        raise
    return CheckResult(ok=reply.code == ACCESS_ACCEPT, message=reply.name)
