"""The pure frame builders and parsers of saru.ha.packets (ARP, ICMP echo, neighbour discovery)."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from saru.ha import packets as p

MAC = "02:00:5e:10:20:30"


def test_internet_checksum_rfc1071_example() -> None:
    # RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2; the checksum is its complement
    assert p.checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D
    assert p.checksum(b"\x01") == ~0x0100 & 0xFFFF  # odd length: padded with a zero byte


def test_mac_conversions() -> None:
    assert p.mac_bytes(MAC) == bytes.fromhex("02005e102030")
    assert p.mac_bytes("02-00-5E-10-20-30") == bytes.fromhex("02005e102030")
    assert p.mac_str(bytes.fromhex("02005E102030")) == MAC
    for bad in ("02:00:5e:10:20", "zz:00:5e:10:20:30", "", "020:0:5e:10:20:30", b"\x00" * 5):
        with pytest.raises(p.PacketError):
            p.mac_bytes(bad)


def test_gratuitous_arp_layout() -> None:
    frame = p.gratuitous_arp(MAC, "192.0.2.50")
    assert len(frame) == 42
    assert frame[:6] == b"\xff" * 6 and frame[6:12] == p.mac_bytes(MAC) and frame[12:14] == b"\x08\x06"
    htype, ptype, hlen, plen, op = struct.unpack_from("!HHBBH", frame, 14)
    assert (htype, ptype, hlen, plen, op) == (1, 0x0800, 6, 4, 1)  # a request
    assert frame[22:28] == p.mac_bytes(MAC)  # sha
    assert frame[28:32] == frame[38:42] == ipaddress.IPv4Address("192.0.2.50").packed  # spa == tpa
    parsed = p.parse_arp(frame)
    assert parsed == p.ARPPacket(eth_src=MAC, eth_dst="ff:ff:ff:ff:ff:ff", op=1, sha=MAC, spa="192.0.2.50",
                                 tha="00:00:00:00:00:00", tpa="192.0.2.50")
    assert parsed.gratuitous and not parsed.probe


def test_arp_probe_has_no_sender_address() -> None:
    parsed = p.parse_arp(p.arp_probe(MAC, "192.0.2.50"))
    assert parsed is not None and parsed.spa == "0.0.0.0" and parsed.tpa == "192.0.2.50"
    assert parsed.probe and not parsed.gratuitous


def test_parse_arp_rejects_what_is_not_ethernet_ipv4_arp() -> None:
    frame = p.gratuitous_arp(MAC, "192.0.2.50")
    assert p.parse_arp(frame[:41]) is None
    assert p.parse_arp(frame[:12] + b"\x08\x00" + frame[14:]) is None  # not ARP
    assert p.parse_arp(frame[:16] + b"\x86\xdd" + frame[18:]) is None  # protocol type not IPv4
    assert p.parse_arp(frame + b"\x00" * 18) is not None  # padded to 60 bytes: still fine
    with pytest.raises(p.PacketError):
        p.gratuitous_arp(MAC, "2001:db8::1")


def test_solicited_node_group_and_multicast_mac() -> None:
    assert p.solicited_node("fd00:97::50") == ipaddress.IPv6Address("ff02::1:ff00:50")
    assert p.solicited_node("2001:db8::abcd:1234") == ipaddress.IPv6Address("ff02::1:ffcd:1234")
    assert p.multicast_mac("ff02::1") == bytes.fromhex("333300000001")
    assert p.multicast_mac("ff02::1:ffcd:1234") == bytes.fromhex("3333ffcd1234")


def test_unsolicited_na() -> None:
    frame = p.unsolicited_na(MAC, "2001:db8::50")
    assert frame[:6] == bytes.fromhex("333300000001") and frame[12:14] == b"\x86\xdd"
    assert len(frame) == 14 + 40 + 32
    nd = p.parse_nd(frame)
    assert nd == p.NDPacket(eth_src=MAC, src="2001:db8::50", dst="ff02::1", hop_limit=255,
                            type=p.ND_NEIGHBOR_ADVERT, flags=p.NA_FLAG_OVERRIDE, target="2001:db8::50", lladdr=MAC)
    assert nd.override
    assert not nd.flags & p.NA_FLAG_SOLICITED  # a multicast NA must not claim to be solicited
    corrupted = bytearray(frame)
    corrupted[-1] ^= 0x01
    assert p.parse_nd(bytes(corrupted)) is None  # the checksum covers the option


def test_icmpv6_checksum_known_value() -> None:
    # an echo request from 2001:db8::1 to 2001:db8::2, id 0x1234 seq 1, no payload: the sum is easy
    # to do by hand: pseudo-header words + 0x8000 + 0x1234 + 0x0001, folded and complemented
    src, dst = ipaddress.IPv6Address("2001:db8::1"), ipaddress.IPv6Address("2001:db8::2")
    msg = p.icmpv6_echo(0x1234, 1)
    words = 0x2001 + 0x0DB8 + 0x0001 + 0x2001 + 0x0DB8 + 0x0002 + 8 + 58 + 0x8000 + 0x1234 + 0x0001
    while words >> 16:
        words = (words & 0xFFFF) + (words >> 16)
    assert p.icmpv6_checksum(src, dst, msg) == ~words & 0xFFFF


def test_dad_neighbour_solicitation() -> None:
    frame = p.neighbour_solicitation(MAC, "fd00:97::50")
    assert frame[:6] == bytes.fromhex("3333ff000050")
    nd = p.parse_nd(frame)
    assert nd is not None and nd.type == p.ND_NEIGHBOR_SOLICIT
    assert (nd.src, nd.dst, nd.target, nd.hop_limit) == ("::", "ff02::1:ff00:50", "fd00:97::50", 255)
    assert nd.lladdr is None  # RFC 4861 §7.2.2: no source link-layer option from ::
    with_source = p.parse_nd(p.neighbour_solicitation(MAC, "fd00:97::50", source="fd00:97::1"))
    assert with_source is not None and with_source.src == "fd00:97::1" and with_source.lladdr == MAC


def test_parse_nd_rejects_malformed() -> None:
    frame = bytearray(p.unsolicited_na(MAC, "2001:db8::50"))
    assert p.parse_nd(bytes(frame[:60])) is None  # truncated
    zero_option = bytearray(frame)
    zero_option[14 + 40 + 25] = 0  # option length 0
    # fix the checksum so only the option is wrong
    message = bytes(zero_option[54:56]) + b"\x00\x00" + bytes(zero_option[58:])
    csum = p.icmpv6_checksum(ipaddress.IPv6Address("2001:db8::50"), p.ALL_NODES, message)
    zero_option[56:58] = struct.pack("!H", csum)
    assert p.parse_nd(bytes(zero_option)) is None
    assert p.parse_nd(p.gratuitous_arp(MAC, "192.0.2.1")) is None


def test_icmp_echo_round_trip() -> None:
    msg = p.icmp_echo(0xBEEF, 7, b"token")
    assert p.checksum(msg) == 0  # a valid checksum sums to zero
    reply = bytearray(msg)
    reply[0] = p.ICMP_ECHO_REPLY
    reply[2:4] = b"\x00\x00"
    reply[2:4] = struct.pack("!H", p.checksum(bytes(reply)))
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(reply), 0, 0, 64, 1, 0,
                         ipaddress.IPv4Address("192.0.2.9").packed, ipaddress.IPv4Address("192.0.2.1").packed)
    echo = p.parse_ipv4_icmp_echo(header + bytes(reply))
    assert echo == p.Echo("192.0.2.9", p.ICMP_ECHO_REPLY, 0xBEEF, 7, b"token")
    eth = b"\x00" * 6 + p.mac_bytes(MAC) + b"\x08\x00"
    assert p.parse_ipv4_icmp_frame(eth + header + bytes(reply)) == (MAC, echo)
    bad = bytearray(reply)
    bad[-1] ^= 0xFF
    assert p.parse_ipv4_icmp_echo(header + bytes(bad)) is None  # checksum
    assert p.parse_ipv4_icmp_echo(header[:9] + b"\x06" + header[10:] + bytes(reply)) is None  # TCP, not ICMP


def test_icmpv6_echo_parse_and_frame() -> None:
    msg = bytearray(p.icmpv6_echo(0x0102, 3, b"x"))
    msg[0] = p.ICMP6_ECHO_REPLY
    assert p.parse_icmpv6_echo(bytes(msg), "fe80::1%eth0") == p.Echo("fe80::1", p.ICMP6_ECHO_REPLY, 0x0102, 3, b"x")
    assert p.parse_icmpv6_echo(b"\x81\x00", "::1") is None
    frame = p.ipv6_frame(MAC, "33:33:00:00:00:01", "2001:db8::9", "2001:db8::1", bytes(msg), hop_limit=64)
    got = p.parse_ipv6_echo_frame(frame)
    assert got == (MAC, p.Echo("2001:db8::9", p.ICMP6_ECHO_REPLY, 0x0102, 3, b"x"))


def test_icmp_only_filter_program() -> None:
    v4, v6 = p.icmp_only_filter(4), p.icmp_only_filter(6)
    assert len(v4) == len(v6) == 4 * 8  # four struct sock_filter
    assert struct.unpack_from("HBBI", v4, 0) == (0x30, 0, 0, 23)  # ldb [23]: IPv4 protocol
    assert struct.unpack_from("HBBI", v6, 8) == (0x15, 0, 1, 58)  # jeq #58 (ICMPv6)
