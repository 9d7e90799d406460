"""Saru's tables read back from nft's JSON listing: the ``Table``, the objects, the counters (pure).

``parse`` reads the table from the rule comments (``names``) and the reals of map-scheduled services
from the comments of their map elements, so a restart with nothing changed writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from saru.dataplane.nft.names import dest_id, parse_dest_comment, parse_real_comment, parse_service_comment
from saru.dataplane.nft.offload import listed_spec
from saru.dataplane.nft.slots import PARK
from saru.dataplane.nft.transaction import UNKNOWN, Existing
from saru.model import Dest, Service, ServiceKey, Table

__all__ = ["DestCounters", "Listing", "parse"]


@dataclass(frozen=True)
class DestCounters:
    """Counters of one destination read from the kernel."""

    connections: int = 0
    packets: int = 0
    bytes: int = 0


@dataclass(frozen=True)
class Listing:
    """Saru's tables as read back from the kernel."""

    table: Table
    existing: Existing
    draining: Mapping[ServiceKey, Mapping[tuple[str, int], Dest]]
    service_counters: Mapping[ServiceKey, tuple[int, int]]  # packets, bytes
    dest_counters: Mapping[tuple[ServiceKey, tuple[str, int]], DestCounters]
    #: map-scheduled services: the real owning each slot (slot order)
    slot_owners: Mapping[ServiceKey, list[tuple[str, int]]] = field(default_factory=dict)


def _counter(expr: Iterable[object]) -> tuple[int, int]:
    for e in expr:
        if isinstance(e, dict) and "counter" in e and isinstance(e["counter"], dict):
            return int(e["counter"].get("packets", 0)), int(e["counter"].get("bytes", 0))
    return 0, 0


def parse(documents: Iterable[Mapping[str, Any]]) -> Listing:
    """Saru's tables from ``nft -j list table …`` outputs (one document per table)."""
    chains: dict[str, set[str]] = {}
    sets: dict[str, set[str]] = {}
    maps: dict[str, set[str]] = {}
    flowtables: dict[str, dict[str, str]] = {}
    services: dict[str, Service] = {}  # sid → service (dests added below)
    service_counters: dict[str, tuple[int, int]] = {}
    dests: dict[str, list[tuple[Dest, str, tuple[int, int]]]] = {}
    new_counts: dict[tuple[str, str], int] = {}
    slots_of: dict[str, list[tuple[int, tuple[str, int]]]] = {}
    for doc in documents:
        for item in doc.get("nftables", []):
            if "table" in item:
                chains.setdefault(item["table"]["family"], set())
            elif "chain" in item:
                chains.setdefault(item["chain"]["family"], set()).add(item["chain"]["name"])
            elif "flowtable" in item:
                obj = item["flowtable"]
                flowtables.setdefault(obj["family"], {})[str(obj["name"])] = listed_spec(obj) or UNKNOWN
            elif "set" in item or "map" in item:
                obj = item.get("set") or item["map"]
                sets.setdefault(obj["family"], set()).add(obj["name"])
                if "map" in item:
                    maps.setdefault(obj["family"], set()).add(obj["name"])
                name = str(obj["name"])
                if name[:2] in ("m_", "r_"):
                    for slot, comment, real in _element_comments(obj.get("elem", [])):
                        parsed = parse_real_comment(comment, real)
                        if parsed is not None:
                            dests.setdefault(name[2:], []).append((*parsed, (-1, -1)))
                            if slot is not None:
                                slots_of.setdefault(name[2:], []).append((slot, parsed[0].key))
            elif "rule" in item:
                rule = item["rule"]
                chain = str(rule.get("chain", ""))
                comment = rule.get("comment")
                parts = chain.split("_")
                if comment and chain.startswith("s_"):
                    service = parse_service_comment(comment)
                    if service is not None:
                        services[parts[1]] = service
                        service_counters[parts[1]] = _counter(rule.get("expr", []))
                elif comment and chain.startswith("d_") and len(parts) == 3:
                    parsed = parse_dest_comment(comment)
                    if parsed is not None:
                        dests.setdefault(parts[1], []).append((*parsed, _counter(rule.get("expr", []))))
                elif chain.startswith("n_") and len(parts) == 3:
                    new_counts[(parts[1], parts[2])] = _counter(rule.get("expr", []))[0]
    table: dict[ServiceKey, Service] = {}
    draining: dict[ServiceKey, dict[tuple[str, int], Dest]] = {}
    svc_counters: dict[ServiceKey, tuple[int, int]] = {}
    dest_counters: dict[tuple[ServiceKey, tuple[str, int]], DestCounters] = {}
    owners: dict[ServiceKey, list[tuple[str, int]]] = {}
    for sid, service in services.items():
        live = {}
        for dest, state, (packets, nbytes) in dests.get(sid, []):
            if state == "drain":
                draining.setdefault(service.key, {})[dest.key] = dest
                continue
            live[dest.key] = dest
            if packets < 0:  # recorded in a map: no counter of its own
                continue
            conns = new_counts.get((sid, dest_id(dest.key)), packets)
            dest_counters[(service.key, dest.key)] = DestCounters(conns, packets, nbytes)
        table[service.key] = Service(service.key, service.settings, live)
        svc_counters[service.key] = service_counters.get(sid, (0, 0))
        if sid in slots_of:
            owners[service.key] = [dkey for _, dkey in sorted(slots_of[sid])]
    existing = Existing({f: frozenset(c) for f, c in chains.items()},
                        {f: frozenset(s) for f, s in sets.items()},
                        {f: frozenset(m) for f, m in maps.items()}, flowtables)
    return Listing(Table(table), existing, draining, svc_counters, dest_counters, owners)


def _element_comments(elements: Iterable[Any]) -> Iterable[tuple[int | None, str, str | None]]:
    """(slot or None, comment, the real's address) of the elements of a slot map or of
    a set of reals, in nft's JSON listing (map element: ``[{"elem": {"val": slot, "comment": …}},
    value]``; set element: ``{"elem": {"val": {"concat": [address, port]}, "comment": …}}``)."""
    for entry in elements:
        is_map = isinstance(entry, list) and len(entry) == 2
        head = entry[0] if is_map else entry
        if not (isinstance(head, dict) and isinstance(head.get("elem"), dict)):
            continue
        comment, val = head["elem"].get("comment"), head["elem"].get("val")
        if not isinstance(comment, str):
            continue
        real = _real(entry[1] if is_map else val)
        yield (val if is_map and isinstance(val, int) and val < PARK else None), comment, real


def _real(value: object) -> str | None:
    """The address in a slot map's value (address, or address . port) or a set's key."""
    if isinstance(value, str):
        return value
    parts = value.get("concat") if isinstance(value, dict) else None
    return str(parts[0]) if isinstance(parts, list) and parts else None
