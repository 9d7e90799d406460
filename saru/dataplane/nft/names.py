"""What Saru calls its nftables objects, and what it writes into their comments (pure).

Saru owns two tables named ``saru`` (``TABLE``): ``inet`` for NAT, ``netdev`` for direct routing.
Object names are derived from stable hashes of the keys (``service_id``, ``dest_id``), so an apply
only replaces chains and the dynamic sets of destinations that stay survive every apply. A table's
identity and settings are written into rule comments (``saru S …`` / ``saru D …``; map elements of a
map-scheduled real: ``saru R …``) so that ``parse`` reads back exactly the ``Table`` that was applied.
"""

from __future__ import annotations

import hashlib
from urllib.parse import quote, unquote

from saru.model import Dest, Forward, Protocol, Service, ServiceKey, ServiceSettings

__all__ = [
    "COMMENT_MAX", "DR_FAMILY", "NAT_FAMILY", "TABLE", "RenderError", "closing_set", "dest_comment", "dest_id",
    "flow_set", "ingress_chain", "parse_dest_comment", "parse_real_comment", "parse_service_comment", "persist_set",
    "real_comment", "service_comment", "service_id",
]


TABLE = "saru"
NAT_FAMILY = "inet"
DR_FAMILY = "netdev"
COMMENT_MAX = 127


class RenderError(ValueError):
    """The table cannot be expressed in nftables (the message says why)."""


def _h(text: str, n: int) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:n]


def service_id(key: ServiceKey) -> str:
    return _h(f"{key.protocol}|{key.family}|{key.address}|{key.port}|{key.fwmark}", 10)


def dest_id(key: tuple[str, int]) -> str:
    return _h(f"{key[0]}|{key[1]}", 8)


def flow_set(sid: str, did: str) -> str:
    return f"f_{sid}_{did}"


def closing_set(sid: str, did: str) -> str:
    return f"z_{sid}_{did}"


def persist_set(sid: str, did: str, settings: ServiceSettings) -> str:
    return f"p_{sid}_{did}_{_h(f'{settings.persistent}|{settings.netmask}', 6)}"


def ingress_chain(device: str) -> str:
    """The base chain hooked on a NIC's ingress (direct routing)."""
    return f"in_{_h(device, 8)}"


def _opt(value: object) -> str:
    return "-" if value is None else quote(str(value), safe="")


def _unopt(text: str) -> str | None:
    return None if text == "-" else unquote(text)


#: the protocols and forwarding methods a comment can name (any other word: not a comment Saru wrote)
_PROTOCOLS: dict[str, Protocol] = {"tcp": "tcp", "udp": "udp", "fwm": "fwm"}
_FORWARDS: dict[str, Forward] = {"gate": "gate", "masq": "masq", "ipip": "ipip"}


def service_comment(service: Service) -> str:
    k, s = service.key, service.settings
    text = (f"saru S {k.protocol} {k.family} {_opt(k.address or None)} {k.port} {_opt(k.fwmark)} "
            f"{_opt(s.scheduler)} {_opt(s.persistent)} {_opt(s.netmask)} {_opt(s.schedflags)} {int(s.ops)}")
    if len(text) > COMMENT_MAX:
        raise RenderError(f"{k}: service settings too long to record in nftables")
    return text


def dest_comment(dest: Dest, state: str) -> str:
    text = (f"saru D {dest.forward} {dest.address} {dest.port} {dest.weight} {dest.upper_threshold} "
            f"{dest.lower_threshold} {state}")
    if len(text) > COMMENT_MAX:
        raise RenderError(f"destination {dest.hostport}: too long to record in nftables")
    return text


def parse_service_comment(text: str) -> Service | None:
    parts = text.split(" ")
    if len(parts) != 12 or parts[:2] != ["saru", "S"]:
        return None
    _, _, proto, family, address, port, fwmark, sched, persistent, netmask, schedflags, ops = parts
    protocol = _PROTOCOLS.get(proto)
    if protocol is None:
        return None
    fw = _unopt(fwmark)
    pers = _unopt(persistent)
    try:  # a comment anyone wrote with nft: not a number where one belongs, not Saru's record
        key = ServiceKey(protocol, _unopt(address) or "", int(port), int(fw) if fw is not None else None,
                         int(family))
        persistence = int(pers) if pers is not None else None
    except ValueError:
        return None
    settings = ServiceSettings(
        scheduler=_unopt(sched) or "wrr",
        persistent=persistence,
        netmask=_unopt(netmask),
        schedflags=_unopt(schedflags),
        ops=ops == "1",
    )
    return Service(key, settings, {})


def real_comment(dest: Dest) -> str:
    """The metadata of a map-scheduled (masq) real on its map elements; the element itself holds
    the address and port (short: 10,000 of these are parsed by libnftables in one apply)."""
    return f"saru R {dest.weight} {dest.upper_threshold} {dest.lower_threshold} {dest.port}"


def parse_real_comment(text: str, address: str | None) -> tuple[Dest, str] | None:
    """A real from a map element's comment (``real_comment``, or a full ``dest_comment``) and the
    address the element holds."""
    parts = text.split(" ")
    if len(parts) == 6 and parts[:2] == ["saru", "R"] and address is not None:
        try:
            weight, upper, lower, port = (int(x) for x in parts[2:])
        except ValueError:
            return None
        return Dest(address, port, "masq", weight, upper, lower), "live"
    return parse_dest_comment(text)


def parse_dest_comment(text: str) -> tuple[Dest, str] | None:
    parts = text.split(" ")
    if len(parts) != 9 or parts[:2] != ["saru", "D"]:
        return None
    _, _, method, address, port, weight, upper, lower, state = parts
    forward = _FORWARDS.get(method)
    if forward is None:
        return None
    try:
        dest = Dest(address, int(port), forward, int(weight), int(upper), int(lower))
    except ValueError:  # not Saru's record (see parse_service_comment)
        return None
    return dest, state
