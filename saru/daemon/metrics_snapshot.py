"""The metrics snapshot: every number ``GET /metrics`` shows, as typed values, built from the
daemon's state by one pure function (``build``); ``saru.api.metrics`` renders it. The daemon keeps
the per-real rows between scrapes (``kept``: ``saru.daemon.metrics_live.LiveServers``, which makes
them with this module's ``real_row``/``virtual_rows``/``service_backends``), so that a scrape redoes
only the reals that changed. A row holds times, not ages: the ages are taken at the snapshot's
``now`` when it is rendered. The reals' check durations are a column of their own beside the rows
(``check_durations``): most checks of a real that stays up change its duration alone (by a
millisecond or two), and a row made again for each of them, 2,000 a second, was most of a scrape's
work.

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
from typing import TYPE_CHECKING, NamedTuple, Protocol

from saru.checks.base import LOCAL_FAULT_REASONS
from saru.daemon.histogram import HistogramSnapshot
from saru.daemon.realstats import RealRecord, RealStats
from saru.daemon.status import status_word
from saru.dataplane.base import DestStats, ServiceStats
from saru.model import Config, Dest, Override, RealConfig, RealRef, Service, ServiceKey, Table, VirtualConfig
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
    """One real of one virtual service (the metrics name them with ``saru.api.names``). The times are
    ``RealStats``' monotonic clock; the ages a scrape shows are taken at the snapshot's ``now``
    (``last_change_age``, ``downtime_at``), so a row changes only when its real does."""

    service: ServiceKey
    address: str
    port: int  # as configured
    state: str  # one of STATES
    weight: int  # in the data plane; 0 when not in the table
    check_class: str | None  # the last check's class (saru.checks.result_class); None: no check ran
    failures: int  # failed checks since the start
    up_down: int  # UP -> DOWN transitions since the start
    last_change: float  # the last UP<->DOWN change (the statistics' start when none)
    down_since: float | None  # while down: since when
    downtime: float  # seconds down, periods that ended
    active: int  # connections
    inactive: int

    def last_change_age(self, now: float) -> float:
        """Seconds since the last UP<->DOWN change (since the start when none)."""
        return now - self.last_change

    def downtime_at(self, now: float) -> float:
        """Seconds down since the start, the current period included."""
        return self.downtime + (now - self.down_since if self.down_since is not None else 0.0)


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


class Moved(NamedTuple):
    """Which of a snapshot's ``servers`` rows are other objects than in the snapshot made before it from
    the same kept rows (``KeptRows``): ``source`` names the kept rows, ``sequence`` counts their
    updates (a reader that saw ``sequence - 1`` of the same source needs to look at these rows only):
    ``rows`` made again."""

    source: int
    sequence: int
    rows: tuple[int, ...]


@dataclass(frozen=True)
class MetricsSnapshot:
    """Everything ``/metrics`` shows (see the module docstring)."""

    version: str
    dataplane: str
    now: float  # RealStats' clock when the snapshot was taken (the rows' ages are taken at it)
    servers: tuple[ServerMetrics, ...]
    #: each real's last check duration in seconds (whole milliseconds), in the order of ``servers``
    #: (None: no check ran, no series)
    check_durations: tuple[float | None, ...]
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
    #: the rows that changed since the kept rows' last snapshot (None: not from kept rows, or all anew)
    servers_moved: Moved | None = None


def verdict(up: bool | None, checktype: str) -> bool | None:
    """A real's verdict as the monitor holds it: ``checktype=on`` is up and ``off`` has none, whatever
    results came before a reload changed the checktype (those reals report no results)."""
    if checktype == "on":
        return True
    if checktype == "off":
        return None
    return up


NO_COUNTERS = DestStats()


def real_row(service: ServiceKey, checktype: str, real: RealConfig, dest: Dest | None, conns: DestStats,
             rec: RealRecord | None, override: Override | None, started: float) -> ServerMetrics:
    """One real's row: ``dest`` its destination in the table (None: not in), ``conns`` its counters,
    ``rec`` its statistics (None: no result yet), ``started`` the statistics' start."""
    state = status_word(verdict(rec.up if rec else None, checktype), rec.maintenance if rec else False, override,
                        dest)
    weight = dest.weight if dest else 0
    if rec is None:
        return ServerMetrics(service, real.address, real.port, state, weight, None, 0, 0, started, None, 0.0,
                             conns.active_connections, conns.inactive_connections)
    return ServerMetrics(service, real.address, real.port, state, weight,
                         rec.check_class if shows_check(checktype, rec) else None, rec.failures, rec.up_down,
                         rec.last_change, rec.down_since, rec.downtime, conns.active_connections,
                         conns.inactive_connections)


def shows_check(checktype: str, rec: RealRecord | None) -> bool:
    """Whether a real shows its last check (its class, and its duration in ``check_durations``): a
    check ran, and its checktype runs checks."""
    return rec is not None and rec.check_class is not None and checktype not in UNCHECKED


def check_durations(config: Config, realstats: RealStats) -> tuple[float | None, ...]:
    """Every configured real's last check duration (None: it shows none, ``shows_check``), in the rows'
    order."""
    found: list[float | None] = []
    for v in config.virtuals:
        records = realstats.for_service(v.key)
        for r in v.reals:
            rec = records.get((r.address, r.port))
            found.append(realstats.durations[rec.slot] if rec is not None and shows_check(v.checktype, rec)
                         else None)
    return tuple(found)


def virtual_rows(v: VirtualConfig, vkey: ServiceKey, service: Service | None, service_stats: ServiceStats | None,
                 realstats: RealStats, rewrite: bool, overrides: Mapping[RealRef, Override]) -> list[ServerMetrics]:
    """The rows of one virtual's reals, in the config's order (``vkey``: one key object for all of them)."""
    dests = service.dests if service is not None else {}
    dest_stats = service_stats.dests if service_stats is not None else {}
    records = realstats.for_service(vkey)
    started = realstats.started
    rows: list[ServerMetrics] = []
    for r in v.reals:
        key = (r.address, dest_port(v, r.forward, r.port, rewrite))
        rows.append(real_row(vkey, v.checktype, r, dests.get(key), dest_stats.get(key, NO_COUNTERS),
                             records.get((r.address, r.port)),
                             overrides.get(RealRef(vkey, r.address, r.port)) if overrides else None, started))
    return rows


def servers(config: Config, table: Table, stats: Mapping[ServiceKey, ServiceStats], realstats: RealStats,
            rewrite: bool, overrides: Mapping[RealRef, Override],
            ) -> tuple[list[ServerMetrics], list[tuple[ServiceKey, int]]]:
    """Every configured real of every virtual, with its state, check statistics and connections; and
    every virtual with its reals UP."""
    found: list[ServerMetrics] = []
    active: list[tuple[ServiceKey, int]] = []
    for v in config.virtuals:
        vkey = v.key  # (a property that makes a new key each time)
        rows = virtual_rows(v, vkey, table.services.get(vkey), stats.get(vkey), realstats, rewrite, overrides)
        found.extend(rows)
        active.append((vkey, sum(row.state == "UP" for row in rows)))
    return found, active


def service_backends(key: ServiceKey, service: Service, service_stats: ServiceStats | None,
                     ) -> list[BackendMetrics]:
    """node_exporter's IPVS backends of one service of the table."""
    fwm = key.protocol == "fwm"
    dest_stats = service_stats.dests if service_stats is not None else {}
    local_address, local_port = ("", 0) if fwm else (key.address, key.port)
    proto, mark = key.protocol.upper(), f"{key.fwmark or 0:08X}" if fwm else ""
    backends: list[BackendMetrics] = []
    for dkey, dest in service.dests.items():
        conns = dest_stats.get(dkey, NO_COUNTERS)
        backends.append(BackendMetrics(local_address, local_port, dest.address, dest.port, proto, mark,
                                       conns.active_connections, conns.inactive_connections, dest.weight))
    return backends


def ipvs_totals(stats: Mapping[ServiceKey, ServiceStats]) -> IpvsTotals:
    return IpvsTotals(
        connections=sum(s.connections for s in stats.values()),
        packets_in=sum(s.packets_in for s in stats.values()),
        packets_out=sum(s.packets_out for s in stats.values()),
        bytes_in=sum(s.bytes_in for s in stats.values()),
        bytes_out=sum(s.bytes_out for s in stats.values()),
    )


def ipvs_view(table: Table, stats: Mapping[ServiceKey, ServiceStats]) -> IpvsView:
    """node_exporter's IPVS series for a plane node_exporter cannot read (nftables, proxy)."""
    backends = [b for key, service in table.services.items() for b in service_backends(key, service, stats.get(key))]
    return IpvsView(ipvs_totals(stats), tuple(backends))


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


class KeptRows(Protocol):
    """Rows kept up to date between snapshots (``saru.daemon.metrics_live.LiveServers``)."""

    def update(self, config: Config, table: Table, stats: Mapping[ServiceKey, ServiceStats], rewrite: bool,
               overrides: Mapping[RealRef, Override]) -> None: ...

    @property
    def servers(self) -> tuple[ServerMetrics, ...]: ...

    @property
    def check_durations(self) -> tuple[float | None, ...]: ...

    @property
    def active(self) -> tuple[tuple[ServiceKey, int], ...]: ...

    @property
    def moved(self) -> Moved | None: ...

    def ipvs(self) -> IpvsView: ...


def build(*, version: str, dataplane: str, config: Config, table: Table,
          stats: Mapping[ServiceKey, ServiceStats], realstats: RealStats, rewrite: bool, ha: HASnapshot | None,
          reloads_ok: int, reloads_failed: int, last_reload_success: float, apply_durations: HistogramSnapshot,
          overrides: Mapping[RealRef, Override] | None = None, local_faults: Mapping[str, int] | None = None,
          alarms: Mapping[str, bool] | None = None, kept: KeptRows | None = None) -> MetricsSnapshot:
    """The snapshot (see the module docstring); ``overrides``: the operator's, by real; ``kept``: the
    rows kept since the last snapshot, brought up to date (the same rows as made anew)."""
    if kept is None:
        found, active = servers(config, table, stats, realstats, rewrite, overrides or {})
        rows, per_virtual, durations = tuple(found), tuple(active), check_durations(config, realstats)
    else:
        kept.update(config, table, stats, rewrite, overrides or {})
        rows, per_virtual, moved, durations = kept.servers, kept.active, kept.moved, kept.check_durations
    return MetricsSnapshot(
        version=version, dataplane=dataplane, now=realstats.now(), servers=rows, check_durations=durations,
        active_servers=per_virtual,
        vrrp=vrrp(ha), reloads_ok=reloads_ok, reloads_failed=reloads_failed,
        last_reload_success=last_reload_success, apply_durations=apply_durations,
        ipvs=None if dataplane == "ipvs" else ipvs_view(table, stats) if kept is None else kept.ipvs(),
        local_faults=tuple((reason, (local_faults or {}).get(reason, 0)) for reason in LOCAL_FAULT_REASONS),
        alarms=tuple(sorted((alarms or {}).items())),
        servers_moved=moved if kept is not None else None,
    )
