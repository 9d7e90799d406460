"""The metrics snapshot: every number ``GET /metrics`` shows, as typed values, built from the
daemon's state by one pure function (``build``); ``saru.api.metrics`` renders it.

A real's ``state`` is one of HAProxy's (PROMEX's ``haproxy_server_status``), the same word the
status document shows (``saru.daemon.status.status_word``): ``MAINT`` (a ``maintenancedir`` file, or
disabled by an operator), ``DOWN`` (its check fails, quiescent or not), ``DRAIN`` (its check passes
but it gets no new connections: weight 0, by an operator or the config), else ``UP``; a real with
no verdict (``checktype=off``, not checked yet) is judged by the table.

The weight is the one in the data plane (0 when the real is not in the table: down, or an HA
backup). The verdicts, last results and check statistics come from ``saru.daemon.realstats`` (fed
by every result the monitor reports, with the verdict after it; ``checktype=on/off`` reals get no
results and are judged by their checktype); connections and the
``node_ipvs_*``-shaped totals and per-backend series from the plane's counters (``ipvs`` is
``None`` on the IPVS plane: node_exporter already reads the kernel's, and they are not doubled).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from saru.checks.base import LOCAL_FAULT_REASONS
from saru.daemon.histogram import HistogramSnapshot
from saru.daemon.realstats import RealStats
from saru.daemon.status import status_word
from saru.dataplane.base import DestStats, ServiceStats
from saru.model import Config, Override, RealRef, ServiceKey, Table
from saru.planner import dest_port

if TYPE_CHECKING:
    from saru.ha.node import HASnapshot

#: saru_server_status's states, in the order they are listed
STATES = ("UP", "DOWN", "DRAIN", "MAINT")
#: keepalived-exporter's numbers for the VRRP states
VRRP_STATES = {"init": 0, "backup": 1, "master": 2, "fault": 3}
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
    #: checks that could not run for a local reason since start, by reason (``LOCAL_FAULT_REASONS``)
    local_faults: tuple[tuple[str, int], ...] = ()
    #: the alarms (``local_fault``, ``panic``) and whether each is raised
    alarms: tuple[tuple[str, bool], ...] = ()


def verdict(up: bool | None, checktype: str) -> bool | None:
    """A real's verdict as the monitor holds it: ``checktype=on`` is up and ``off`` has none, whatever
    results came before a reload changed the checktype (those reals report no results)."""
    if checktype == "on":
        return True
    if checktype == "off":
        return None
    return up


def servers(config: Config, table: Table, stats: Mapping[ServiceKey, ServiceStats], realstats: RealStats,
            rewrite: bool, overrides: Mapping[RealRef, Override],
            ) -> tuple[list[ServerMetrics], list[tuple[ServiceKey, int]]]:
    """Every configured real of every virtual, with its state, check statistics and connections; and
    every virtual with its reals UP."""
    now = realstats.now()
    started = realstats.started
    none = DestStats()
    found: list[ServerMetrics] = []
    active: list[tuple[ServiceKey, int]] = []
    for v in config.virtuals:
        vkey = v.key  # (a property that makes a new key each time)
        service = table.services.get(vkey)
        dests = service.dests if service is not None else {}
        service_stats = stats.get(vkey)
        dest_stats = service_stats.dests if service_stats is not None else {}
        records = realstats.for_service(vkey)
        checked = v.checktype not in UNCHECKED
        up_count = 0
        for r in v.reals:
            rec = records.get((r.address, r.port))
            key = (r.address, dest_port(v, r.forward, r.port, rewrite))
            dest = dests.get(key)
            conns = dest_stats.get(key, none)
            state = status_word(verdict(rec.up if rec else None, v.checktype), rec.maintenance if rec else False,
                                overrides.get(RealRef(vkey, r.address, r.port)) if overrides else None, dest)
            up_count += state == "UP"
            if rec is None:
                found.append(ServerMetrics(vkey, r.address, r.port, state, dest.weight if dest else 0, None, None, 0, 0,
                                           now - started, 0.0, conns.active_connections,
                                           conns.inactive_connections))
                continue
            ran = checked and rec.check_class is not None
            down = rec.downtime + (now - rec.down_since if rec.down_since is not None else 0.0)
            found.append(ServerMetrics(
                vkey, r.address, r.port, state, dest.weight if dest else 0, rec.check_class if ran else None,
                rec.check_duration if ran else None, rec.failures, rec.up_down, now - rec.last_change, down,
                conns.active_connections, conns.inactive_connections))
        active.append((vkey, up_count))
    return found, active


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


def build(*, version: str, dataplane: str, config: Config, table: Table,
          stats: Mapping[ServiceKey, ServiceStats], realstats: RealStats, rewrite: bool, ha: HASnapshot | None,
          reloads_ok: int, reloads_failed: int, last_reload_success: float, apply_durations: HistogramSnapshot,
          overrides: Mapping[RealRef, Override] | None = None, local_faults: Mapping[str, int] | None = None,
          alarms: Mapping[str, bool] | None = None) -> MetricsSnapshot:
    """The snapshot (see the module docstring); ``overrides``: the operator's, by real."""
    found, active = servers(config, table, stats, realstats, rewrite, overrides or {})
    return MetricsSnapshot(
        version=version, dataplane=dataplane, servers=tuple(found), active_servers=tuple(active),
        vrrp=vrrp(ha), reloads_ok=reloads_ok, reloads_failed=reloads_failed,
        last_reload_success=last_reload_success, apply_durations=apply_durations,
        ipvs=None if dataplane == "ipvs" else ipvs_view(table, stats),
        local_faults=tuple((reason, (local_faults or {}).get(reason, 0)) for reason in LOCAL_FAULT_REASONS),
        alarms=tuple(sorted((alarms or {}).items())),
    )
