"""The IPVS netlink codec on the host: attributes round-trip through pyroute2's real encoder and
decoder, validation refuses what the kernel would, and the rollback plan undoes a batch.

The kernel side is tested in the QEMU guest (tests/vm/guest)."""

from __future__ import annotations

import socket
import struct

import pytest
from pyroute2.netlink.generic import ipvs as pyroute2_ipvs

from saru.dataplane.ipvs import codec
from saru.diff import apply_ops
from saru.model import (
    AddDest,
    AddService,
    DelDest,
    DelService,
    Dest,
    EditDest,
    EditService,
    Op,
    Service,
    ServiceKey,
    ServiceSettings,
    Table,
)
from saru.model.schedflags import F_SCHED1, F_SCHED2, F_SCHED3, format_schedflags
from saru.net import parse_attrs

TCP = ServiceKey("tcp", "10.0.0.1", 80)
UDP6 = ServiceKey("udp", "2001:db8::1", 53, None, 6)
FWM6 = ServiceKey("fwm", "", 0, 9, 6)


def ours(req: codec.Request) -> bytes:
    """The bytes the data plane sends for a request (header as GenlSocket builds it)."""
    cmd, payload, _create = req.wire
    body = struct.pack("=BBH", cmd, 1, 0) + payload
    return struct.pack("=IHHII", 16 + len(body), 0x20, 5, 77, 4242) + body


def theirs(req: codec.Request) -> bytes:
    """The bytes pyroute2's own generic encoder makes of the same attributes."""
    msg = pyroute2_ipvs.ipvsmsg()
    msg["cmd"] = req.cmd
    msg["version"] = 1
    msg["attrs"] = req.attrs
    msg["header"]["type"] = 0x20
    msg.encode()
    return bytes(msg.data)


def pyroute2_view(raw: bytes, name: str) -> object:
    """pyroute2's decoding of one nested attribute group of a message."""
    back = pyroute2_ipvs.ipvsmsg(raw)
    back.decode()
    return back.get(name)


def same_as_pyroute2(req: codec.Request) -> None:
    """pyroute2 decodes our bytes to exactly the attribute values we meant."""
    raw = ours(req)
    header = pyroute2_ipvs.ipvsmsg(raw)
    header.decode()
    assert header["cmd"] == req.cmd and header["header"]["length"] == len(raw)
    assert (header["header"]["sequence_number"], header["header"]["pid"]) == (77, 4242)
    for group, value in req.attrs:
        nested = pyroute2_view(raw, group)
        for name, expected in value["attrs"]:
            got = nested.get(name)  # type: ignore[attr-defined]
            if name.endswith("_FLAGS"):
                got = {"flags": got["flags"], "mask": got["mask"]}
            assert got == expected, name


@pytest.mark.parametrize("key, settings", [
    (TCP, ServiceSettings("wrr")),
    (TCP, ServiceSettings("sh", 300, "255.255.255.0", "sh-fallback,sh-port")),
    (TCP, ServiceSettings("mh", 10, None, "mh-port")),
    (UDP6, ServiceSettings("rr", 60, "64", None, True)),
    (UDP6, ServiceSettings("lc", 60)),
    (FWM6, ServiceSettings("wlc", None, None, "flag-3")),
])
def test_service_round_trip(key: ServiceKey, settings: ServiceSettings) -> None:
    req = codec.request(AddService(key, settings))
    same_as_pyroute2(req)
    for raw in (ours(req), theirs(req)):  # our decoder reads our bytes and pyroute2's alike
        nla = codec.dumped(raw, 1)
        assert nla is not None
        assert codec.decode_service_key(nla) == key
        assert codec.decode_settings(nla, key.family) == settings


def test_service_attributes_the_kernel_needs() -> None:
    attrs = dict(codec.service_attrs(TCP, ServiceSettings("wrr", 300, None, None, True)))
    flags = codec.F_PERSISTENT | codec.F_ONEPACKET
    assert attrs["IPVS_SVC_ATTR_FLAGS"] == {"flags": flags, "mask": 0xFFFFFFFF}
    assert attrs["IPVS_SVC_ATTR_TIMEOUT"] == 300
    assert attrs["IPVS_SVC_ATTR_NETMASK"] == "255.255.255.255"
    assert attrs["IPVS_SVC_ATTR_PROTOCOL"] == socket.IPPROTO_TCP
    plain = dict(codec.service_attrs(UDP6, ServiceSettings("rr")))
    assert plain["IPVS_SVC_ATTR_TIMEOUT"] == 0
    assert codec.netmask_text(plain["IPVS_SVC_ATTR_NETMASK"], 6) is None  # /128, the kernel's minimum
    assert codec.netmask_value(None, 6) == 128
    fwm = dict(codec.service_key_attrs(FWM6))
    assert fwm == {"IPVS_SVC_ATTR_AF": socket.AF_INET6, "IPVS_SVC_ATTR_FWMARK": 9}


def test_netmask_forms() -> None:
    assert codec.netmask_value("255.255.0.0", 4) == 0xFFFF0000
    assert codec.netmask_value("24", 4) == 0xFFFFFF00
    assert codec.netmask_value("/48", 6) == 48
    with pytest.raises(codec.InvalidOp):
        codec.netmask_value("255.0.255.0", 4)
    with pytest.raises(codec.InvalidOp):
        codec.netmask_value("129", 6)


@pytest.mark.parametrize("dest", [
    Dest("10.0.0.2", 80, "gate", 1),
    Dest("10.0.0.3", 8080, "masq", 0, 100, 10),
    Dest("2001:db8::2", 53, "ipip", 7, 5, 5),
])
def test_dest_round_trip(dest: Dest) -> None:
    req = codec.request(AddDest(TCP, dest))
    same_as_pyroute2(req)
    for raw in (ours(req), theirs(req)):
        nla = codec.dumped(raw, 2)
        assert nla is not None
        assert codec.decode_dest(nla) == dest


def test_stats64_and_connections() -> None:
    values = {"conns": 6, "inpkts": 71, "outpkts": 66, "inbytes": 4928, "outbytes": 5860}
    stats = b"".join(struct.pack("=HHQ", 12, number, v) for number, v in enumerate(values.values(), 1))
    nla = {12: stats, 7: struct.pack("=I", 2), 8: struct.pack("=I", 5)}
    assert codec.stats64(nla, 12) == values
    assert codec.dest_connections(nla) == (2, 5)
    assert codec.stats64({}, 12) == {}


def test_parse_attrs_stops_at_a_truncated_attribute() -> None:
    chain = struct.pack("=HHI", 8, 3, 7) + struct.pack("=HH", 40, 4) + b"xx"
    assert parse_attrs(chain) == {3: struct.pack("=I", 7)}


def test_edits_are_set_commands_never_deletes() -> None:
    """pyroute2 0.9.7's "update" verb sends IPVS_CMD_DEL_*; Saru's edits must be SET."""
    assert codec.request(EditService(TCP, ServiceSettings())).cmd == codec.CMD_SET_SERVICE
    assert codec.request(EditDest(TCP, Dest("10.0.0.2", 80))).cmd == codec.CMD_SET_DEST
    assert codec.request(AddDest(TCP, Dest("10.0.0.2", 80))).create
    assert not codec.request(EditDest(TCP, Dest("10.0.0.2", 80))).create


def test_scheduler_flags() -> None:
    """The codec uses saru.model.schedflags, turning its errors into InvalidOp."""
    assert codec.parse_schedflags("sh-port,sh-fallback", "sh") == F_SCHED1 | F_SCHED2
    assert codec.parse_schedflags("mh-port", "mh") == F_SCHED2
    assert format_schedflags(F_SCHED1 | F_SCHED2, "sh") == "sh-fallback,sh-port"
    assert format_schedflags(F_SCHED2, "mh") == "mh-port"
    assert format_schedflags(F_SCHED1 | F_SCHED3, "wrr") == "flag-1,flag-3"
    assert format_schedflags(codec.F_PERSISTENT, "wrr") is None
    with pytest.raises(codec.InvalidOp, match="needs scheduler 'sh'"):
        codec.parse_schedflags("sh-port", "wrr")
    with pytest.raises(codec.InvalidOp, match="unknown scheduler flag"):
        codec.parse_schedflags("sh-bogus", "sh")


@pytest.mark.parametrize("op, reason", [
    (AddDest(TCP, Dest("10.0.0.2", 80, "masq", 1, 0, 5)), "above upper threshold"),
    (AddDest(TCP, Dest("10.0.0.2", 80, "bogus", 1)), "unknown forwarding method"),  # type: ignore[arg-type]
    (AddService(TCP, ServiceSettings("wr r")), "invalid scheduler"),
    (AddService(ServiceKey("fwm", "", 0, 0), ServiceSettings()), "firewall mark"),
])
def test_validation(op: Op, reason: str) -> None:
    with pytest.raises(codec.InvalidOp, match=reason):
        codec.validate(op)


def before_table() -> Table:
    return Table.of([
        Service(TCP, ServiceSettings("wrr", 300), {
            ("10.0.0.2", 80): Dest("10.0.0.2", 80, "masq", 2, 10, 1),
            ("10.0.0.3", 80): Dest("10.0.0.3", 80, "masq", 1),
        }),
        Service(UDP6, ServiceSettings("rr"), {("2001:db8::2", 53): Dest("2001:db8::2", 53, "gate", 1)}),
    ])


def test_rollback_plan_restores_the_table() -> None:
    before = before_table()
    new = ServiceKey("tcp", "10.0.0.9", 443)
    done: list[Op] = [
        AddService(new, ServiceSettings("lc")),
        AddDest(new, Dest("10.0.0.4", 443, "masq", 1)),
        EditService(TCP, ServiceSettings("sh", None, None, "sh-port")),
        EditDest(TCP, Dest("10.0.0.2", 80, "gate", 0)),
        EditDest(TCP, Dest("10.0.0.2", 80, "gate", 5)),  # a second edit of the same dest
        DelDest(TCP, "10.0.0.3", 80),
        DelService(UDP6),
    ]
    after = apply_ops(before, done)
    settings_keys, dest_keys = codec.needs_snapshot(done)
    assert settings_keys == {TCP, UDP6} and dest_keys == {TCP, UDP6}
    plan = codec.rollback_plan(done, before.services)
    assert apply_ops(after, plan) == before
    assert plan[0] == AddService(UDP6, ServiceSettings("rr"))  # the last op is undone first


def test_rollback_plan_of_nothing_is_empty() -> None:
    assert codec.rollback_plan([], {}) == []


def test_fast_wire_encoding_is_the_generic_encoding():
    ops = [
        AddDest(TCP, Dest("10.0.0.2", 8080, "masq", 3, 100, 10)),
        EditDest(TCP, Dest("10.0.0.2", 8080, "gate", 0)),
        DelDest(TCP, "10.0.0.2", 8080),
        AddDest(UDP6, Dest("2001:db8::2", 53, "ipip", 1)),
        EditDest(FWM6, Dest("2001:db8::3", 0, "gate", 7, 1, 0)),
        DelDest(FWM6, "2001:db8::3", 0),
        AddService(TCP, ServiceSettings("wrr")),
        DelService(UDP6),
    ]
    for op in ops:
        assert codec.wire(op) == codec.request(op).wire, op
    runs = [*ops, ops[0], ops[1], AddDest(TCP, Dest("10.0.0.9", 80, "masq")), ops[3], ops[0]]
    assert codec.wire_all(runs) == [codec.request(op).wire for op in runs]  # the batch form


def test_rollback_plan_of_a_big_batch_is_linear_and_right():
    before = {TCP: Service(TCP, ServiceSettings("wrr"), {
        (f"10.1.{i // 250}.{i % 250 + 1}", 80): Dest(f"10.1.{i // 250}.{i % 250 + 1}", 80, "masq", 1)
        for i in range(5000)})}
    done: list[Op] = [EditDest(TCP, Dest(d.address, d.port, "masq", 0)) for d in before[TCP].dests.values()]
    plan = codec.rollback_plan(done, before)
    assert apply_ops(apply_ops(Table(before), done), plan) == Table(before)


def bulk_dests(n: int, weight: int = 1) -> list[Dest]:
    return [Dest(f"10.2.{i // 250}.{i % 250 + 1}", 80, "masq", weight) for i in range(n)]


def test_bulk_changes_of_a_wrr_service_run_under_rr():
    wrr = ServiceSettings("wrr", 300)
    n = codec.BULK_DEST_OPS
    added: list[Op] = [AddService(TCP, wrr), *(AddDest(TCP, d) for d in bulk_dests(n))]
    plan = codec.with_cheap_scheduler(added, {})
    assert plan[0] == AddService(TCP, ServiceSettings("rr", 300))
    assert plan[1:-1] == added[1:]
    assert plan[-1] == EditService(TCP, wrr)
    assert apply_ops(Table(), plan) == apply_ops(Table(), added)

    # an existing mh service (its flags come back too), other services' ops untouched around it
    mh = ServiceSettings("mh", None, None, "mh-port")
    edits: list[Op] = [DelService(UDP6), *(EditDest(TCP, d) for d in bulk_dests(n, 0))]
    plan = codec.with_cheap_scheduler(edits, {TCP: mh})
    assert plan == [DelService(UDP6), EditService(TCP, ServiceSettings("rr")), *edits[1:], EditService(TCP, mh)]


def test_cheap_scheduler_only_where_it_pays_and_is_safe():
    n = codec.BULK_DEST_OPS
    few: list[Op] = [EditDest(TCP, d) for d in bulk_dests(n - 1)]
    assert codec.with_cheap_scheduler(few, {TCP: ServiceSettings("wrr")}) == few
    many: list[Op] = [EditDest(TCP, d) for d in bulk_dests(n)]
    assert codec.with_cheap_scheduler(many, {TCP: ServiceSettings("wlc")}) == many  # no costly hook
    assert codec.with_cheap_scheduler(many, {}) == many  # settings unknown
    mixed = [*many, EditService(TCP, ServiceSettings("wrr", 60))]
    assert codec.with_cheap_scheduler(mixed, {TCP: ServiceSettings("wrr")}) == mixed
