"""The metrics snapshot: every number ``GET /metrics`` shows, as typed values, built from the
daemon's state by one pure function (``build``); ``saru.api.metrics`` renders it.

A real's ``state`` is one of HAProxy's (PROMEX's ``haproxy_server_status``):

* ``MAINT`` — in maintenance (a ``maintenancedir`` file) or disabled by an operator;
* ``DRAIN`` — weight 0 while in service: drained by an operator, configured with weight 0, or down
  by its check but kept at weight 0 by a ``quiescent`` virtual (existing connections stay);
* ``DOWN`` — its check says down (or, unchecked, it is not in the table);
* ``UP`` — its check says up (or ``checktype=on``; unchecked, it is in the table with a weight).

The weight is the one in the data plane (0 when the real is not in the table: down, or an HA
backup). Check statistics come from ``saru.daemon.realstats``; connections and the
``node_ipvs_*``-shaped totals and per-backend series from the plane's counters (``ipvs`` is
``None`` on the IPVS plane: node_exporter already reads the kernel's, and they are not doubled).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from saru.checks.result_class import result_class
from saru.daemon.histogram import HistogramSnapshot
from saru.daemon.realstats import RealStats
from saru.dataplane.base import DestStats, ServiceStats
from saru.model import Config, RealRef, ServiceKey, Table
from saru.monitor import RealHealth
from saru.planner import dest_port

if TYPE_CHECKING:
    from saru.ha.node import HASnapshot

#: saru_server_status's states, in the order they are listed
STATES = ("UP", "DOWN", "DRAIN", "MAINT")
#: keepalived-exporter's numbers for the VRRP states
VRRP_STATES = {"init": 0, "backup": 1, "master": 2, "fault": 3}
#: operator states a real can be put in (``admin`` below): out of the table, or weight 0
ADMIN_DISABLED = "disabled"
ADMIN_DRAINED = "drained"
#: checktypes that run no check (no result class, no duration)
UNCHECKED = frozenset({"on", "off"})


class ServerMetrics(NamedTuple):
    """One real of one virtual service (the metrics name them with ``saru.api.names``)."""

    service: ServiceKey
    address: str
    port: int  # as configured
    state: str  # one of STATES
    weight: int  # in the data plane; 0 when not in the table
    check_class: str | None  # the last check's class (saru.checks.result_class); None: no check ran
    check_duration: float | None  # seconds the last check took
    failures: int  # failed checks since the start
    up_down: int  # UP -> DOWN transitions since the start
    last_change_age: float  # seconds since the last UP<->DOWN change (since the start when none)
    downtime: float  # seconds down since the start
    active: int  # connections
    inactive: int


class BackendMetrics(NamedTuple):
    """One destination of the plane's table, in node_exporter's IPVS collector's labels."""

    local_address: str  # the virtual's address ('' for a firewall-mark service)
    local_port: int  # 0 for a firewall-mark service
    remote_address: str
    remote_port: int
    proto: str  # TCP, UDP or FWM
    local_mark: str  # the mark as /proc/net/ip_vs prints it (%08X); '' otherwise
    active: int
    inactive: int
    weight: int


@dataclass(frozen=True)
class IpvsTotals:
    """node_exporter's ``node_ipvs_*_total`` over every service of the plane."""

    connections: int
    packets_in: int
    packets_out: int
    bytes_in: int
    bytes_out: int


@dataclass(frozen=True)
class VrrpMetrics:
    vrid: int
    interface: str
    state: int  # VRRP_STATES
    become_master: int
    release_master: int
    adverts_received: int
    adverts_sent: int
    split_brain: int


@dataclass(frozen=True)
class IpvsView:
    """The ``node_ipvs_*`` series (nftables and proxy planes)."""

    totals: IpvsTotals
    backends: tuple[BackendMetrics, ...]


@dataclass(frozen=True)
class MetricsSnapshot:
    """Everything ``/metrics`` shows (see the module docstring)."""

    version: str
    dataplane: str
    servers: tuple[ServerMetrics, ...]
    active_servers: tuple[tuple[ServiceKey, int], ...]  # (virtual, its reals UP), every virtual
    vrrp: VrrpMetrics | None
    reloads_ok: int
    reloads_failed: int
    last_reload_success: float  # wall clock
    apply_durations: HistogramSnapshot
    ipvs: IpvsView | None


def server_state(health: RealHealth | None, checktype: str, quiescent: bool, weight: int | None,
                 configured_weight: int, admin: str | None = None) -> str:
    """The PROMEX state of one real (the module docstring's rules); ``weight``: in the table or None."""
    if admin == ADMIN_DISABLED or (health is not None and health.maintenance):
        return "MAINT"
    up = True if checktype == "on" else (health.up if health is not None else None)
    if up is True:
        current = weight if weight is not None else configured_weight
        return "DRAIN" if current == 0 or admin == ADMIN_DRAINED else "UP"
    if up is False:
        return "DRAIN" if quiescent else "DOWN"
    if weight is None:
        return "DOWN"
    return "DRAIN" if weight == 0 or admin == ADMIN_DRAINED else "UP"


def _check(health: RealHealth | None) -> tuple[str | None, float | None]:
    if health is None or health.maintenance or health.checktype in UNCHECKED or health.last_result is None:
        return None, None
    result = health.last_result
    checktype = "negotiate" if health.checktype == "combined" else health.checktype
    return result_class(result, checktype), result.latency


def servers(config: Config, health: Mapping[RealRef, RealHealth], table: Table,
            stats: Mapping[ServiceKey, ServiceStats], realstats: RealStats, rewrite: bool,
            admin: Mapping[RealRef, str]) -> list[ServerMetrics]:
    """Every configured real of every virtual, with its state, check statistics and connections."""
    now = realstats.now()
    none = DestStats()
    found: list[ServerMetrics] = []
    for v in config.virtuals:
        vkey = v.key  # (a property that makes a new key each time)
        service = table.services.get(vkey)
        dests = service.dests if service is not None else {}
        service_stats = stats.get(vkey)
        dest_stats = service_stats.dests if service_stats is not None else {}
        for r in v.reals:
            ref = RealRef(vkey, r.address, r.port)
            real_health = health.get(ref)
            key = (r.address, dest_port(v, r.forward, r.port, rewrite))
            dest = dests.get(key)
            weight = dest.weight if dest is not None else None
            counts = realstats.read(ref, now)
            check_class, duration = _check(real_health)
            conns = dest_stats.get(key, none)
            found.append(ServerMetrics(
                vkey, r.address, r.port,
                server_state(real_health, v.checktype, v.quiescent, weight, r.weight,
                             admin.get(ref) if admin else None),
                weight or 0, check_class, duration, counts.failures, counts.up_down, counts.last_change_age,
                counts.downtime, conns.active_connections, conns.inactive_connections))
    return found


def active_servers(config: Config, found: list[ServerMetrics]) -> tuple[tuple[ServiceKey, int], ...]:
    """Reals UP per virtual, every virtual listed."""
    counts = {v.key: 0 for v in config.virtuals}
    for s in found:
        if s.state == "UP":
            counts[s.service] += 1
    return tuple(counts.items())


def ipvs_view(table: Table, stats: Mapping[ServiceKey, ServiceStats]) -> IpvsView:
    """node_exporter's IPVS series for a plane node_exporter cannot read (nftables, proxy)."""
    none = DestStats()
    backends: list[BackendMetrics] = []
    for key, service in table.services.items():
        fwm = key.protocol == "fwm"
        service_stats = stats.get(key)
        dest_stats = service_stats.dests if service_stats is not None else {}
        for dkey, dest in service.dests.items():
            conns = dest_stats.get(dkey, none)
            backends.append(BackendMetrics(
                "" if fwm else key.address, 0 if fwm else key.port, dest.address, dest.port,
                key.protocol.upper(), f"{key.fwmark or 0:08X}" if fwm else "",
                conns.active_connections, conns.inactive_connections, dest.weight))
    totals = IpvsTotals(
        connections=sum(s.connections for s in stats.values()),
        packets_in=sum(s.packets_in for s in stats.values()),
        packets_out=sum(s.packets_out for s in stats.values()),
        bytes_in=sum(s.bytes_in for s in stats.values()),
        bytes_out=sum(s.bytes_out for s in stats.values()),
    )
    return IpvsView(totals, tuple(backends))


def vrrp(ha: HASnapshot | None) -> VrrpMetrics | None:
    """The VRRP node's series from its snapshot (None without ``[ha] mode = "vrrp"``)."""
    if ha is None or ha.get("mode", "vrrp") != "vrrp":
        return None
    counters = ha.get("vrrp") or {}
    events = ha.get("events") or {}
    return VrrpMetrics(
        vrid=ha["vrid"], interface=ha["interface"], state=VRRP_STATES.get(ha["state"], 0),
        become_master=ha.get("become_master", 0), release_master=ha.get("release_master", 0),
        adverts_received=counters.get("adverts_received", 0), adverts_sent=counters.get("adverts_sent", 0),
        split_brain=events.get("split_brains", 0),
    )


def build(*, version: str, dataplane: str, config: Config, health: Mapping[RealRef, RealHealth], table: Table,
          stats: Mapping[ServiceKey, ServiceStats], realstats: RealStats, rewrite: bool, ha: HASnapshot | None,
          reloads_ok: int, reloads_failed: int, last_reload_success: float, apply_durations: HistogramSnapshot,
          admin: Mapping[RealRef, str] | None = None) -> MetricsSnapshot:
    """The snapshot (see the module docstring); ``admin``: operator states (ADMIN_*) by real."""
    found = servers(config, health, table, stats, realstats, rewrite, admin or {})
    return MetricsSnapshot(
        version=version, dataplane=dataplane, servers=tuple(found), active_servers=active_servers(config, found),
        vrrp=vrrp(ha), reloads_ok=reloads_ok, reloads_failed=reloads_failed,
        last_reload_success=last_reload_success, apply_durations=apply_durations,
        ipvs=None if dataplane == "ipvs" else ipvs_view(table, stats),
    )
