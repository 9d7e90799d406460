"""IPVS dumps back into Saru's model: services, settings, destinations, counters (pure).

The kernel's answers to GET_SERVICE / GET_DEST are read as raw attribute payloads by number
(pyroute2's generic decoder costs ~2 ms per destination under emulation, ten times this).
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Mapping

from saru.dataplane.ipvs.codec.uapi import (
    F_ONEPACKET,
    F_PERSISTENT,
    FORWARD_BY_CODE,
    FWD_MASK,
    GENL_HEADER,
    PROTOCOL_NAMES,
    STATS_FIELDS,
)
from saru.model import Dest, ServiceKey, ServiceSettings
from saru.model.schedflags import format_schedflags
from saru.net import parse_attrs

__all__ = [
    "Nla", "decode_dest", "decode_service_key", "decode_settings", "dest_connections", "dumped", "netmask_text",
    "stats64",
]


Nla = Mapping[int, bytes]


def netmask_text(attr: str | None, family: int) -> str | None:
    """The model's netmask from the NETMASK attribute; None for the default (/32 or /128)."""
    if attr is None:
        return None
    raw = socket.inet_aton(attr)
    if family == 6:
        plen = struct.unpack("=I", raw)[0]
        return None if plen == 128 else str(plen)
    return None if attr == "255.255.255.255" else attr


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
    return ServiceKey(protocol, _address(svc.get(3), family), _port(svc, 4), None, family)


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
