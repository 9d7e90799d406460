"""Forwarding tables to and from plain JSON-able dicts (control socket, ``saru plan``)."""

from __future__ import annotations

from typing import Any

from saru.model import Dest, Service, ServiceKey, ServiceSettings, Table


def key_to_dict(key: ServiceKey) -> dict[str, Any]:
    return {"protocol": key.protocol, "address": key.address, "port": key.port,
            "fwmark": key.fwmark, "family": key.family}


def key_from_dict(data: dict[str, Any]) -> ServiceKey:
    return ServiceKey(data["protocol"], data["address"], int(data["port"]), data.get("fwmark"),
                      int(data.get("family", 4)))


def table_to_list(table: Table) -> list[dict[str, Any]]:
    out = []
    for service in table.services.values():
        s = service.settings
        out.append({
            "service": key_to_dict(service.key),
            "settings": {"scheduler": s.scheduler, "persistent": s.persistent, "netmask": s.netmask,
                         "schedflags": s.schedflags, "ops": s.ops},
            "dests": [{"address": d.address, "port": d.port, "forward": d.forward, "weight": d.weight,
                       "upper_threshold": d.upper_threshold, "lower_threshold": d.lower_threshold}
                      for d in service.dests.values()],
        })
    return out


def table_from_list(data: list[dict[str, Any]]) -> Table:
    services = []
    for item in data:
        dests = [Dest(**d) for d in item["dests"]]
        services.append(Service(key_from_dict(item["service"]), ServiceSettings(**item["settings"]),
                                {d.key: d for d in dests}))
    return Table.of(services)
