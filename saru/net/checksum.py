"""The Internet checksum (RFC 1071) and the pseudo-header that TCP, UDP, ICMPv6 and VRRP checksums cover.

``checksum(data)`` is the ones' complement of the ones' complement sum of ``data``'s 16-bit words (an odd
byte is padded with a zero); a message that carries a correct checksum sums to 0.
``pseudo_header(src, dst, protocol, length)`` is the IPv4 (RFC 793 §3.1 / RFC 768) or IPv6 (RFC 8200
§8.1) pseudo-header that is prepended to a message before its checksum is computed; the addresses may be
text (an IPv6 zone ``%eth0`` is ignored), ``ipaddress`` objects or already packed bytes (4 or 16).
"""

from __future__ import annotations

import ipaddress
import struct

from saru.net.errors import PacketError

Address = str | bytes | ipaddress.IPv4Address | ipaddress.IPv6Address


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def packed_address(address: Address) -> bytes:
    """The 4 or 16 bytes of an IP address; ``PacketError`` if it is not one."""
    if isinstance(address, bytes):
        if len(address) in (4, 16):
            return address
        raise PacketError(f"{len(address)} bytes are not an IPv4 or IPv6 address")
    try:
        return ipaddress.ip_address(address).packed
    except ValueError as exc:
        raise PacketError(f"{address!r} is not an IP address") from exc


def pseudo_header(src: Address, dst: Address, protocol: int, length: int) -> bytes:
    """The pseudo-header of a ``length``-byte ``protocol`` message from ``src`` to ``dst``.

    IPv4: source, destination, zero, protocol, length (16 bits); IPv6: source, destination, length
    (32 bits), three zero bytes, next header. ``PacketError`` when the addresses are not both IPv4 or
    both IPv6.
    """
    s, d = packed_address(src), packed_address(dst)
    if len(s) != len(d):
        raise PacketError(f"source {src!r} and destination {dst!r} are not of one address family")
    if len(s) == 4:
        return s + d + struct.pack("!BBH", 0, protocol, length)
    return s + d + struct.pack("!I3xB", length, protocol)
