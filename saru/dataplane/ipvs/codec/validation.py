"""Checking an op before anything is sent: what the IPVS data plane cannot express (pure).

``validate(op)`` raises ``InvalidOp`` for a bad firewall mark, protocol, address, port, scheduler name
or flag, netmask, persistence timeout, forwarding method, weight or thresholds — the kernel would refuse
them, after the earlier ops of the batch had been applied (and an op that passes can be packed:
``packing.wire`` does not raise).
"""

from __future__ import annotations

import ipaddress
from typing import assert_never

from saru.dataplane.ipvs.codec.uapi import FORWARD_CODES, PROTOCOLS
from saru.model import AddDest, AddService, DelDest, DelService, Dest, EditDest, EditService, Op, ServiceSettings
from saru.model import schedflags as _schedflags
from saru.model.schedflags import SchedFlagError

__all__ = ["InvalidOp", "netmask_value", "parse_schedflags", "validate"]


class InvalidOp(ValueError):
    """An op the IPVS data plane cannot express (bad scheduler flag, netmask, forwarding method)."""


def parse_schedflags(schedflags: str | None, scheduler: str) -> int:
    """Flag bits of a ``schedflags`` value, checked like ipvsadm ``-b`` (``saru.model.schedflags``)."""
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


def validate(op: Op) -> None:
    """Raise InvalidOp when ``op`` cannot be expressed for IPVS."""
    key = op.service
    if key.protocol == "fwm":
        if key.fwmark is None or not 0 < key.fwmark <= 0xFFFFFFFF:
            raise InvalidOp(f"invalid firewall mark {key.fwmark!r}")
    elif key.protocol not in PROTOCOLS:
        raise InvalidOp(f"unknown protocol {key.protocol!r}")
    else:
        _validate_address(key.address, "service address")
        _validate_port(key.port, "service port")
    match op:
        case AddService(settings=settings) | EditService(settings=settings):
            _validate_settings(settings, key.family)
        case AddDest(dest=dest) | EditDest(dest=dest):
            _validate_dest(dest)
        case DelDest(address=address, port=port):
            _validate_address(address, "destination address")
            _validate_port(port, "destination port")
        case DelService():
            pass
        case _:
            assert_never(op)


def _validate_settings(s: ServiceSettings, family: int) -> None:
    if not s.scheduler or not s.scheduler.isalnum():
        raise InvalidOp(f"invalid scheduler name {s.scheduler!r}")
    parse_schedflags(s.schedflags, s.scheduler)
    netmask_value(s.netmask, family)
    if s.persistent is not None and not 0 <= s.persistent <= 0xFFFFFFFF:
        raise InvalidOp(f"invalid persistent timeout {s.persistent}")


def _validate_address(address: str, what: str) -> None:
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:  # also an embedded NUL, which inet_pton would raise ValueError for
        raise InvalidOp(f"{what} {address!r} is not an IP address") from None
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.scope_id is not None:
        raise InvalidOp(f"{what} {address!r}: IPVS takes no scope (%interface)")


def _validate_port(port: int, what: str) -> None:
    if not 0 <= port <= 0xFFFF:
        raise InvalidOp(f"{what} {port} is not 0-65535")


def _validate_dest(d: Dest) -> None:
    _validate_address(d.address, "destination address")
    _validate_port(d.port, "destination port")
    if d.forward not in FORWARD_CODES:
        raise InvalidOp(f"unknown forwarding method {d.forward!r}")
    if not 0 <= d.weight <= 0x7FFFFFFF:
        raise InvalidOp(f"invalid weight {d.weight}")
    if d.upper_threshold < 0 or d.lower_threshold < 0:
        raise InvalidOp("thresholds must not be negative")
    if d.lower_threshold > d.upper_threshold:  # the kernel says ERANGE, even for u:0 (no limit)
        raise InvalidOp(f"lower threshold l:{d.lower_threshold} is above upper threshold "
                        f"u:{d.upper_threshold} (IPVS requires l <= u)")
