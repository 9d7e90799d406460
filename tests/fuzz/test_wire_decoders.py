"""The wire decoders fed truncated, mutated and random input: VRRP adverts and the raw IP packets that
carry them, the HA primitives' frames (ARP, neighbour discovery, ICMP echo), netlink attribute chains,
the IPVS dump decoder and the nftables listing reader.

Each has a stated contract for bad input, checked here: VRRP raises only ``VRRPError`` (whose ``kind``
is one of the counters the socket counts); the frame parsers and ``parse_attrs`` return ``None`` / stop,
never raise; the IPVS decoders raise at most ``ValueError`` (the plane turns any exception into a
``DataplaneError``); the nft listing reader ignores rule and element comments that are not Saru's
well-formed records (anyone with ``nft`` can write a comment), never raises on them.
"""

from __future__ import annotations

import socket
import struct

from hypothesis import example, given
from hypothesis import strategies as st

from saru.dataplane.ipvs import codec
from saru.dataplane.nft.names import dest_comment, dest_id, real_comment, service_comment, service_id
from saru.dataplane.nft.parse import parse as parse_nft
from saru.ha import packets
from saru.ha.vrrp import GROUP_V4, IPPROTO_VRRP, Advert, VRRPError, decode_advert, encode_advert
from saru.ha.vrrp_socket import COUNTERS, _parse_ipv4, _parse_ipv6
from saru.model import (
    AddDest,
    AddService,
    DelDest,
    DelService,
    Dest,
    EditDest,
    EditService,
    Service,
    ServiceKey,
    ServiceSettings,
)
from saru.net import nla, parse_attrs, parse_icmpv6_echo, parse_ipv4_icmp_echo
from tests.fuzz.budget import fuzz
from tests.fuzz.mutate import mutated_bytes

SRC4, SRC6, GROUP6 = "10.98.0.2", "fe80::2", "ff02::12"
GOOD4 = encode_advert(Advert(51, 200, 100, ("10.98.0.50", "10.98.0.51")), SRC4, GROUP_V4)
GOOD6 = encode_advert(Advert(51, 200, 100, ("fd00:98::50",)), SRC6, GROUP6)


def decode_or_vrrp_error(payload: bytes, src: str, dst: str) -> Advert | None:
    try:
        return decode_advert(payload, src, dst)
    except VRRPError as exc:
        assert exc.kind in COUNTERS and exc.reason, (exc.kind, exc.reason)
        return None


# -- VRRP ------------------------------------------------------------------------------------------


@fuzz(300)
@given(st.sampled_from([(GOOD4, SRC4, GROUP_V4), (GOOD6, SRC6, GROUP6)]).flatmap(
    lambda g: st.tuples(mutated_bytes(g[0]), st.just(g[1]), st.just(g[2]))))
@example((GOOD4[:7], SRC4, GROUP_V4))
@example((GOOD4[:6] + b"\0\0" + GOOD4[8:], SRC4, GROUP_V4))
@example((bytes([0x21]) + GOOD4[1:], SRC4, GROUP_V4))
@example((GOOD4 + b"\0" * 4, SRC4, GROUP_V4))
def test_mutated_adverts_are_refused_with_a_counted_reason(case: tuple[bytes, str, str]) -> None:
    payload, src, dst = case
    advert = decode_or_vrrp_error(payload, src, dst)
    if advert is not None:  # a mutation that kept the checksum right is a valid advert, as sent
        assert encode_advert(advert, src, dst)[8:] == payload[8:]


@fuzz(200)
@given(st.binary(max_size=200), st.sampled_from([(SRC4, GROUP_V4), (SRC6, GROUP6), ("bogus", "x"),
                                                  (SRC4, GROUP6)]))
def test_random_bytes_as_adverts(payload: bytes, addresses: tuple[str, str]) -> None:
    decode_or_vrrp_error(payload, *addresses)


@fuzz(100)
@given(st.integers(1, 255), st.integers(0, 255), st.integers(1, 4095),
       st.lists(st.integers(1, 2**32 - 1).map(lambda n: socket.inet_ntoa(struct.pack("!I", n))), max_size=20))
def test_adverts_round_trip(vrid: int, priority: int, interval: int, addresses: list[str]) -> None:
    advert = Advert(vrid, priority, interval, tuple(addresses))
    assert decode_advert(encode_advert(advert, SRC4, GROUP_V4), SRC4, GROUP_V4) == advert


def ipv4_packet(payload: bytes, ttl: int = 255) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0xC0, 20 + len(payload), 0, 0, ttl, IPPROTO_VRRP, 0,
                         socket.inet_aton(SRC4), socket.inet_aton(GROUP_V4))
    return header + payload


@fuzz(300)
@given(mutated_bytes(ipv4_packet(GOOD4)))
@example(b"\x4f" + ipv4_packet(GOOD4)[1:])  # IHL 60 on a 44-byte packet
@example(ipv4_packet(GOOD4)[:2] + b"\xff\xff" + ipv4_packet(GOOD4)[4:])  # total length past the end
def test_raw_ipv4_packets(data: bytes) -> None:
    parsed = _parse_ipv4(data)
    if parsed is not None:
        src, dst, ttl, payload = parsed
        assert 0 <= ttl <= 255 and len(payload) <= len(data)
        decode_or_vrrp_error(payload, src, dst)


@fuzz(150)
@given(st.binary(max_size=80),
       st.lists(st.tuples(st.sampled_from([socket.IPPROTO_IPV6, 0]),
                          st.sampled_from([socket.IPV6_HOPLIMIT, socket.IPV6_PKTINFO, 99]),
                          st.binary(max_size=24)), max_size=3),
       st.sampled_from([(), ("fe80::2%eth0", 0, 0, 2), ("::", 0, 0, 0)]))
def test_ipv6_receive_ancillary_data(data: bytes, anc: list[tuple[int, int, bytes]],
                                     addr: tuple[str, int, int, int]) -> None:
    parsed = _parse_ipv6(data, anc, addr)  # type: ignore[arg-type]
    if parsed is not None:
        decode_or_vrrp_error(parsed[3], parsed[0], parsed[1] or GROUP6)


# -- the HA primitives' frames ---------------------------------------------------------------------

MAC = "02:00:00:00:00:01"
FRAMES = [
    packets.gratuitous_arp(MAC, "10.0.0.1"),
    packets.unsolicited_na(MAC, "fd00::1"),
    packets.neighbour_solicitation(MAC, "fd00::1", "fd00::2"),
]


@fuzz(300)
@given(st.sampled_from(FRAMES).flatmap(mutated_bytes) | st.binary(max_size=120))
def test_frames(frame: bytes) -> None:
    for parser in (packets.parse_arp, packets.parse_nd, packets.parse_ipv6_icmp, packets.parse_ipv4_icmp_frame,
                   packets.parse_ipv6_echo_frame):
        parser(frame)  # a record or None: nothing raised
    parse_ipv4_icmp_echo(frame[14:])
    parse_icmpv6_echo(frame, "fe80::1%eth0")


# -- netlink ---------------------------------------------------------------------------------------


@fuzz(200)
@given(st.binary(max_size=300), st.integers(0, 40))
def test_netlink_attribute_chains(data: bytes, offset: int) -> None:
    attrs = parse_attrs(data, offset)
    assert all(isinstance(k, int) and len(v) <= len(data) for k, v in attrs.items())


@fuzz(100)
@given(st.lists(st.tuples(st.integers(0, 0x3FFF), st.binary(max_size=40)), max_size=10, unique_by=lambda t: t[0]))
def test_netlink_attributes_round_trip(items: list[tuple[int, bytes]]) -> None:
    assert parse_attrs(b"".join(nla(k, v) for k, v in items)) == dict(items)


def ipvs_service_dump() -> bytes:
    key = ServiceKey("tcp", "192.0.2.1", 80)
    attrs = codec.service_attrs(key, ServiceSettings("wlc", 300))
    service = codec.pack_attrs([("IPVS_CMD_ATTR_SERVICE", {"attrs": attrs})])
    return b"\0" * codec.uapi.GENL_HEADER + service  # nlmsghdr + genlmsghdr, then the attributes


def ipvs_dest_dump() -> bytes:
    dest = codec.pack_attrs([("IPVS_CMD_ATTR_DEST", {"attrs": codec.dest_attrs(Dest("10.0.0.1", 8080, "masq", 3))})])
    return b"\0" * codec.uapi.GENL_HEADER + dest


def test_the_ipvs_seeds_decode() -> None:
    nla_ = codec.dumped(ipvs_service_dump(), 1)
    assert nla_ is not None and codec.decode_service_key(nla_) == ServiceKey("tcp", "192.0.2.1", 80)
    dest = codec.dumped(ipvs_dest_dump(), 2)
    assert dest is not None and codec.decode_dest(dest) == Dest("10.0.0.1", 8080, "masq", 3)


@fuzz(300)
@given(st.sampled_from([ipvs_service_dump(), ipvs_dest_dump()]).flatmap(mutated_bytes) | st.binary(max_size=120))
def test_ipvs_dumps(raw: bytes) -> None:
    for cmd_attr in (1, 2):
        attrs = codec.dumped(raw, cmd_attr)
        if attrs is None:
            continue
        try:
            key = codec.decode_service_key(attrs)
            codec.decode_settings(attrs, key.family if key else 4)
            codec.decode_dest(attrs, 4)
            codec.decode_dest(attrs, 6)
            codec.dest_connections(attrs)
            codec.stats64(attrs, codec.SVC_STATS64)
        except ValueError:
            pass  # the plane reports it as "reading the IPVS table failed: …"


ADDRESSES = st.sampled_from(["10.0.0.1", "2001:db8::1", "", "1.2.3.4\x00", "999.1.1.1", "::ffff:1.2.3.4",
                             "fe80::1%eth0",
                             "not-an-ip", "1.2.3"])
NUMBERS = st.sampled_from([0, 1, 80, 65535, 65536, -1, 2**31, 2**32, 2**64])


@fuzz(300)
@given(st.sampled_from(["tcp", "udp", "fwm", "sctp"]), ADDRESSES, NUMBERS, st.sampled_from([None, 0, 1, 2**32]),
       st.sampled_from([4, 6]), st.sampled_from(["AddService", "EditService", "DelService", "AddDest", "EditDest",
                                                  "DelDest"]),
       ADDRESSES, NUMBERS, st.sampled_from(["gate", "masq", "ipip", "bogus"]), NUMBERS, NUMBERS,
       st.sampled_from(["wrr", "rr", "", "x y", "mh"]), st.sampled_from([None, 0, 300, -1, 2**33]),
       st.sampled_from([None, "255.255.255.0", "64", "garbage", "129"]))
@example("tcp", "10.0.0.1", 80, None, 4, "AddDest", "fe80::1%eth0", 80, "masq", 1, 0, "wrr", None, None)  # OSError
@example("tcp", "10.0.0.1", 80, None, 4, "AddDest", "1.2.3.4\x00", 80, "masq", 1, 0, "wrr", None, None)  # ValueError
def test_ipvs_ops_that_validate_can_be_packed(protocol: str, address: str, port: int, fwmark: int | None,
                                              family: int, kind: str, daddress: str, dport: int, forward: str,
                                              weight: int, upper: int, scheduler: str, persistent: int | None,
                                              netmask: str | None) -> None:
    """``validate`` refuses with ``InvalidOp`` what ``wire`` could not pack (the plane checks every op of a
    batch before sending the first): an op that passes never makes ``wire`` raise."""
    key = ServiceKey(protocol, address, port, fwmark, family)  # type: ignore[arg-type]
    settings = ServiceSettings(scheduler, persistent, netmask)
    dest = Dest(daddress, dport, forward, weight, upper, 0)  # type: ignore[arg-type]
    op = {"AddService": lambda: AddService(key, settings), "EditService": lambda: EditService(key, settings),
          "DelService": lambda: DelService(key), "AddDest": lambda: AddDest(key, dest),
          "EditDest": lambda: EditDest(key, dest), "DelDest": lambda: DelDest(key, daddress, dport)}[kind]()
    try:
        codec.validate(op)
    except codec.InvalidOp:
        return
    codec.wire(op)


# -- the nftables listing --------------------------------------------------------------------------

KEY = ServiceKey("tcp", "192.0.2.1", 80)
SERVICE = Service(KEY, ServiceSettings("wrr", 300, "255.255.255.0"), {})
DEST = Dest("10.0.0.1", 8080, "masq", 3)
COMMENTS = [service_comment(SERVICE), dest_comment(DEST, "live"), real_comment(DEST)]


def nft_listing(service: str, dest: str, real: str) -> list[dict[str, object]]:
    sid, did = service_id(KEY), dest_id(DEST.key)
    items: list[dict[str, object]] = [
        {"table": {"family": "inet", "name": "saru"}},
        {"rule": {"family": "inet", "chain": f"s_{sid}", "comment": service, "expr": [{"counter": {"packets": 1}}]}},
        {"rule": {"family": "inet", "chain": f"d_{sid}_{did}", "comment": dest, "expr": []}},
        {"map": {"family": "inet", "name": f"m_{sid}",
                 "elem": [[{"elem": {"val": 0, "comment": real}}, "10.0.0.2"]]}},
    ]
    return [{"nftables": items}]


def test_the_nft_seed_reads_back() -> None:
    listing = parse_nft(nft_listing(*COMMENTS))
    assert set(listing.table.services[KEY].dests) == {DEST.key, ("10.0.0.2", 8080)}


TOKENS = st.sampled_from(["saru", "S", "D", "R", "tcp", "4", "6", "-", "x", "", "1e3", "-1", "0x10", "9" * 30,
                          "masq", "gate", "live", "drain", "192.0.2.1", "::1", "wrr"])


@fuzz(300)
@given(st.integers(0, 2), st.one_of(
    st.integers(0, 2).flatmap(lambda i: mutated_bytes(COMMENTS[i].encode()).map(lambda b: b.decode("latin-1"))),
    st.lists(TOKENS, max_size=13).map(" ".join),
))
@example(0, "saru S tcp 4 192.0.2.1 http - wrr - - - 0")
@example(1, "saru D masq 10.0.0.1 eighty 3 0 0 live")
@example(0, "saru S tcp four 192.0.2.1 80 - wrr - - - 0")
def test_nft_comments_anyone_could_write(which: int, comment: str) -> None:
    comments = list(COMMENTS)
    comments[which] = comment
    parse_nft(nft_listing(*comments))  # a listing (without what is not Saru's), never an exception
