"""Ethernet frames of ``saru doctor``'s active probes, built and parsed byte by byte (pure, no I/O).

* IPv4 and IPv6 packets carrying a TCP SYN/RST or an ICMP(v6) echo request, and the replies (SYN-ACK,
  RST, echo reply) parsed back with the Ethernet source address — which is how the probe tells *which host*
  sent the reply (the real itself, or some router on another path).

The checksum, pseudo-header, MAC conversions and echo messages are ``saru.net``'s.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from saru.net import (
    ICMP6_ECHO_REPLY,
    ICMP_ECHO_REPLY,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    checksum,
    echo_header,
    icmp_echo,
    icmpv6_echo,
    mac_bytes,
    pseudo_header,
)
from saru.net import mac_str as mac_text

ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK = 0x01, 0x02, 0x04, 0x08, 0x10
#: the payload of the doctor's echo requests
ECHO_PAYLOAD = b"saru doctor"


def ethernet(dst: str, src: str, ethertype: int, payload: bytes) -> bytes:
    return mac_bytes(dst) + mac_bytes(src) + struct.pack("!H", ethertype) + payload


# -- IPv4, TCP, ICMP --------------------------------------------------------------------------------


def _addr(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


def ipv4(src: str, dst: str, protocol: int, payload: bytes, ident: int = 0, ttl: int = 64) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident & 0xFFFF, 0x4000, ttl, protocol, 0,
                         ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed)
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return header + payload


def ipv6(src: str, dst: str, next_header: int, payload: bytes, hop_limit: int = 64) -> bytes:
    return struct.pack("!IHBB", 6 << 28, len(payload), next_header, hop_limit) + \
        ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed + payload


def ip_packet(src: str, dst: str, protocol: int, payload: bytes, ident: int = 0) -> bytes:
    """An IPv4 or IPv6 packet, by the family of the addresses."""
    if _addr(src).version == 4:
        return ipv4(src, dst, protocol, payload, ident)
    return ipv6(src, dst, protocol, payload)


def tcp(src: str, dst: str, sport: int, dport: int, seq: int, ack: int, flags: int, window: int = 64240) -> bytes:
    """A TCP segment without options, checksummed over the IPv4 or IPv6 pseudo-header."""
    segment = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags,
                          window, 0, 0)
    total = checksum(pseudo_header(src, dst, 6, len(segment)) + segment)
    return segment[:16] + struct.pack("!H", total) + segment[18:]


def echo_request(src: str, dst: str, ident: int, seq: int = 1) -> tuple[int, bytes]:
    """(protocol number, ICMP or ICMPv6 echo request) for the family of the addresses; the ICMPv6 one
    is checksummed here (the frame bypasses the kernel's ICMPv6 socket)."""
    if _addr(src).version == 4:
        return IPPROTO_ICMP, icmp_echo(ident, seq, ECHO_PAYLOAD)
    return IPPROTO_ICMPV6, icmpv6_echo(ident, seq, ECHO_PAYLOAD, src, dst)


@dataclass(frozen=True)
class Reply:
    """An IPv4 packet received: who sent the frame, addresses, and what it says."""

    src_mac: str
    dst_mac: str
    src: str
    dst: str
    kind: str  # "syn-ack", "rst", "tcp", "echo-reply", "icmp", "other"
    sport: int = 0
    dport: int = 0
    seq: int = 0
    ack: int = 0
    ident: int = 0


def parse_ip(frame: bytes) -> Reply | None:
    """The IPv4 or IPv6 packet in an Ethernet frame, classified (None if neither, or truncated).
    IPv6 extension headers are not followed (replies to our probes carry none)."""
    if len(frame) < 34:
        return None
    ethertype = struct.unpack("!H", frame[12:14])[0]
    packet = frame[14:]
    macs = (mac_text(frame[6:12]), mac_text(frame[0:6]))
    if ethertype == ETH_P_IP:
        ihl = (packet[0] & 0x0F) * 4
        if packet[0] >> 4 != 4 or ihl < 20 or len(packet) < ihl:
            return None
        protocol, body = packet[9], packet[ihl:]
        src, dst = str(ipaddress.IPv4Address(packet[12:16])), str(ipaddress.IPv4Address(packet[16:20]))
        echo_reply, icmp = ICMP_ECHO_REPLY, IPPROTO_ICMP
    elif ethertype == ETH_P_IPV6 and len(packet) >= 40 and packet[0] >> 4 == 6:
        protocol, body = packet[6], packet[40:]
        src, dst = str(ipaddress.IPv6Address(packet[8:24])), str(ipaddress.IPv6Address(packet[24:40]))
        echo_reply, icmp = ICMP6_ECHO_REPLY, IPPROTO_ICMPV6
    else:
        return None
    if protocol == 6 and len(body) >= 20:
        sport, dport, seq, ack, _, flags = struct.unpack("!HHIIBB", body[:14])
        kind = ("rst" if flags & TCP_RST else
                "syn-ack" if flags & TCP_SYN and flags & TCP_ACK else "tcp")
        return Reply(macs[0], macs[1], src, dst, kind, sport, dport, seq, ack)
    header = echo_header(body) if protocol == icmp else None
    if header is not None:
        kind = "echo-reply" if header[0] == echo_reply else "icmp"
        return Reply(macs[0], macs[1], src, dst, kind, ident=header[1])
    return Reply(macs[0], macs[1], src, dst, "other")
