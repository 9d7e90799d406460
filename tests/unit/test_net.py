"""saru.net: the Internet checksum (RFC 1071 vectors), the pseudo-header, ICMP/ICMPv6 echo built and
parsed back, MAC conversions and netlink attributes packed and parsed back."""

from __future__ import annotations

import ipaddress
import socket
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from saru import net


def test_checksum_rfc1071_section3_example() -> None:
    # RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to 2ddf0, folded ddf2; the checksum is 220d
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert net.checksum(data) == 0x220D
    assert net.checksum(data + struct.pack("!H", 0x220D)) == 0  # a correct checksum sums to zero


def test_checksum_of_an_ipv4_header() -> None:
    header = bytes.fromhex("450000730000400040110000c0a80001c0a800c7")  # checksum field zero
    assert net.checksum(header) == 0xB861
    assert net.checksum(header[:10] + bytes.fromhex("b861") + header[12:]) == 0


def test_checksum_odd_length_empty_and_long_input() -> None:
    assert net.checksum(b"\x01") == ~0x0100 & 0xFFFF  # padded with a zero byte
    assert net.checksum(b"") == 0xFFFF
    assert net.checksum(b"\xff" * 300_000) == 0  # the sum needs more than two carry folds


@given(st.binary(max_size=200).filter(lambda b: len(b) % 2 == 0))
def test_checksum_is_byte_order_independent(data: bytes) -> None:
    # RFC 1071 §2(B): swapping the bytes of every word swaps the bytes of the sum
    swapped = b"".join(data[i + 1 : i + 2] + data[i : i + 1] for i in range(0, len(data), 2))
    total = net.checksum(data)
    assert net.checksum(swapped) == ((total & 0xFF) << 8) | (total >> 8)


def test_pseudo_headers() -> None:
    v4 = net.pseudo_header("192.0.2.1", ipaddress.IPv4Address("192.0.2.2"), 6, 20)
    assert v4 == bytes([192, 0, 2, 1, 192, 0, 2, 2, 0, 6, 0, 20])
    v6 = net.pseudo_header("fe80::1%eth0", "ff02::12", 112, 0x1234)
    assert v6 == (ipaddress.IPv6Address("fe80::1").packed + ipaddress.IPv6Address("ff02::12").packed
                  + bytes([0, 0, 0x12, 0x34, 0, 0, 0, 112]))
    assert net.pseudo_header(bytes(4), bytes(4), 17, 8)[8:] == bytes([0, 17, 0, 8])
    with pytest.raises(net.PacketError, match="not of one address family"):
        net.pseudo_header("192.0.2.1", "2001:db8::1", 6, 20)
    with pytest.raises(net.PacketError, match="not an IP address"):
        net.pseudo_header("nonsense", "192.0.2.1", 6, 20)


def test_icmp_echo_round_trip() -> None:
    request = net.icmp_echo(0x1_BEEF, 0x1_0007, b"token")  # ident and seq are 16 bits
    assert net.checksum(request) == 0
    assert net.echo_header(request) == (net.ICMP_ECHO_REQUEST, 0xBEEF, 7)
    reply = net.icmp_echo(0xBEEF, 7, b"token", kind=net.ICMP_ECHO_REPLY)
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(reply), 0, 0, 64, 1, 0,
                         ipaddress.IPv4Address("192.0.2.9").packed, ipaddress.IPv4Address("192.0.2.1").packed)
    assert net.parse_ipv4_icmp_echo(header + reply) == net.Echo("192.0.2.9", net.ICMP_ECHO_REPLY, 0xBEEF, 7, b"token")
    corrupt = reply[:-1] + bytes([reply[-1] ^ 1])
    assert net.parse_ipv4_icmp_echo(header + corrupt) is None
    assert net.is_echo_reply(socket.AF_INET, header + reply, True, 0xBEEF, 7, b"token")
    assert not net.is_echo_reply(socket.AF_INET, header + reply, True, 0xBEEF, 8, b"token")
    assert net.is_echo_reply(socket.AF_INET, reply, False, 0x1234, 7, b"token")  # dgram: the kernel's ident
    assert not net.is_echo_reply(socket.AF_INET, request, False, 0xBEEF, 7, b"token")  # a request


def test_icmpv6_echo_round_trip() -> None:
    bare = net.icmpv6_echo(0x0102, 3, b"x")
    assert bare[2:4] == b"\0\0"  # an ICMPv6 socket has the kernel fill in the checksum
    framed = net.icmpv6_echo(0x0102, 3, b"x", "2001:db8::1", "2001:db8::2")
    assert net.checksum(net.pseudo_header("2001:db8::1", "2001:db8::2", 58, len(framed)) + framed) == 0
    assert net.echo_request(socket.AF_INET6, 0x0102, 3, b"x") == bare
    assert net.echo_request(socket.AF_INET, 0x0102, 3, b"x") == net.icmp_echo(0x0102, 3, b"x")
    reply = net.icmpv6_echo(0x0102, 3, b"x", kind=net.ICMP6_ECHO_REPLY)
    assert net.parse_icmpv6_echo(reply, "fe80::1%eth0") == net.Echo("fe80::1", net.ICMP6_ECHO_REPLY, 0x0102, 3, b"x")
    assert net.is_echo_reply(socket.AF_INET6, reply, True, 0x0102, 3, b"x")
    assert net.parse_icmpv6_echo(reply[:7], "::1") is None
    assert net.echo_header(b"\x81\x00") is None


def test_mac_conversions() -> None:
    assert net.mac_bytes("02:00:5E:10:20:30") == net.mac_bytes("2-0-5e-10-20-30") == bytes.fromhex("02005e102030")
    assert net.mac_str(bytes.fromhex("02005E102030")) == "02:00:5e:10:20:30"
    assert net.normal_mac(" 02-00-5E-10-20-30 ") == "02:00:5e:10:20:30"
    for bad in ("02:00:5e:10:20", "zz:00:5e:10:20:30", "", "020:0:5e:10:20:30", b"\x00" * 5):
        with pytest.raises(net.PacketError, match="MAC address"):
            net.mac_bytes(bad)


def test_nla_layout() -> None:
    assert net.nla(2, b"abc") == struct.pack("=HH", 7, 2) + b"abc\0"  # length excludes the padding
    assert net.nla(1, b"") == struct.pack("=HH", 4, 1)


def test_parse_attrs_masks_flags_and_stops_at_bad_attributes() -> None:
    nested = net.nla(1 | 0x8000, net.nla(3, b"\x07\0\0\0"))  # NLA_F_NESTED
    assert net.parse_attrs(nested) == {1: net.nla(3, b"\x07\0\0\0")}
    assert net.parse_attrs(net.parse_attrs(nested)[1]) == {3: b"\x07\0\0\0"}
    chain = net.nla(1, b"ok") + struct.pack("=HH", 40, 2) + b"short"  # runs past the end
    assert net.parse_attrs(chain) == {1: b"ok"}
    assert net.parse_attrs(net.nla(1, b"a") + struct.pack("=HH", 2, 5)) == {1: b"a"}  # length < header
    assert net.parse_attrs(b"\0" * 8 + net.nla(4, b"x"), offset=8) == {4: b"x"}


@given(st.dictionaries(st.integers(0, net.NLA_TYPE_MASK), st.binary(max_size=40), max_size=8))
def test_nla_round_trip(attrs: dict[int, bytes]) -> None:
    packed = b"".join(net.nla(kind, payload) for kind, payload in attrs.items())
    assert len(packed) % 4 == 0
    assert net.parse_attrs(packed) == attrs
