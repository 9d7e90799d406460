"""Pure builders and parsers of the link-layer frames the HA primitives put on the wire.

Gratuitous ARP and ARP probes (RFC 5227), IPv6 neighbour solicitations and advertisements (RFC 4861)
as whole Ethernet frames for an ``AF_PACKET`` socket, and ICMP / ICMPv6 echo inside such frames. No I/O:
every function takes bytes or addresses and returns bytes or a parsed record (``None`` for a frame that
is not what was asked for; malformed input never raises anything but ``PacketError`` from the builders).

The Internet checksum, the pseudo-header, MAC conversions and the echo messages themselves are
``saru.net``'s; the names are kept here too, as this module offered them before.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from saru.net import (
    BROADCAST_MAC,
    ICMP6_ECHO_REPLY,
    ICMP6_ECHO_REQUEST,
    ICMP_ECHO_REPLY,
    ICMP_ECHO_REQUEST,
    IPPROTO_ICMPV6,
    ZERO_MAC,
    Echo,
    PacketError,
    checksum,
    icmp_echo,
    icmpv6_echo,
    mac_bytes,
    mac_str,
    parse_icmpv6_echo,
    parse_ipv4_icmp_echo,
    pseudo_header,
)

__all__ = [
    "ALL_NODES", "ARP_REPLY", "ARP_REQUEST", "BROADCAST_MAC", "ETH_P_ARP", "ETH_P_IP", "ETH_P_IPV6",
    "ICMP6_ECHO_REPLY", "ICMP6_ECHO_REQUEST", "ICMP_ECHO_REPLY", "ICMP_ECHO_REQUEST", "NA_FLAG_OVERRIDE",
    "NA_FLAG_ROUTER", "NA_FLAG_SOLICITED", "ND_NEIGHBOR_ADVERT", "ND_NEIGHBOR_SOLICIT", "ND_OPT_SOURCE_LINKADDR",
    "ND_OPT_TARGET_LINKADDR", "UNSPECIFIED6", "ZERO_MAC", "ARPPacket", "Echo", "NDPacket", "PacketError",
    "arp_frame", "arp_probe", "checksum", "gratuitous_arp", "icmp_echo", "icmp_only_filter", "icmpv6_checksum",
    "icmpv6_echo", "ipv6_frame", "mac_bytes", "mac_str", "multicast_mac", "neighbour_solicitation",
    "parse_arp", "parse_icmpv6_echo", "parse_ipv4_icmp_echo", "parse_ipv4_icmp_frame", "parse_ipv6_echo_frame",
    "parse_ipv6_icmp", "parse_nd", "solicited_node", "unsolicited_na",
]

ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD

ARP_REQUEST = 1
ARP_REPLY = 2

ND_NEIGHBOR_SOLICIT = 135
ND_NEIGHBOR_ADVERT = 136
ND_OPT_SOURCE_LINKADDR = 1
ND_OPT_TARGET_LINKADDR = 2
NA_FLAG_ROUTER = 0x80
NA_FLAG_SOLICITED = 0x40
NA_FLAG_OVERRIDE = 0x20
ALL_NODES = ipaddress.IPv6Address("ff02::1")
UNSPECIFIED6 = ipaddress.IPv6Address("::")

_ETH = struct.Struct("!6s6sH")
_ARP = struct.Struct("!HHBBH6s4s6s4s")
_IPV6 = struct.Struct("!IHBB16s16s")


# --------------------------------------------------------------------------------------------------
# addresses
# --------------------------------------------------------------------------------------------------


def _v4(address: str | ipaddress.IPv4Address) -> bytes:
    try:
        return ipaddress.IPv4Address(address).packed
    except ValueError as exc:
        raise PacketError(f"{address!r} is not an IPv4 address") from exc


def _v6(address: str | ipaddress.IPv6Address) -> ipaddress.IPv6Address:
    try:
        return ipaddress.IPv6Address(str(address).split("%", 1)[0])
    except ValueError as exc:
        raise PacketError(f"{address!r} is not an IPv6 address") from exc


def solicited_node(address: str | ipaddress.IPv6Address) -> ipaddress.IPv6Address:
    """The solicited-node multicast group of ``address`` (ff02::1:ffXX:XXXX, RFC 4291 §2.7.1)."""
    low = _v6(address).packed[13:]
    return ipaddress.IPv6Address(bytes.fromhex("ff02" + "00" * 9 + "01ff") + low)


def multicast_mac(group: str | ipaddress.IPv6Address) -> bytes:
    """The Ethernet address of an IPv6 multicast group (33:33 + its low 32 bits, RFC 2464 §7)."""
    return b"\x33\x33" + _v6(group).packed[12:]


# --------------------------------------------------------------------------------------------------
# checksums
# --------------------------------------------------------------------------------------------------


def icmpv6_checksum(src: ipaddress.IPv6Address, dst: ipaddress.IPv6Address, message: bytes) -> int:
    """ICMPv6 checksum over the IPv6 pseudo-header (RFC 8200 §8.1) and ``message`` (checksum field 0)."""
    return checksum(pseudo_header(src, dst, IPPROTO_ICMPV6, len(message)) + message)


# --------------------------------------------------------------------------------------------------
# ARP
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ARPPacket:
    """An Ethernet/IPv4 ARP message as received (``eth_src`` is the frame's source MAC)."""

    eth_src: str
    eth_dst: str
    op: int
    sha: str
    spa: str
    tha: str
    tpa: str

    @property
    def gratuitous(self) -> bool:
        """An announcement: sender and target protocol address are the same (RFC 5227 §3)."""
        return self.spa == self.tpa and self.spa != "0.0.0.0"

    @property
    def probe(self) -> bool:
        """An ARP probe: a request from the unspecified sender address 0.0.0.0 (RFC 5227 §2.1.1)."""
        return self.op == ARP_REQUEST and self.spa == "0.0.0.0"


def arp_frame(*, op: int, src_mac: str | bytes, sha: str | bytes, spa: str, tha: str | bytes, tpa: str,
              dst_mac: str | bytes = BROADCAST_MAC) -> bytes:
    """An Ethernet frame carrying one ARP message (42 bytes; the NIC pads it to 60)."""
    eth = _ETH.pack(mac_bytes(dst_mac), mac_bytes(src_mac), ETH_P_ARP)
    return eth + _ARP.pack(1, ETH_P_IP, 6, 4, op, mac_bytes(sha), _v4(spa), mac_bytes(tha), _v4(tpa))


def gratuitous_arp(mac: str | bytes, address: str) -> bytes:
    """A gratuitous ARP: a broadcast request with sender = target = ``address`` from ``mac``.

    The request form (not a reply) is what Linux, and switches, reliably accept to update an existing
    cache entry; keepalived and IPaddr2's send_arp send the same.
    """
    return arp_frame(op=ARP_REQUEST, src_mac=mac, sha=mac, spa=address, tha=ZERO_MAC, tpa=address)


def arp_probe(mac: str | bytes, address: str) -> bytes:
    """An RFC 5227 ARP probe for ``address``: sender protocol address 0.0.0.0, so no cache learns us."""
    return arp_frame(op=ARP_REQUEST, src_mac=mac, sha=mac, spa="0.0.0.0", tha=ZERO_MAC, tpa=address)


def parse_arp(frame: bytes) -> ARPPacket | None:
    """An Ethernet/IPv4 ARP frame (as read from an ``AF_PACKET`` ``SOCK_RAW`` socket), else ``None``."""
    if len(frame) < _ETH.size + _ARP.size:
        return None
    dst, src, ethertype = _ETH.unpack_from(frame)
    if ethertype != ETH_P_ARP:
        return None
    htype, ptype, hlen, plen, op, sha, spa, tha, tpa = _ARP.unpack_from(frame, _ETH.size)
    if htype != 1 or ptype != ETH_P_IP or hlen != 6 or plen != 4:
        return None
    return ARPPacket(eth_src=mac_str(src), eth_dst=mac_str(dst), op=op, sha=mac_str(sha),
                     spa=str(ipaddress.IPv4Address(spa)), tha=mac_str(tha), tpa=str(ipaddress.IPv4Address(tpa)))


# --------------------------------------------------------------------------------------------------
# IPv6 neighbour discovery, whole frames
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NDPacket:
    """A neighbour solicitation or advertisement as received, with whatever link-layer option it had."""

    eth_src: str
    src: str
    dst: str
    hop_limit: int
    type: int
    flags: int  # NA: router/solicited/override bits; NS: 0
    target: str
    lladdr: str | None  # the target (NA) or source (NS) link-layer address option

    @property
    def override(self) -> bool:
        return bool(self.flags & NA_FLAG_OVERRIDE)


def ipv6_frame(src_mac: str | bytes, dst_mac: str | bytes, src: str | ipaddress.IPv6Address,
               dst: str | ipaddress.IPv6Address, message: bytes, hop_limit: int = 255) -> bytes:
    """Ethernet + IPv6 header + ``message`` (an ICMPv6 message whose checksum field is 0: filled here)."""
    s, d = _v6(src), _v6(dst)
    csum = icmpv6_checksum(s, d, message)
    message = message[:2] + struct.pack("!H", csum) + message[4:]
    header = _IPV6.pack(6 << 28, len(message), IPPROTO_ICMPV6, hop_limit, s.packed, d.packed)
    return _ETH.pack(mac_bytes(dst_mac), mac_bytes(src_mac), ETH_P_IPV6) + header + message


def unsolicited_na(mac: str | bytes, address: str, *, router: bool = False) -> bytes:
    """An unsolicited neighbour advertisement for ``address`` to ff02::1, override flag set, hop limit 255,
    with the target link-layer address option (RFC 4861 §7.2.6): receivers replace their cached MAC."""
    target = _v6(address)
    flags = NA_FLAG_OVERRIDE | (NA_FLAG_ROUTER if router else 0)
    message = struct.pack("!BBHB3x16sBB6s", ND_NEIGHBOR_ADVERT, 0, 0, flags, target.packed,
                          ND_OPT_TARGET_LINKADDR, 1, mac_bytes(mac))
    return ipv6_frame(mac, multicast_mac(ALL_NODES), target, ALL_NODES, message)


def neighbour_solicitation(mac: str | bytes, address: str, source: str | None = None) -> bytes:
    """A neighbour solicitation for ``address`` to its solicited-node group.

    With ``source=None`` it is a duplicate-address-detection probe (from ::, without a source link-layer
    option, RFC 4862 §5.4.2): the holder answers to ff02::1 and nobody's neighbour cache learns us.
    """
    target = _v6(address)
    group = solicited_node(target)
    message = struct.pack("!BBH4x16s", ND_NEIGHBOR_SOLICIT, 0, 0, target.packed)
    if source is not None:
        message += struct.pack("!BB6s", ND_OPT_SOURCE_LINKADDR, 1, mac_bytes(mac))
    return ipv6_frame(mac, multicast_mac(group), source or UNSPECIFIED6, group, message)


def parse_ipv6_icmp(frame: bytes) -> tuple[str, str, str, int, bytes] | None:
    """Ethernet + IPv6 + ICMPv6 (no extension headers) with a valid checksum:
    ``(eth_src, src, dst, hop_limit, message)``, else ``None``."""
    if len(frame) < _ETH.size + _IPV6.size + 4:
        return None
    _dst_mac, src_mac, ethertype = _ETH.unpack_from(frame)
    if ethertype != ETH_P_IPV6:
        return None
    vtf, length, nexthdr, hop_limit, src, dst = _IPV6.unpack_from(frame, _ETH.size)
    start = _ETH.size + _IPV6.size
    if vtf >> 28 != 6 or nexthdr != IPPROTO_ICMPV6 or len(frame) < start + length or length < 4:
        return None
    message = frame[start:start + length]
    s, d = ipaddress.IPv6Address(src), ipaddress.IPv6Address(dst)
    if icmpv6_checksum(s, d, message[:2] + b"\x00\x00" + message[4:]) != struct.unpack_from("!H", message, 2)[0]:
        return None
    return mac_str(src_mac), str(s), str(d), hop_limit, bytes(message)


def parse_nd(frame: bytes) -> NDPacket | None:
    """A neighbour solicitation/advertisement frame with a valid checksum, else ``None``."""
    parsed = parse_ipv6_icmp(frame)
    if parsed is None:
        return None
    eth_src, src, dst, hop_limit, message = parsed
    if len(message) < 24 or message[0] not in (ND_NEIGHBOR_SOLICIT, ND_NEIGHBOR_ADVERT) or message[1] != 0:
        return None
    kind = message[0]
    flags = message[4] if kind == ND_NEIGHBOR_ADVERT else 0
    target = str(ipaddress.IPv6Address(message[8:24]))
    wanted = ND_OPT_TARGET_LINKADDR if kind == ND_NEIGHBOR_ADVERT else ND_OPT_SOURCE_LINKADDR
    lladdr = None
    offset = 24
    while offset + 2 <= len(message):
        opt, units = message[offset], message[offset + 1]
        if units == 0:  # RFC 4861 §4.6: a zero-length option invalidates the packet
            return None
        if opt == wanted and units == 1 and offset + 8 <= len(message):
            lladdr = mac_str(message[offset + 2:offset + 8])
        offset += units * 8
    return NDPacket(eth_src=eth_src, src=src, dst=dst, hop_limit=hop_limit, type=kind, flags=flags,
                    target=target, lladdr=lladdr)


def parse_ipv4_icmp_frame(frame: bytes) -> tuple[str, Echo] | None:
    """Ethernet + IPv4 + ICMP echo: ``(eth_src, echo)``, else ``None``."""
    if len(frame) < _ETH.size + 28:
        return None
    _dst, src, ethertype = _ETH.unpack_from(frame)
    if ethertype != ETH_P_IP:
        return None
    echo = parse_ipv4_icmp_echo(frame[_ETH.size:])
    return None if echo is None else (mac_str(src), echo)


def parse_ipv6_echo_frame(frame: bytes) -> tuple[str, Echo] | None:
    """Ethernet + IPv6 + ICMPv6 echo with a valid checksum: ``(eth_src, echo)``, else ``None``."""
    parsed = parse_ipv6_icmp(frame)
    if parsed is None:
        return None
    eth_src, src, _dst, _hop, message = parsed
    echo = parse_icmpv6_echo(message, src)
    return None if echo is None else (eth_src, echo)


# --------------------------------------------------------------------------------------------------
# classic BPF programs for AF_PACKET sockets
# --------------------------------------------------------------------------------------------------

_BPF_LD_B_ABS = 0x30
_BPF_JEQ_K = 0x15
_BPF_RET_K = 0x06


def icmp_only_filter(version: int) -> bytes:
    """A classic BPF program (packed ``struct sock_filter[]``) for an ``AF_PACKET`` socket bound to
    ``ETH_P_IP`` (``version`` 4: IP protocol 1) or ``ETH_P_IPV6`` (6: next header 58) that keeps only ICMP,
    so a busy interface does not wake a listener for every frame."""
    offset, proto = (14 + 9, 1) if version == 4 else (14 + 6, IPPROTO_ICMPV6)
    program = ((_BPF_LD_B_ABS, 0, 0, offset), (_BPF_JEQ_K, 0, 1, proto), (_BPF_RET_K, 0, 0, 0xFFFF),
               (_BPF_RET_K, 0, 0, 0))
    return b"".join(struct.pack("HBBI", *insn) for insn in program)
