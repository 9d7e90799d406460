"""The ``status`` document's types, and its virtual-service section as a pure function of the
config, the reals' health, the table and its counters, the operator's overrides and the reals'
recent transitions.

Each real says its ``status`` in HAProxy's words (``server_status``: ``UP``, ``DOWN``, ``DRAIN``,
``MAINT``), its last check's ``class`` (``saru.checks.result_class``), its operator override and
its last transitions; the API (``GET /api/v1/status``), the dashboard and the metrics read them here.

The document is what ``saru status --json`` prints and ``saru status`` renders
(``saru.cli.daemon_cmds.render_status``); the service layer (``saru.daemon.service``) fills in the
daemon's part from its state objects.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, TypedDict

from saru.api.names import proxy_name, server_name
from saru.checks.result_class import result_class
from saru.control.codec import ServiceKeyDict, key_to_dict
from saru.daemon.driftwatch import DriftSnapshot
from saru.daemon.reconciler import ApplyErrorDoc
from saru.daemon.transitions import TransitionDoc, Transitions
from saru.dataplane.base import DestStats, ServiceStats
from saru.model import (
    Config,
    Dest,
    Override,
    Overrides,
    RealConfig,
    RealRef,
    Service,
    ServiceKey,
    Settings,
    Table,
    VirtualConfig,
    format_hostport,
)
from saru.monitor import RealHealth
from saru.planner import dest_port, fallback_active

if TYPE_CHECKING:  # the HA and BGP stacks are imported only by a daemon that runs them
    from saru.daemon.announcer import BGPDoc
    from saru.ha.node import HASnapshot


class LastCheck(TypedDict):
    ok: bool
    #: HAProxy's class of the result (L4OK, L4CON, L7STS, …; ``saru.checks.result_class``)
    result_class: str
    message: str  # the reason, in words
    latency: float
    at: float | None


class OperatorDoc(TypedDict):
    """An operator's override of the real (``None`` when there is none)."""

    state: str  # drain, disable, weight
    weight: int | None
    since: float


class RealStatus(TypedDict):
    server: str  # the API's name: ADDR:PORT, [ADDR]:PORT
    address: str
    port: int
    forward: str
    configured_weight: int
    weight: int | None
    in_table: bool
    state: str  # up, down, maintenance, unknown
    status: str  # UP, DOWN, DRAIN, MAINT (server_status)
    failures: int
    active_connections: int
    inactive_connections: int
    connections: int
    last_check: LastCheck | None
    operator: OperatorDoc | None
    transitions: list[TransitionDoc]


class VirtualStatus(TypedDict):
    proxy: str  # the API's name: tcp/ADDR:PORT, udp/ADDR:PORT, fwmark/N
    service: ServiceKeyDict
    name: str
    protocol: str
    scheduler: str
    checktype: str
    service_type: str
    in_table: bool
    fallback: str | None
    fallback_active: bool
    connections: int
    reals: list[RealStatus]


class DataplaneInfo(TypedDict):
    name: str
    reason: str


class LocalFaultDoc(TypedDict):
    """A real whose last check could not run for a local reason (its verdict is kept)."""

    service: ServiceKeyDict
    address: str
    port: int
    reason: str  # emfile, enfile, enobufs, enomem, eaddrnotavail, eperm, no_route, resolver


class AlarmsDoc(TypedDict):
    """What keeps the director from trusting its checks: ``active`` is true when any list is not empty."""

    active: bool
    local_faults: list[LocalFaultDoc]
    panic: list[ServiceKeyDict]  # the virtuals whose last known set is kept (``panic_threshold``)


def alarms_doc(local_faults: Mapping[RealRef, str], panic: Iterable[ServiceKey]) -> AlarmsDoc:
    """The ``alarms`` section of the status document (pure)."""
    faults: list[LocalFaultDoc] = [
        {"service": key_to_dict(ref.service), "address": ref.address, "port": ref.port, "reason": reason}
        for ref, reason in local_faults.items()]
    panicking = [key_to_dict(key) for key in panic]
    return {"active": bool(faults or panicking), "local_faults": faults, "panic": panicking}


class StatusDocument(TypedDict):
    """The answer to ``status``: the daemon, then every virtual with its reals."""

    version: str
    pid: int
    config: str
    dataplane: DataplaneInfo
    started_at: float
    ready: bool
    apply_error: ApplyErrorDoc | None
    reloads: int
    last_reload_error: str | None
    drift: DriftSnapshot | None
    virtuals: list[VirtualStatus]
    ha: HASnapshot | None
    bgp: BGPDoc | None  # saru.toml [bgp]: neighbours' sessions, each VIP's route
    settings: str | None
    events: list[str]
    cluster_events: list[str]
    alarms: AlarmsDoc


def real_state(health: RealHealth | None) -> str:
    if health is None or health.up is None:
        return "unknown"
    if health.maintenance:
        return "maintenance"
    return "up" if health.up else "down"


NO_STATS = ServiceStats()

#: the values of ``RealStatus.status``
SERVER_STATUSES = ("UP", "DOWN", "DRAIN", "MAINT")


def server_status(health: RealHealth | None, override: Override | None, dest: Dest | None) -> str:
    """A real in HAProxy's words: ``MAINT`` (disabled by an operator, or a maintenancedir file),
    ``DOWN`` (its check fails; quiescent or not), ``DRAIN`` (its check passes but it gets no new
    connections: weight 0, by an operator or the config), else ``UP``. A real not checked yet (or
    ``checktype=off``) is judged by the table: UP or DRAIN when it is in, DOWN when not."""
    return status_word(health.up if health is not None else None,
                       health is not None and health.maintenance, override, dest)


def status_word(up: bool | None, maintenance: bool, override: Override | None, dest: Dest | None) -> str:
    """``server_status`` from the verdict (None: none yet) and whether a maintenance file forced it
    (the metrics' snapshot reads them from its own records)."""
    if (override is not None and override.state == "disable") or maintenance:
        return "MAINT"
    if up is False or (up is None and dest is None):
        return "DOWN"
    if dest is not None and dest.weight == 0:
        return "DRAIN"
    if override is not None and override.planned_weight(1) == 0:
        return "DRAIN"
    return "UP"


def real_status(v: VirtualConfig, r: RealConfig, ref: RealRef, health: RealHealth | None, dest: Dest | None,
                dstats: DestStats | None, override: Override | None, transitions: Transitions | None) -> RealStatus:
    """One real's part of the document (``dest``: it in the table, ``dstats`` its counters)."""
    last = health.last_result if health else None
    return {
        "server": server_name(r.address, r.port),
        "address": r.address, "port": r.port, "forward": r.forward,
        "configured_weight": r.weight,
        "weight": dest.weight if dest else None,
        "in_table": dest is not None,
        "state": real_state(health),
        "status": server_status(health, override, dest),
        "failures": health.failures if health else 0,
        "active_connections": dstats.active_connections if dstats else 0,
        "inactive_connections": dstats.inactive_connections if dstats else 0,
        "connections": dstats.connections if dstats else 0,
        "last_check": None if last is None else {
            "ok": last.ok, "result_class": result_class(last), "message": last.message,
            "latency": last.latency, "at": health.last_checked if health else None,
        },
        "operator": None if override is None else {
            "state": override.state, "weight": override.weight, "since": override.since},
        "transitions": transitions.of(ref) if transitions is not None else [],
    }


def virtual_status(v: VirtualConfig, vkey: ServiceKey, service: Service | None, service_stats: ServiceStats,
                   fallback_on: bool, reals: list[RealStatus]) -> VirtualStatus:
    """One virtual's part of the document, with its reals' parts."""
    return {
        "proxy": proxy_name(vkey),
        "service": key_to_dict(vkey), "name": v.name, "protocol": v.protocol, "scheduler": v.scheduler,
        "checktype": v.checktype, "service_type": v.service,
        "in_table": service is not None,
        "fallback": None if v.fallback is None else format_hostport(v.fallback.address, v.fallback.port),
        "fallback_active": fallback_on,
        "connections": service_stats.connections,
        "reals": reals,
    }


def virtuals_status(config: Config, snapshot: Mapping[RealRef, RealHealth], table: Table,
                    stats: Mapping[ServiceKey, ServiceStats], rewrite: bool,
                    overrides: Overrides | None = None, transitions: Transitions | None = None,
                    ) -> list[VirtualStatus]:
    """Every configured virtual: in the table or not, its fallback, its reals' health, counters,
    overrides and transitions."""
    fallbacks = fallback_active(config, table, rewrite)
    virtuals: list[VirtualStatus] = []
    for v in config.virtuals:
        vkey = v.key  # (a property that makes a new key each time)
        service = table.services.get(vkey)
        service_stats = stats.get(vkey, NO_STATS)
        reals: list[RealStatus] = []
        for r in v.reals:
            ref = RealRef(vkey, r.address, r.port)  # planner.real_ref, the key made once
            key = (r.address, dest_port(v, r.forward, r.port, rewrite))
            reals.append(real_status(v, r, ref, snapshot.get(ref), service.dests.get(key) if service else None,
                                     service_stats.dests.get(key), overrides.get(ref) if overrides else None,
                                     transitions))
        virtuals.append(virtual_status(v, vkey, service, service_stats, fallbacks.get(vkey, False), reals))
    return virtuals


def cluster_events(settings: Settings) -> list[str]:
    """With ``[ha] mode = "pacemaker"``: the cluster's last events in short sentences (pm_logconv's job)."""
    if settings.ha is None or settings.ha.mode != "pacemaker":
        return []
    from saru.cluster.logconv import PACEMAKER_LOG, recent_events

    return recent_events(os.environ.get("SARU_PACEMAKER_LOG", PACEMAKER_LOG), settings.cluster)
