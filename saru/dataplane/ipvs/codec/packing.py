"""Translation between Saru's table model and the IPVS generic-netlink attributes (pure, no I/O).

Ops become attribute lists (``[(name, value), ...]``, pyroute2's names) and then the bytes of a
generic-netlink payload, packed here with ``struct`` (pyroute2's generic encoder costs ~0.3 ms per
message, which dominated a bulk apply); decoding reads the nested attribute objects pyroute2
returns from a dump (anything with a ``.get(name)`` method). Also here: validation of ops before
anything is sent, and the inverse ops that roll a half-applied batch back (IPVS has no
transactions).

Kernel facts this module encodes (include/uapi/linux/ip_vs.h, net/netfilter/ipvs/ip_vs_ctl.c):

* service flags: ``PERSISTENT`` 0x1, ``HASHED`` 0x2 (kernel-internal), ``ONEPACKET`` 0x4 (``ops``),
  ``SCHED1..3`` 0x8/0x10/0x20; ``sh-fallback``/``mh-fallback`` are SCHED1 and ``sh-port``/``mh-port``
  are SCHED2 (ipvsadm's ``-b``), so the name read back depends on the scheduler, as in ipvsadm;
* NEW/SET_SERVICE need scheduler, flags, timeout and netmask; the netmask is a network-order IPv4
  mask for IPv4 services and the prefix length (a host-order u32, 1..128) for IPv6 services;
* forwarding methods: masq 0, (localnode 1), ipip 2, gate 3;
* ipvsadm (not the kernel) forces gate/ipip destination ports to the virtual's port; Saru's planner
  does the same (``Capabilities.rewrites_gate_ports``), so destinations are programmed as given.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from saru import schedflags as _schedflags
from saru.dataplane.base import ConnEntry
from saru.model import (
    AddDest,
    AddService,
    DelDest,
    DelService,
    Dest,
    EditDest,
    EditService,
    Forward,
    Op,
    Service,
    ServiceKey,
    ServiceSettings,
)
from saru.net import nla, parse_attrs
from saru.schedflags import SchedFlagError, format_schedflags

#: Every scheduler the Linux kernel ships (twos since 6.2).
SCHEDULERS = frozenset("rr wrr lc wlc lblc lblcr dh sh sed nq fo ovf mh twos".split())

F_PERSISTENT = 0x0001
F_HASHED = 0x0002
F_ONEPACKET = 0x0004
ALL_FLAGS_MASK = 0xFFFFFFFF

FORWARD_CODES: dict[str, int] = {"masq": 0, "ipip": 2, "gate": 3}
FORWARD_BY_CODE: dict[int, Forward] = {0: "masq", 1: "gate", 2: "ipip", 3: "gate"}  # 1 = localnode
FWD_MASK = 0x7

PROTOCOLS: dict[str, int] = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP}
PROTOCOL_NAMES = {number: name for name, number in PROTOCOLS.items()}
FAMILIES = {4: socket.AF_INET, 6: socket.AF_INET6}

Attrs = list[tuple[str, Any]]


class InvalidOp(ValueError):
    """An op the IPVS data plane cannot express (bad scheduler flag, netmask, forwarding method)."""


# --------------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------------


def parse_schedflags(schedflags: str | None, scheduler: str) -> int:
    """Flag bits of a ``schedflags`` value, checked like ipvsadm ``-b`` (``saru.schedflags``)."""
    try:
        return _schedflags.parse_schedflags(schedflags, scheduler)
    except SchedFlagError as exc:
        raise InvalidOp(str(exc)) from None


def netmask_value(netmask: str | None, family: int) -> int:
    """The netmask as the kernel wants it: a network-order IPv4 mask, or an IPv6 prefix length."""
    if family == 6:
        if netmask is None:
            return 128
        text = netmask.strip().lstrip("/")
        if not text.isdigit() or not 1 <= int(text) <= 128:
            raise InvalidOp(f"invalid IPv6 netmask {netmask!r}: a prefix length 1-128 is required")
        return int(text)
    if netmask is None:
        return 0xFFFFFFFF
    text = netmask.strip().lstrip("/")
    try:
        if text.isdigit():
            return int(ipaddress.IPv4Network(f"0.0.0.0/{text}").netmask)
        mask = ipaddress.IPv4Network(f"0.0.0.0/{text}").netmask
    except ValueError:
        raise InvalidOp(f"invalid IPv4 netmask {netmask!r}") from None
    return int(mask)


def netmask_attr(netmask: str | None, family: int) -> str:
    """The NETMASK attribute in pyroute2's ``ip4addr`` notation (it carries the raw 4 bytes)."""
    value = netmask_value(netmask, family)
    if family == 6:
        return socket.inet_ntoa(struct.pack("=I", value))  # the kernel reads a host-order u32
    return socket.inet_ntoa(struct.pack("!I", value))


def netmask_text(attr: str | None, family: int) -> str | None:
    """The model's netmask from the NETMASK attribute; None for the default (/32 or /128)."""
    if attr is None:
        return None
    raw = socket.inet_aton(attr)
    if family == 6:
        plen = struct.unpack("=I", raw)[0]
        return None if plen == 128 else str(plen)
    return None if attr == "255.255.255.255" else attr


def validate(op: Op) -> None:
    """Raise InvalidOp when ``op`` cannot be expressed for IPVS."""
    key = op.service
    if key.protocol == "fwm":
        if key.fwmark is None or not 0 < key.fwmark <= 0xFFFFFFFF:
            raise InvalidOp(f"invalid firewall mark {key.fwmark!r}")
    elif key.protocol not in PROTOCOLS:
        raise InvalidOp(f"unknown protocol {key.protocol!r}")
    if isinstance(op, AddService | EditService):
        s = op.settings
        if not s.scheduler or not s.scheduler.isalnum():
            raise InvalidOp(f"invalid scheduler name {s.scheduler!r}")
        parse_schedflags(s.schedflags, s.scheduler)
        netmask_value(s.netmask, key.family)
        if s.persistent is not None and not 0 <= s.persistent <= 0xFFFFFFFF:
            raise InvalidOp(f"invalid persistent timeout {s.persistent}")
    if isinstance(op, AddDest | EditDest):
        d = op.dest
        if d.forward not in FORWARD_CODES:
            raise InvalidOp(f"unknown forwarding method {d.forward!r}")
        if not 0 <= d.weight <= 0x7FFFFFFF:
            raise InvalidOp(f"invalid weight {d.weight}")
        if d.upper_threshold < 0 or d.lower_threshold < 0:
            raise InvalidOp("thresholds must not be negative")
        if d.lower_threshold > d.upper_threshold:  # the kernel says ERANGE, even for u:0 (no limit)
            raise InvalidOp(f"lower threshold l:{d.lower_threshold} is above upper threshold "
                            f"u:{d.upper_threshold} (IPVS requires l <= u)")


# --------------------------------------------------------------------------------------------------
# encoding
# --------------------------------------------------------------------------------------------------


def service_key_attrs(key: ServiceKey) -> Attrs:
    """The attributes that identify a service."""
    attrs: Attrs = [("IPVS_SVC_ATTR_AF", FAMILIES[key.family])]
    if key.protocol == "fwm":
        attrs.append(("IPVS_SVC_ATTR_FWMARK", key.fwmark))
    else:
        attrs += [
            ("IPVS_SVC_ATTR_PROTOCOL", PROTOCOLS[key.protocol]),
            ("IPVS_SVC_ATTR_ADDR", key.address),
            ("IPVS_SVC_ATTR_PORT", key.port),
        ]
    return attrs


def service_attrs(key: ServiceKey, settings: ServiceSettings) -> Attrs:
    """The full attributes of NEW_SERVICE / SET_SERVICE."""
    flags = parse_schedflags(settings.schedflags, settings.scheduler)
    if settings.persistent is not None:
        flags |= F_PERSISTENT
    if settings.ops:
        flags |= F_ONEPACKET
    netmask = settings.netmask if settings.persistent is not None else None
    return [
        *service_key_attrs(key),
        ("IPVS_SVC_ATTR_SCHED_NAME", settings.scheduler),
        ("IPVS_SVC_ATTR_FLAGS", {"flags": flags, "mask": ALL_FLAGS_MASK}),
        ("IPVS_SVC_ATTR_TIMEOUT", settings.persistent or 0),
        ("IPVS_SVC_ATTR_NETMASK", netmask_attr(netmask, key.family)),
    ]


def dest_key_attrs(address: str, port: int) -> Attrs:
    family = FAMILIES[ipaddress.ip_address(address).version]
    return [
        ("IPVS_DEST_ATTR_ADDR_FAMILY", family),
        ("IPVS_DEST_ATTR_ADDR", address),
        ("IPVS_DEST_ATTR_PORT", port),
    ]


def dest_attrs(dest: Dest) -> Attrs:
    """The full attributes of NEW_DEST / SET_DEST."""
    return [
        *dest_key_attrs(dest.address, dest.port),
        ("IPVS_DEST_ATTR_FWD_METHOD", FORWARD_CODES[dest.forward]),
        ("IPVS_DEST_ATTR_WEIGHT", dest.weight),
        ("IPVS_DEST_ATTR_U_THRESH", dest.upper_threshold),
        ("IPVS_DEST_ATTR_L_THRESH", dest.lower_threshold),
    ]


# IPVS_CMD_* numbers (include/uapi/linux/ip_vs.h)
CMD_NEW_SERVICE = 1
CMD_SET_SERVICE = 2
CMD_DEL_SERVICE = 3
CMD_GET_SERVICE = 4
CMD_NEW_DEST = 5
CMD_SET_DEST = 6
CMD_DEL_DEST = 7
CMD_GET_DEST = 8
CMD_NEW_DAEMON = 9
CMD_DEL_DAEMON = 10
CMD_GET_DAEMON = 11
CMD_ZERO = 16
CMD_FLUSH = 17


# attribute name → (type number, encoding), from include/uapi/linux/ip_vs.h
SERVICE_ATTRS: dict[str, tuple[int, str]] = {
    "IPVS_SVC_ATTR_AF": (1, "u16"),
    "IPVS_SVC_ATTR_PROTOCOL": (2, "u16"),
    "IPVS_SVC_ATTR_ADDR": (3, "addr"),
    "IPVS_SVC_ATTR_PORT": (4, "be16"),
    "IPVS_SVC_ATTR_FWMARK": (5, "u32"),
    "IPVS_SVC_ATTR_SCHED_NAME": (6, "asciiz"),
    "IPVS_SVC_ATTR_FLAGS": (7, "flags"),
    "IPVS_SVC_ATTR_TIMEOUT": (8, "u32"),
    "IPVS_SVC_ATTR_NETMASK": (9, "ip4"),
}
DEST_ATTRS: dict[str, tuple[int, str]] = {
    "IPVS_DEST_ATTR_ADDR": (1, "addr"),
    "IPVS_DEST_ATTR_PORT": (2, "be16"),
    "IPVS_DEST_ATTR_FWD_METHOD": (3, "u32"),
    "IPVS_DEST_ATTR_WEIGHT": (4, "u32"),
    "IPVS_DEST_ATTR_U_THRESH": (5, "u32"),
    "IPVS_DEST_ATTR_L_THRESH": (6, "u32"),
    "IPVS_DEST_ATTR_ADDR_FAMILY": (11, "u16"),
}
DAEMON_ATTRS: dict[str, tuple[int, str]] = {
    "IPVS_DAEMON_ATTR_STATE": (1, "u32"),
    "IPVS_DAEMON_ATTR_MCAST_IFN": (2, "asciiz"),
    "IPVS_DAEMON_ATTR_SYNC_ID": (3, "u32"),
    "IPVS_DAEMON_ATTR_SYNC_MAXLEN": (4, "u16"),
    "IPVS_DAEMON_ATTR_MCAST_GROUP": (5, "ip4"),
    "IPVS_DAEMON_ATTR_MCAST_GROUP6": (6, "ip6"),
    "IPVS_DAEMON_ATTR_MCAST_PORT": (7, "u16"),
    "IPVS_DAEMON_ATTR_MCAST_TTL": (8, "u8"),
}
CMD_ATTRS: dict[str, tuple[int, dict[str, tuple[int, str]]]] = {
    "IPVS_CMD_ATTR_SERVICE": (1, SERVICE_ATTRS),
    "IPVS_CMD_ATTR_DEST": (2, DEST_ATTRS),
    "IPVS_CMD_ATTR_DAEMON": (3, DAEMON_ATTRS),
}


def _pack_value(kind: str, value: Any) -> bytes:
    if kind == "u8":
        return struct.pack("=B", value)
    if kind == "u16":
        return struct.pack("=H", value)
    if kind == "u32":
        return struct.pack("=I", value)
    if kind == "be16":
        return struct.pack("!H", value)
    if kind == "addr":  # union nf_inet_addr: 16 bytes, as ipvsadm and the kernel's dumps use
        ip = ipaddress.ip_address(value)
        return ip.packed.ljust(16, b"\0")
    if kind == "asciiz":
        return str(value).encode() + b"\0"
    if kind == "flags":
        return struct.pack("=II", value["flags"], value["mask"])
    if kind == "ip4":
        return socket.inet_aton(value)
    if kind == "ip6":
        return ipaddress.IPv6Address(value).packed
    raise InvalidOp(f"no encoding {kind!r}")


def pack_attrs(attrs: Attrs) -> bytes:
    """The bytes of an IPVS command's attributes (service and destination nested inside)."""
    out = []
    for name, value in attrs:
        number, table = CMD_ATTRS[name]
        inner = b"".join(nla(table[n][0], _pack_value(table[n][1], v)) for n, v in value["attrs"])
        out.append(nla(number, inner))
    return b"".join(out)


@dataclass(frozen=True)
class Request:
    """One IPVS command: its number, whether it creates something, and its attributes."""

    cmd: int
    create: bool
    attrs: Attrs

    @property
    def payload(self) -> bytes:
        """The attributes as bytes (after the generic-netlink header)."""
        return pack_attrs(self.attrs)

    @property
    def wire(self) -> tuple[int, bytes, bool]:
        """(cmd, payload, create): what ``ipvs_netlink.GenlSocket.batch`` sends."""
        return self.cmd, pack_attrs(self.attrs), self.create


def request(op: Op) -> Request:
    """The netlink request executing ``op`` (never the DELETE that pyroute2's ``update`` sends)."""
    svc = ("IPVS_CMD_ATTR_SERVICE", {"attrs": service_key_attrs(op.service)})
    if isinstance(op, AddService | EditService):
        full = ("IPVS_CMD_ATTR_SERVICE", {"attrs": service_attrs(op.service, op.settings)})
        if isinstance(op, AddService):
            return Request(CMD_NEW_SERVICE, True, [full])
        return Request(CMD_SET_SERVICE, False, [full])
    if isinstance(op, DelService):
        return Request(CMD_DEL_SERVICE, False, [svc])
    if isinstance(op, AddDest):
        return Request(CMD_NEW_DEST, True, [svc, ("IPVS_CMD_ATTR_DEST", {"attrs": dest_attrs(op.dest)})])
    if isinstance(op, EditDest):
        return Request(CMD_SET_DEST, False, [svc, ("IPVS_CMD_ATTR_DEST", {"attrs": dest_attrs(op.dest)})])
    if isinstance(op, DelDest):
        dest = ("IPVS_CMD_ATTR_DEST", {"attrs": dest_key_attrs(op.address, op.port)})
        return Request(CMD_DEL_DEST, False, [svc, dest])
    raise InvalidOp(f"unknown op {op!r}")


# The same bytes as ``request(op).payload``, built faster for the bulk ops (destination changes):
# one precompiled struct per destination, the service's attributes packed once per service. The
# generic path above costs ~15 us per op on the host, which alone would take 150 ms for 10,000.
_DEST_FULL = struct.Struct("=HH" "HHH2x" "HH16s" "HHH2x" "HHI" "HHI" "HHI" "HHI")
_DEST_KEY = struct.Struct("=HH" "HHH2x" "HH16s" "HHH2x")
_AF_INET6 = socket.AF_INET6
_AF_INET = socket.AF_INET


@functools.lru_cache(maxsize=256)
def _service_key_bytes(key: ServiceKey) -> bytes:
    return pack_attrs([("IPVS_CMD_ATTR_SERVICE", {"attrs": service_key_attrs(key)})])


def _addr16(address: str) -> tuple[int, bytes]:
    if ":" in address:
        return _AF_INET6, socket.inet_pton(_AF_INET6, address)
    return _AF_INET, socket.inet_pton(_AF_INET, address)  # struct pads "16s" with zeros


def wire(op: Op) -> tuple[int, bytes, bool]:
    """(cmd, payload, create) of ``op``: ``request(op).wire``, faster for destination ops."""
    if isinstance(op, AddDest | EditDest):
        d = op.dest
        family, raw = _addr16(d.address)
        dest = _DEST_FULL.pack(72, 2, 6, 11, family, 20, 1, raw, 6, 2, socket.htons(d.port),
                               8, 3, FORWARD_CODES[d.forward], 8, 4, d.weight, 8, 5, d.upper_threshold,
                               8, 6, d.lower_threshold)
        if isinstance(op, AddDest):
            return CMD_NEW_DEST, _service_key_bytes(op.service) + dest, True
        return CMD_SET_DEST, _service_key_bytes(op.service) + dest, False
    if isinstance(op, DelDest):
        family, raw = _addr16(op.address)
        dest = _DEST_KEY.pack(40, 2, 6, 11, family, 20, 1, raw, 6, 2, socket.htons(op.port))
        return CMD_DEL_DEST, _service_key_bytes(op.service) + dest, False
    return request(op).wire


# --------------------------------------------------------------------------------------------------
# decoding (raw attribute payloads by number: pyroute2's generic decoder costs ~2 ms per
# destination under emulation, ten times this)
# --------------------------------------------------------------------------------------------------

Nla = Mapping[int, bytes]
GENL_HEADER = 20  # struct nlmsghdr (16) + struct genlmsghdr (4)


def dumped(raw: bytes | memoryview, cmd_attr: int) -> dict[int, bytes] | None:
    """The nested service (1) or destination (2) attributes of one dumped IPVS message."""
    inner = parse_attrs(raw, GENL_HEADER).get(cmd_attr)
    return parse_attrs(inner) if inner is not None else None


def _u16(nla: Nla, number: int) -> int:
    value = nla.get(number)
    return struct.unpack_from("=H", value)[0] if value and len(value) >= 2 else 0


def _u32(nla: Nla, number: int) -> int:
    value = nla.get(number)
    return struct.unpack_from("=I", value)[0] if value and len(value) >= 4 else 0


def _port(nla: Nla, number: int) -> int:
    value = nla.get(number)
    return struct.unpack_from("!H", value)[0] if value and len(value) >= 2 else 0


def _address(raw: bytes | None, family: int) -> str:
    if raw is None:
        return ""
    if family == 6:
        return str(ipaddress.IPv6Address(raw[:16]))
    return str(ipaddress.IPv4Address(raw[:4]))


def decode_service_key(svc: Nla) -> ServiceKey | None:
    """The key of a dumped service (None for a protocol Saru does not model, e.g. SCTP)."""
    family = 6 if _u16(svc, 1) == socket.AF_INET6 else 4
    fwmark = _u32(svc, 5)
    if fwmark:
        return ServiceKey("fwm", "", 0, fwmark, family)
    protocol = PROTOCOL_NAMES.get(_u16(svc, 2))
    if protocol is None:
        return None
    return ServiceKey(protocol, _address(svc.get(3), family), _port(svc, 4), None, family)  # type: ignore[arg-type]


def decode_settings(svc: Nla, family: int) -> ServiceSettings:
    scheduler = svc.get(6, b"").split(b"\0", 1)[0].decode(errors="replace")
    flags = _u32(svc, 7)
    persistent = _u32(svc, 8) if flags & F_PERSISTENT else None
    netmask = None
    if persistent is not None and len(svc.get(9, b"")) >= 4:
        netmask = netmask_text(socket.inet_ntoa(svc[9][:4]), family)
    return ServiceSettings(
        scheduler=scheduler,
        persistent=persistent,
        netmask=netmask,
        schedflags=format_schedflags(flags, scheduler),
        ops=bool(flags & F_ONEPACKET),
    )


def decode_dest(dest: Nla, service_family: int = 4) -> Dest:
    family_code = _u16(dest, 11)  # ADDR_FAMILY (absent before Linux 3.18: the service's family)
    family = service_family if not family_code else (6 if family_code == socket.AF_INET6 else 4)
    return Dest(
        address=_address(dest.get(1), family),
        port=_port(dest, 2),
        forward=FORWARD_BY_CODE.get(_u32(dest, 3) & FWD_MASK, "masq"),
        weight=_u32(dest, 4),
        upper_threshold=_u32(dest, 5),
        lower_threshold=_u32(dest, 6),
    )


def dest_connections(dest: Nla) -> tuple[int, int]:
    """(active, inactive) connections of a dumped destination."""
    return _u32(dest, 7), _u32(dest, 8)


STATS_FIELDS = ("conns", "inpkts", "outpkts", "inbytes", "outbytes")


def stats64(nla: Nla, number: int) -> dict[str, int]:
    """The STATS64 counters (service attribute 12, destination attribute 12) by short name."""
    raw = nla.get(number)
    if raw is None:
        return {}
    stats = parse_attrs(raw)
    out = {}
    for index, name in enumerate(STATS_FIELDS, 1):
        value = stats.get(index)
        out[name] = struct.unpack_from("=Q", value)[0] if value and len(value) >= 8 else 0
    return out


SVC_STATS64 = 12
DEST_STATS64 = 12


# --------------------------------------------------------------------------------------------------
# rollback
# --------------------------------------------------------------------------------------------------


def needs_snapshot(ops: Iterable[Op]) -> tuple[set[ServiceKey], set[ServiceKey]]:
    """(services whose settings, services whose dests) must be read before ``ops`` to undo them."""
    settings: set[ServiceKey] = set()
    dests: set[ServiceKey] = set()
    for op in ops:
        if isinstance(op, EditService | DelService):
            settings.add(op.service)
        if isinstance(op, EditDest | DelDest | DelService):
            dests.add(op.service)
    return settings, dests


def inverses(ops: Sequence[Op], before: Mapping[ServiceKey, Service]) -> list[list[Op]]:
    """For each op, the ops that undo it, given the services touched as they were before the batch.

    The batch is simulated forward so that an op's inverse sees the state just before that op
    (linear: each service's destinations are copied at most once). An op whose earlier state is
    unknown gets no inverse (best effort).
    """
    settings = {key: service.settings for key, service in before.items()}
    dests: dict[ServiceKey, dict[tuple[str, int], Dest]] = {}

    def dest_map(key: ServiceKey) -> dict[tuple[str, int], Dest]:
        if key not in dests:
            dests[key] = dict(before[key].dests) if key in before else {}
        return dests[key]

    result: list[list[Op]] = []
    for op in ops:
        key = op.service
        known = key in settings
        undo: list[Op] = []
        if isinstance(op, AddService):
            undo = [DelService(key)]
            settings[key] = op.settings
            dests[key] = {}
        elif isinstance(op, EditService):
            if known:
                undo = [EditService(key, settings[key])]
                settings[key] = op.settings
        elif isinstance(op, DelService):
            if known:
                undo = [AddService(key, settings.pop(key))]
                undo += [AddDest(key, d) for _, d in sorted(dest_map(key).items())]
                dests.pop(key, None)
        elif isinstance(op, AddDest):
            undo = [DelDest(key, op.dest.address, op.dest.port)]
            if known:
                dest_map(key)[op.dest.key] = op.dest
        elif isinstance(op, EditDest):
            old = dest_map(key).get(op.dest.key) if known else None
            if old is not None:
                undo = [EditDest(key, old)]
                dest_map(key)[op.dest.key] = op.dest
        elif isinstance(op, DelDest):
            old = dest_map(key).pop((op.address, op.port), None) if known else None
            if old is not None:
                undo = [AddDest(key, old)]
        result.append(undo)
    return result


def rollback_plan(done: Sequence[Op], before: Mapping[ServiceKey, Service]) -> list[Op]:
    """The ops undoing ``done`` (all of which succeeded), last op first."""
    plan: list[Op] = []
    for undo in reversed(inverses(done, before)):
        plan.extend(undo)
    return plan


# --------------------------------------------------------------------------------------------------
# connection entries (/proc/net/ip_vs_conn, what ``ipvsadm -L -c`` reads)
# --------------------------------------------------------------------------------------------------


def _conn_address(text: str) -> str:
    """An address of /proc/net/ip_vs_conn: 8 hex digits (IPv4, host order) or IPv6 with colons."""
    if ":" in text:
        return str(ipaddress.IPv6Address(text))
    return str(ipaddress.IPv4Address(int(text, 16)))


def parse_conn_line(line: str) -> ConnEntry | None:
    """One line of /proc/net/ip_vs_conn (``Pro FromIP FPrt ToIP TPrt DestIP DPrt State Expires
    [PEName PEData]``); None for the header or a line that is not an entry."""
    fields = line.split()
    if len(fields) < 9 or fields[0] == "Pro":
        return None
    try:
        return ConnEntry(
            protocol=fields[0],
            client=(_conn_address(fields[1]), int(fields[2], 16)),
            virtual=(_conn_address(fields[3]), int(fields[4], 16)),
            dest=(_conn_address(fields[5]), int(fields[6], 16)),
            state=fields[7],
            expires=float(int(fields[8])),
        )
    except ValueError:
        return None


def parse_conn_table(text: str) -> list[ConnEntry]:
    """Every entry of /proc/net/ip_vs_conn, in the kernel's order."""
    return [entry for entry in map(parse_conn_line, text.splitlines()) if entry is not None]


# --------------------------------------------------------------------------------------------------
# bulk changes under a cheap scheduler
# --------------------------------------------------------------------------------------------------

#: Schedulers whose kernel hook rebuilds state over ALL destinations on every destination change
#: (wrr: weights' gcd and maximum, O(N); mh: the 65,521-slot lookup table): N changes cost O(N^2).
COSTLY_SCHEDULERS = frozenset({"wrr", "mh"})
#: Destination changes of one service in one batch from which the scheduler is swapped meanwhile.
BULK_DEST_OPS = 128


def _cheap(settings: ServiceSettings) -> ServiceSettings:
    return replace(settings, scheduler="rr", schedflags=None)


def with_cheap_scheduler(ops: Sequence[Op], current: Mapping[ServiceKey, ServiceSettings]) -> list[Op]:
    """``ops`` with the many destination changes of a wrr or mh service made under ``rr``.

    For a service that gets at least ``BULK_DEST_OPS`` destination changes in this batch and no
    other service op (except an AddService before them), the service runs rr while they are
    applied and gets its own scheduler back right after the last one, which rebuilds that
    scheduler's state once instead of once per change. New connections arriving during the batch
    are scheduled round-robin over the destinations present (mid-batch the table is neither the old
    nor the new one anyway); established connections are not affected. The final table is the
    same. ``current`` gives the settings of existing services (a service not in it is left alone).
    """
    positions: dict[ServiceKey, list[int]] = {}
    for index, op in enumerate(ops):
        positions.setdefault(op.service, []).append(index)
    before: dict[int, Op] = {}
    after: dict[int, Op] = {}
    replaced: dict[int, Op] = {}
    for key, indices in positions.items():
        dest_ops = [i for i in indices if isinstance(ops[i], AddDest | EditDest | DelDest)]
        service_ops = [i for i in indices if not isinstance(ops[i], AddDest | EditDest | DelDest)]
        if len(dest_ops) < BULK_DEST_OPS or len(service_ops) > 1:
            continue
        if service_ops:
            first = ops[service_ops[0]]
            if not isinstance(first, AddService) or service_ops[0] > dest_ops[0]:
                continue
            settings = first.settings
            if settings.scheduler not in COSTLY_SCHEDULERS:
                continue
            replaced[service_ops[0]] = AddService(key, _cheap(settings))
        else:
            found = current.get(key)
            if found is None or found.scheduler not in COSTLY_SCHEDULERS:
                continue
            settings = found
            before[dest_ops[0]] = EditService(key, _cheap(settings))
        after[dest_ops[-1]] = EditService(key, settings)
    if not (before or after):
        return list(ops)
    out: list[Op] = []
    for index, op in enumerate(ops):
        if index in before:
            out.append(before[index])
        out.append(replaced.get(index, op))
        if index in after:
            out.append(after[index])
    return out
