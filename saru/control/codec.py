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
    Op,
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


def key_from_dict(data: Mapping[str, Any]) -> ServiceKey:
    """The inverse of key_to_dict; raises ValueError/KeyError/TypeError on malformed input."""
    return ServiceKey(data["protocol"], data["address"], int(data["port"]), data.get("fwmark"),
                      int(data.get("family", 4)))


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


def op_from_dict(data: dict[str, Any]) -> Op:
    """The inverse of op_to_dict; raises ValueError/KeyError/TypeError on malformed input."""
    key = key_from_dict(data["service"])
    kind = data["op"]
    if kind in ("AddService", "EditService"):
        cls = AddService if kind == "AddService" else EditService
        return cls(key, ServiceSettings(**data["settings"]))
    if kind in ("AddDest", "EditDest"):
        dcls = AddDest if kind == "AddDest" else EditDest
        return dcls(key, Dest(**data["dest"]))
    if kind == "DelDest":
        return DelDest(key, str(data["address"]), int(data["port"]))
    if kind == "DelService":
        return DelService(key)
    raise ValueError(f"unknown op {kind!r}")
