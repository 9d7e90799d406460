"""``saru doctor``'s firewalld item: does a running firewalld let in what two Saru directors exchange?

What Saru needs from the host firewall (``Opening``, from saru.toml): VRRP (IP protocol 112) on the
``[ha]`` interface, the HTTP API's port when ``[api] listen`` is reachable from other hosts, and the IPVS
sync port (UDP) on the ``[ipvs.sync]`` interface — what the shipped firewalld service ``saru``
(packaging/firewalld/saru.xml) opens. The load-balanced virtual services are the site's own firewalld
services (http, https…) and are not judged here.

This module is pure: it reads firewalld's own answers (``firewall-cmd --get-default-zone``,
``--list-all-zones``, ``--info-service=NAME``; ``parse_zones``, ``parse_service``) and judges each
opening in the zone of its interface (``judge``): allowed by the zone's target (``ACCEPT``: trusted), a
protocol or port of the zone, or one of the zone's services. Not allowed and the zone has rich rules:
a warning (a rich rule may allow it; not evaluated). ``saru.setup.doctor_run`` asks firewalld
(``firewall-cmd`` exec'd without a shell through ``saru.subproc``) and calls these.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from saru.model import Settings
from saru.setup.item import Item

#: firewalld's name of IP protocol 112 (/etc/protocols), and its number
VRRP_NAMES = frozenset({"vrrp", "112"})
#: the shipped firewalld service and what it opens
SERVICE = "saru"
SERVICE_PORTS = frozenset({"9180/tcp", "8848/udp"})


@dataclass(frozen=True)
class Opening:
    """Something Saru needs let in: ``kind`` ``protocol`` (``value`` vrrp) or ``port`` (``value``
    ``PORT/tcp|udp``), on ``interface`` (None: the interface holding ``address``, else the default zone)."""

    what: str
    kind: str
    value: str
    interface: str | None = None
    address: str | None = None


def openings(settings: Settings | None) -> tuple[Opening, ...]:
    """What saru.toml makes Saru need from the host firewall (pure)."""
    if settings is None:
        return ()
    found: list[Opening] = []
    if settings.ha is not None:
        found.append(Opening("VRRP (IP protocol 112)", "protocol", "vrrp", interface=settings.ha.interface))
    api = settings.api.endpoint if settings.api is not None else None
    if api is not None and not api.loopback:
        wildcard = api.host in ("0.0.0.0", "::")
        found.append(Opening(f"the API ({api})", "port", f"{api.port}/tcp", address=None if wildcard else api.host))
    if settings.ipvs_sync is not None:
        found.append(Opening("IPVS connection sync", "port", f"{settings.ipvs_sync.port}/udp",
                             interface=settings.ipvs_sync.interface))
    return tuple(found)


@dataclass
class Zone:
    """One firewalld zone as ``--list-all-zones`` shows it."""

    name: str
    target: str = "default"
    interfaces: list[str] = field(default_factory=list)
    services: list[str] = field(default_factory=list)
    ports: list[str] = field(default_factory=list)
    protocols: list[str] = field(default_factory=list)
    rich_rules: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ServiceInfo:
    """One firewalld service (``--info-service=NAME``): its ports, protocols and included services."""

    ports: tuple[str, ...] = ()
    protocols: tuple[str, ...] = ()
    includes: tuple[str, ...] = ()


def _fields(lines: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    last = ""
    for line in lines:
        key, sep, value = line.strip().partition(":")
        if sep and line.startswith("  ") and not line.startswith("\t") and " " not in key.replace(" rules", ""):
            last = key
            out[key] = value.strip()
        elif last == "rich rules" and line.strip():  # one rich rule per line
            out[last] = (out[last] + "\n" + line.strip()).strip()
    return out


def parse_zones(text: str) -> dict[str, Zone]:
    """``firewall-cmd --list-all-zones``: zone name lines (``public (active)``), then indented fields."""
    zones: dict[str, Zone] = {}
    blocks: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line and not line[0].isspace():
            blocks.append((line.split()[0], []))
        elif blocks and line.strip():
            blocks[-1][1].append(line)
    for name, lines in blocks:
        f = _fields(lines)
        zones[name] = Zone(name, f.get("target", "default") or "default", f.get("interfaces", "").split(),
                           f.get("services", "").split(), f.get("ports", "").split(), f.get("protocols", "").split(),
                           [r for r in f.get("rich rules", "").splitlines() if r.strip()])
    return zones


def parse_service(text: str) -> ServiceInfo:
    """``firewall-cmd --info-service=NAME``: the name line, then indented fields."""
    f = _fields(text.splitlines()[1:])
    return ServiceInfo(tuple(f.get("ports", "").split()), tuple(f.get("protocols", "").split()),
                       tuple(f.get("includes", "").split()))


def port_covered(wanted: str, specs: Sequence[str]) -> bool:
    """Whether ``PORT/proto`` is in one of firewalld's ``PORT/proto`` or ``LOW-HIGH/proto`` entries."""
    port_text, _, proto = wanted.partition("/")
    port = int(port_text)
    for spec in specs:
        numbers, _, spec_proto = spec.partition("/")
        if spec_proto != proto:
            continue
        low, _, high = numbers.partition("-")
        if low.isdigit() and int(low) <= port <= int(high if high.isdigit() else low):
            return True
    return False


def _allows(opening: Opening, ports: Sequence[str], protocols: Sequence[str]) -> bool:
    if opening.kind == "protocol":
        return any(p.lower() in VRRP_NAMES for p in protocols)
    return port_covered(opening.value, ports)


def zone_of(opening: Opening, zones: Mapping[str, Zone], default: str, local: Mapping[str, str]) -> Zone | None:
    """The zone whose traffic the opening is: that of its interface (or of the interface holding its
    address), else the default zone (where firewalld puts an interface no zone names)."""
    interface = opening.interface or (local.get(opening.address) if opening.address else None)
    if interface:
        for zone in zones.values():
            if interface in zone.interfaces:
                return zone
    return zones.get(default)


def judge(wanted: Sequence[Opening], zones: Mapping[str, Zone], default: str, local: Mapping[str, str],
          service: Callable[[str], ServiceInfo | None]) -> list[Item]:
    """One item per opening: does firewalld's runtime configuration let it in? ``service(name)`` is
    ``--info-service`` (None: unknown); ``local`` maps this host's addresses to their interfaces."""
    items: list[Item] = []
    for opening in wanted:
        zone = zone_of(opening, zones, default, local)
        where = opening.interface or opening.address or "any interface"
        name = f"firewalld lets {opening.what} in on {where}"
        if zone is None:
            items.append(Item(name, "warn", f"firewalld names no zone for it (default zone {default!r} not listed)"))
            continue
        how = _how(opening, zone, service)
        if how:
            items.append(Item(name, "ok", f"zone {zone.name}: {how}"))
        elif zone.rich_rules:
            items.append(Item(name, "warn", f"zone {zone.name} opens no {opening.value} by target, service, port or "
                                            f"protocol; its {len(zone.rich_rules)} rich rule(s) may (not evaluated)"))
        else:
            items.append(Item(name, "fail", f"zone {zone.name} (target {zone.target}) drops it: no service, port or "
                                            f"protocol opens {opening.value}", _fix(opening, zone.name, service)))
    return items


def _how(opening: Opening, zone: Zone, service: Callable[[str], ServiceInfo | None]) -> str:
    if zone.target == "ACCEPT":
        return "target ACCEPT"
    if _allows(opening, zone.ports, zone.protocols):
        return f"{opening.kind} {opening.value}"
    seen: set[str] = set()
    todo = list(zone.services)
    while todo:
        name = todo.pop(0)
        if name in seen:
            continue
        seen.add(name)
        info = service(name)
        if info is None:
            continue
        if _allows(opening, info.ports, info.protocols):
            return f"service {name}"
        todo.extend(info.includes)
    return ""


def _fix(opening: Opening, zone: str, service: Callable[[str], ServiceInfo | None]) -> str:
    ours = service(SERVICE)
    if ours is not None and _allows(opening, ours.ports, ours.protocols):
        change = f"--add-service={SERVICE}"
    elif opening.kind == "protocol":
        change = "--add-protocol=vrrp"
    else:
        change = f"--add-port={opening.value}"
    return f"firewall-cmd --permanent --zone={zone} {change} && firewall-cmd --reload"
