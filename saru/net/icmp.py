"""ICMP and ICMPv6 echo messages (RFC 792, RFC 4443 §4): built, parsed and matched, without I/O.

* ``icmp_echo(ident, seq, payload)``: an ICMPv4 echo request with its checksum;
  ``icmpv6_echo(ident, seq, payload, src, dst)``: an ICMPv6 one, its checksum over the IPv6
  pseudo-header when ``src``/``dst`` are given (a raw Ethernet frame), else 0 (an ``IPPROTO_ICMPV6``
  socket has the kernel fill it in); ``echo_request(family, …)`` picks by socket address family.
* ``echo_header(message)``: (type, ident, seq) of any message of at least 8 bytes;
  ``parse_ipv4_icmp_echo(packet)`` (IP header included, checksum verified) and
  ``parse_icmpv6_echo(message, source)`` give an ``Echo`` or ``None``;
  ``is_echo_reply(…)`` tells whether a received packet answers a given request.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from dataclasses import dataclass

from saru.net.checksum import Address, checksum, pseudo_header

ICMP_ECHO_REPLY = 0
ICMP_ECHO_REQUEST = 8
ICMP6_ECHO_REQUEST = 128
ICMP6_ECHO_REPLY = 129
IPPROTO_ICMP = 1
IPPROTO_ICMPV6 = 58

#: echo request / reply type and protocol number by socket address family
ECHO_REQUEST: dict[int, int] = {socket.AF_INET: ICMP_ECHO_REQUEST, socket.AF_INET6: ICMP6_ECHO_REQUEST}
ECHO_REPLY: dict[int, int] = {socket.AF_INET: ICMP_ECHO_REPLY, socket.AF_INET6: ICMP6_ECHO_REPLY}
PROTO: dict[int, int] = {socket.AF_INET: IPPROTO_ICMP, socket.AF_INET6: IPPROTO_ICMPV6}

_ECHO = struct.Struct("!BBHHH")  # type, code, checksum, identifier, sequence number


@dataclass(frozen=True)
class Echo:
    """An ICMP or ICMPv6 echo message: who sent it, and the fields a pinger matches on."""

    source: str
    type: int
    ident: int
    seq: int
    payload: bytes


def _with_checksum(message: bytes, total: int) -> bytes:
    return message[:2] + struct.pack("!H", total) + message[4:]


def icmp_echo(ident: int, seq: int, payload: bytes = b"", kind: int = ICMP_ECHO_REQUEST) -> bytes:
    """An ICMPv4 echo message (a request unless ``kind`` says otherwise) with its checksum."""
    message = _ECHO.pack(kind, 0, 0, ident & 0xFFFF, seq & 0xFFFF) + payload
    return _with_checksum(message, checksum(message))


def icmpv6_echo(ident: int, seq: int, payload: bytes = b"", src: Address | None = None,
                dst: Address | None = None, kind: int = ICMP6_ECHO_REQUEST) -> bytes:
    """An ICMPv6 echo message; checksummed over the pseudo-header of ``src``→``dst`` when both are
    given, else with checksum 0 for an ``IPPROTO_ICMPV6`` socket (the kernel fills it in)."""
    message = _ECHO.pack(kind, 0, 0, ident & 0xFFFF, seq & 0xFFFF) + payload
    if src is None or dst is None:
        return message
    return _with_checksum(message, checksum(pseudo_header(src, dst, IPPROTO_ICMPV6, len(message)) + message))


def echo_request(family: int, ident: int, seq: int, payload: bytes) -> bytes:
    """An echo request for a socket of ``family`` (AF_INET: ICMP with checksum; AF_INET6: ICMPv6, the
    kernel fills the checksum)."""
    if family == socket.AF_INET:
        return icmp_echo(ident, seq, payload)
    return icmpv6_echo(ident, seq, payload)


def echo_header(message: bytes) -> tuple[int, int, int] | None:
    """(type, identifier, sequence number) of an ICMP(v6) message, ``None`` if shorter than 8 bytes."""
    if len(message) < _ECHO.size:
        return None
    kind, _code, _csum, ident, seq = _ECHO.unpack_from(message)
    return kind, ident, seq


def parse_ipv4_icmp_echo(packet: bytes) -> Echo | None:
    """An IPv4 packet (header included, as a raw ICMP socket returns it) holding a valid ICMP echo."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return None
    ihl = (packet[0] & 0x0F) * 4
    if ihl < 20 or packet[9] != IPPROTO_ICMP or len(packet) < ihl + 8:
        return None
    total = struct.unpack_from("!H", packet, 2)[0]
    message = packet[ihl:total] if ihl + 8 <= total <= len(packet) else packet[ihl:]
    if checksum(message) != 0:
        return None
    header = echo_header(message)
    if header is None or header[0] not in (ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST):
        return None
    kind, ident, seq = header
    return Echo(str(ipaddress.IPv4Address(packet[12:16])), kind, ident, seq, bytes(message[8:]))


def parse_icmpv6_echo(message: bytes, source: str) -> Echo | None:
    """An ICMPv6 message (as a raw ``IPPROTO_ICMPV6`` socket returns it, checksum already verified)."""
    header = echo_header(message)
    if header is None or header[0] not in (ICMP6_ECHO_REPLY, ICMP6_ECHO_REQUEST):
        return None
    kind, ident, seq = header
    return Echo(source.split("%", 1)[0], kind, ident, seq, bytes(message[8:]))


def is_echo_reply(family: int, packet: bytes, raw: bool, ident: int, seq: int, payload: bytes) -> bool:
    """Whether a received packet is the reply to our request (raw IPv4 packets carry the IP header).

    An unprivileged (``SOCK_DGRAM``) ICMP socket rewrites the identifier, so it is compared only for a
    raw socket; the checksum is not checked here.
    """
    if raw and family == socket.AF_INET and packet:
        packet = packet[(packet[0] & 0x0F) * 4 :]
    header = echo_header(packet)
    if header is None:
        return False
    kind, rident, rseq = header
    if kind != ECHO_REPLY[family] or rseq != seq or packet[8:] != payload:
        return False
    return not raw or rident == ident
