"""The ``status`` document's types, and its virtual-service section as a pure function of the
config, the reals' health, the table and its counters.

The document is what ``saru status --json`` prints and ``saru status`` renders
(``saru.cli.daemon_cmds.render_status``); the service layer (``saru.daemon.service``) fills in the
daemon's part from its state objects.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, TypedDict

from saru.control.codec import ServiceKeyDict, key_to_dict
from saru.daemon.driftwatch import DriftSnapshot
from saru.daemon.reconciler import ApplyErrorDoc
from saru.dataplane.base import ServiceStats
from saru.model import Config, RealRef, ServiceKey, Settings, Table, format_hostport
from saru.monitor import RealHealth
from saru.planner import dest_port, fallback_active, real_ref

if TYPE_CHECKING:  # the HA stack is imported only by a daemon that runs it
    from saru.ha.node import HASnapshot


class LastCheck(TypedDict):
    ok: bool
    message: str
    latency: float
    at: float | None


class RealStatus(TypedDict):
    address: str
    port: int
    forward: str
    configured_weight: int
    weight: int | None
    in_table: bool
    state: str  # up, down, maintenance, unknown
    failures: int
    active_connections: int
    connections: int
    last_check: LastCheck | None


class VirtualStatus(TypedDict):
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
    settings: str | None
    events: list[str]
    cluster_events: list[str]


def real_state(health: RealHealth | None) -> str:
    if health is None or health.up is None:
        return "unknown"
    if health.maintenance:
        return "maintenance"
    return "up" if health.up else "down"


def virtuals_status(config: Config, snapshot: Mapping[RealRef, RealHealth], table: Table,
                    stats: Mapping[ServiceKey, ServiceStats], rewrite: bool) -> list[VirtualStatus]:
    """Every configured virtual: in the table or not, its fallback, its reals' health and counters."""
    fallbacks = fallback_active(config, table, rewrite)
    virtuals: list[VirtualStatus] = []
    for v in config.virtuals:
        service = table.services.get(v.key)
        service_stats = stats.get(v.key, ServiceStats())
        reals: list[RealStatus] = []
        for r in v.reals:
            health = snapshot.get(real_ref(v, r))
            port = dest_port(v, r.forward, r.port, rewrite)
            dest = service.dests.get((r.address, port)) if service else None
            dstats = service_stats.dests.get((r.address, port))
            last = health.last_result if health else None
            reals.append({
                "address": r.address, "port": r.port, "forward": r.forward,
                "configured_weight": r.weight,
                "weight": dest.weight if dest else None,
                "in_table": dest is not None,
                "state": real_state(health),
                "failures": health.failures if health else 0,
                "active_connections": dstats.active_connections if dstats else 0,
                "connections": dstats.connections if dstats else 0,
                "last_check": None if last is None else {
                    "ok": last.ok, "message": last.message, "latency": last.latency,
                    "at": health.last_checked if health else None,
                },
            })
        virtuals.append({
            "service": key_to_dict(v.key), "name": v.name, "protocol": v.protocol, "scheduler": v.scheduler,
            "checktype": v.checktype, "service_type": v.service,
            "in_table": service is not None,
            "fallback": None if v.fallback is None else format_hostport(v.fallback.address, v.fallback.port),
            "fallback_active": fallbacks.get(v.key, False),
            "connections": service_stats.connections,
            "reals": reals,
        })
    return virtuals


def cluster_events(settings: Settings) -> list[str]:
    """With ``[ha] mode = "pacemaker"``: the cluster's last events in short sentences (pm_logconv's job)."""
    if settings.ha is None or settings.ha.mode != "pacemaker":
        return []
    from saru.cluster.logconv import PACEMAKER_LOG, recent_events

    return recent_events(os.environ.get("SARU_PACEMAKER_LOG", PACEMAKER_LOG), settings.cluster)
