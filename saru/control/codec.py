"""Tables, ops and service keys as plain JSON-able values: how they cross the control socket.

A ``ServiceKey`` has one wire form, ``key_to_dict``'s object (protocol, address, port, fwmark,
family), wherever it appears in a request or an answer; ``key_from_dict`` reads it back. ``saru plan``
also prints tables in this form.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict, assert_never

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
    Protocol,
    Service,
    ServiceKey,
    ServiceSettings,
    Table,
)


class ServiceKeyDict(TypedDict):
    """A ``ServiceKey`` on the wire (its one form there)."""

    protocol: str
    address: str
    port: int
    fwmark: int | None
    family: int


def key_to_dict(key: ServiceKey) -> ServiceKeyDict:
    return {"protocol": key.protocol, "address": key.address, "port": key.port,
            "fwmark": key.fwmark, "family": key.family}


#: the largest weight a request may set (ipvsadm's and ldirectord.cf's limit)
MAX_WEIGHT = 65535
_U32 = 0xFFFFFFFF
_I32 = 0x7FFFFFFF
_PROTOCOLS: tuple[Protocol, ...] = ("tcp", "udp", "fwm")
_FORWARDS: tuple[Forward, ...] = ("gate", "masq", "ipip")


def _mapping(data: object, where: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: expected an object, got {type(data).__name__}")
    return data


def _int(data: Mapping[str, Any], name: str, low: int, high: int, where: str, default: int | None = None) -> int:
    value = data.get(name, default)
    if type(value) is not int or not low <= value <= high:  # bool is not a number here
        raise ValueError(f"{where}.{name}: expected a whole number {low}-{high}, got {value!r}")
    return value


def _optional_int(data: Mapping[str, Any], name: str, low: int, high: int, where: str) -> int | None:
    return None if data.get(name) is None else _int(data, name, low, high, where)


def _str(data: Mapping[str, Any], name: str, where: str, default: str | None = None) -> str:
    value = data.get(name, default)
    if not isinstance(value, str):
        raise ValueError(f"{where}.{name}: expected a string, got {value!r}")
    return value


def _optional_str(data: Mapping[str, Any], name: str, where: str) -> str | None:
    return None if data.get(name) is None else _str(data, name, where)


def _choice(value: object, choices: tuple[str, ...], what: str) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{what}: expected one of {', '.join(choices)}, got {value!r}")
    return value


def key_from_dict(data: object, where: str = "service") -> ServiceKey:
    """The inverse of key_to_dict; ``ValueError`` saying which field is wrong on malformed input
    (types are checked, not coerced: a request's ``"port": "80"`` is refused, not read as 80)."""
    fields = _mapping(data, where)
    protocol = next(p for p in _PROTOCOLS if p == _choice(fields.get("protocol"), _PROTOCOLS, f"{where}.protocol"))
    family = _int(fields, "family", 4, 6, where, default=4)
    if family not in (4, 6):
        raise ValueError(f"{where}.family: expected 4 or 6, got {family!r}")
    return ServiceKey(protocol, _str(fields, "address", where), _int(fields, "port", 0, 65535, where),
                      _optional_int(fields, "fwmark", 1, _U32, where), family)


def table_to_list(table: Table) -> list[dict[str, Any]]:
    out = []
    for service in table.services.values():
        out.append({
            "service": key_to_dict(service.key),
            "settings": _settings_dict(service.settings),
            "dests": [_dest_dict(d) for d in service.dests.values()],
        })
    return out


def table_from_list(data: list[dict[str, Any]]) -> Table:
    services = []
    for item in data:
        dests = [Dest(**d) for d in item["dests"]]
        services.append(Service(key_from_dict(item["service"]), ServiceSettings(**item["settings"]),
                                {d.key: d for d in dests}))
    return Table.of(services)


def op_to_dict(op: Op) -> dict[str, Any]:
    """One op as a JSON-able dict (``saru ipvsadm`` sends them over the control socket)."""
    data: dict[str, Any] = {"op": type(op).__name__, "service": key_to_dict(op.service)}
    match op:
        case AddService() | EditService():
            data["settings"] = _settings_dict(op.settings)
        case AddDest() | EditDest():
            data["dest"] = _dest_dict(op.dest)
        case DelDest():
            data["address"], data["port"] = op.address, op.port
        case DelService():
            pass
        case _:
            assert_never(op)
    return data


def _settings_dict(s: ServiceSettings) -> dict[str, Any]:
    return {"scheduler": s.scheduler, "persistent": s.persistent, "netmask": s.netmask,
            "schedflags": s.schedflags, "ops": s.ops}


def _dest_dict(d: Dest) -> dict[str, Any]:
    return {"address": d.address, "port": d.port, "forward": d.forward, "weight": d.weight,
            "upper_threshold": d.upper_threshold, "lower_threshold": d.lower_threshold}


_SETTINGS_FIELDS = frozenset({"scheduler", "persistent", "netmask", "schedflags", "ops"})
_DEST_FIELDS = frozenset({"address", "port", "forward", "weight", "upper_threshold", "lower_threshold"})


def _known_fields(data: Mapping[str, Any], known: frozenset[str], where: str) -> None:
    unknown = sorted(str(k) for k in data if k not in known)
    if unknown:
        raise ValueError(f"{where}: unknown field {unknown[0]!r} (known: {', '.join(sorted(known))})")


def _settings_from_dict(raw: object, where: str) -> ServiceSettings:
    data = _mapping(raw, where)
    _known_fields(data, _SETTINGS_FIELDS, where)
    ops = data.get("ops", False)
    if not isinstance(ops, bool):
        raise ValueError(f"{where}.ops: expected true or false, got {ops!r}")
    return ServiceSettings(scheduler=_str(data, "scheduler", where, default="wrr"),
                           persistent=_optional_int(data, "persistent", 0, _U32, where),
                           netmask=_optional_str(data, "netmask", where),
                           schedflags=_optional_str(data, "schedflags", where), ops=ops)


def _dest_from_dict(raw: object, where: str) -> Dest:
    data = _mapping(raw, where)
    _known_fields(data, _DEST_FIELDS, where)
    forward = next(f for f in _FORWARDS if f == _choice(data.get("forward", "gate"), _FORWARDS, f"{where}.forward"))
    return Dest(_str(data, "address", where), _int(data, "port", 0, 65535, where), forward,
                _int(data, "weight", 0, MAX_WEIGHT, where, default=1),
                _int(data, "upper_threshold", 0, _I32, where, default=0),
                _int(data, "lower_threshold", 0, _I32, where, default=0))


def op_from_dict(raw: object, where: str = "op") -> Op:
    """The inverse of op_to_dict; ``ValueError`` saying which field is wrong on malformed input (the
    types and ranges every data plane shares; each plane still refuses what it cannot express)."""
    data = _mapping(raw, where)
    key = key_from_dict(data.get("service"), f"{where}.service")
    kind = data.get("op")
    if kind in ("AddService", "EditService"):
        cls = AddService if kind == "AddService" else EditService
        return cls(key, _settings_from_dict(data.get("settings"), f"{where}.settings"))
    if kind in ("AddDest", "EditDest"):
        dcls = AddDest if kind == "AddDest" else EditDest
        return dcls(key, _dest_from_dict(data.get("dest"), f"{where}.dest"))
    if kind == "DelDest":
        return DelDest(key, _str(data, "address", where), _int(data, "port", 0, 65535, where))
    if kind == "DelService":
        return DelService(key)
    raise ValueError(f"{where}.op: unknown op {kind!r} (known: AddService, EditService, DelService, AddDest, "
                     "EditDest, DelDest)")
