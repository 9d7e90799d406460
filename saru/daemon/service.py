"""The daemon's service layer: every operation a front door offers, as typed methods.

The control socket (``saru.daemon.commands``) calls these, and so will any other front door (the
HTTP API): ``status``, ``table``, ``stats``, ``zero``, ``connections``, ``apply``, ``reload``,
``stop``, ``ha``, ``ha_resign`` and ``ha_takeover``. Each returns a typed, JSON-able answer
(``TypedDict``); a request the daemon refuses raises ``ServiceError`` (its text is the answer's
error), and a data plane failure raises ``DataplaneError`` as the plane does. The service reads the
daemon's state objects and parts; it holds no state of its own.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any, TypedDict

from saru import __version__
from saru.control.codec import ServiceKeyDict, key_to_dict, table_to_list
from saru.daemon.configwatch import ConfigWatcher, ReloadAnswer
from saru.daemon.driftwatch import DriftWatcher
from saru.daemon.gate import HAGate, HANodeLike
from saru.daemon.journal import Journal
from saru.daemon.reconciler import Reconciler
from saru.daemon.state import Life, Loaded
from saru.daemon.status import StatusDocument, cluster_events, virtuals_status
from saru.dataplane.base import Dataplane, DataplaneError
from saru.diff import OpError
from saru.ha.node import HACommandError, HASnapshot
from saru.model import Op, ServiceKey
from saru.monitor import Monitor

#: how many recent events ``status`` shows
STATUS_EVENTS = 20
#: the longest ``ha_resign`` hold, seconds
MAX_HOLD = 3600.0


class ServiceError(Exception):
    """A request the daemon refuses (bad input, nothing to do); ``str()`` is the reason."""


class DriftFound(TypedDict):
    """A drift found (and repaired, unless ``repaired`` is false) while answering."""

    detail: str
    repaired: bool


class HealthEntry(TypedDict):
    service: ServiceKeyDict
    address: str
    port: int
    up: bool | None


class TableAnswer(TypedDict):
    """The live table, the reals' health, the owned services, the plane (``saru plan``, ``ipvsadm``)."""

    table: list[dict[str, Any]]
    health: list[HealthEntry]
    owned: list[ServiceKeyDict]
    dataplane: str
    drift: DriftFound | None


class DestCounters(TypedDict):
    address: str
    port: int
    counters: dict[str, int]


class ServiceCounters(TypedDict):
    service: ServiceKeyDict
    connections: int
    bytes_in: int
    bytes_out: int
    dests: list[DestCounters]


class StatsAnswer(TypedDict):
    stats: list[ServiceCounters]


class ZeroAnswer(TypedDict):
    zeroed: bool


class ConnectionsAnswer(TypedDict):
    connections: list[dict[str, Any]]


class ApplyAnswer(TypedDict):
    applied: int


class StopAnswer(TypedDict):
    stopping: bool


class HAAnswer(TypedDict):
    ha: HASnapshot


class ResignAnswer(TypedDict):
    resigned: bool
    hold: float


class TakeoverAnswer(TypedDict):
    takeover: bool


class DaemonService:
    """The operations on one running daemon (see the module docstring)."""

    def __init__(self, *, life: Life, loaded: Loaded, dataplane: Dataplane, dataplane_reason: str,
                 monitor: Monitor, reconciler: Reconciler, gate: HAGate, drift: DriftWatcher,
                 watcher: ConfigWatcher, journal: Journal) -> None:
        self._life = life
        self._loaded = loaded
        self._dataplane = dataplane
        self._dataplane_reason = dataplane_reason
        self._monitor = monitor
        self._reconciler = reconciler
        self._gate = gate
        self._drift = drift
        self._watcher = watcher
        self._journal = journal

    # -- reading ----------------------------------------------------------------------------------

    async def status(self) -> StatusDocument:
        """The daemon, its data plane, every virtual with its reals, HA, drift and recent events (the
        kernel's table is checked against what was applied first)."""
        await self.check_drift("status")
        table = await self._dataplane.read()
        stats = await self._dataplane.stats()
        loaded, life = self._loaded, self._life
        error = self._reconciler.apply_error
        node = self._gate.node
        return {
            "version": __version__,
            "pid": os.getpid(),
            "config": loaded.config_path,
            "dataplane": {"name": self._dataplane.capabilities.name, "reason": self._dataplane_reason},
            "started_at": life.started_at,
            "ready": life.ready.is_set(),
            "apply_error": error.to_dict() if error is not None else None,
            "reloads": loaded.reloads,
            "last_reload_error": loaded.last_reload_error,
            "drift": self._drift.snapshot(),
            "virtuals": virtuals_status(loaded.config, self._monitor.snapshot(), table, stats,
                                        self._reconciler.rewrite),
            "ha": node.snapshot() if node is not None else None,
            "settings": loaded.settings.path,
            "events": self._journal.recent(STATUS_EVENTS),
            "cluster_events": cluster_events(loaded.settings),
        }

    async def table(self) -> TableAnswer:
        """The live table with the reals' health and the owned services (``saru plan``'s input)."""
        found = await self.check_drift("table request (saru plan)")
        table = await self._dataplane.read()
        health: list[HealthEntry] = [
            {"service": key_to_dict(ref.service), "address": ref.address, "port": ref.port, "up": up}
            for ref, up in self._monitor.health().items()]
        return {"table": table_to_list(table), "health": health,
                "owned": [key_to_dict(k) for k in self._loaded.owned],
                "dataplane": self._dataplane.capabilities.name, "drift": found}

    async def stats(self) -> StatsAnswer:
        """Per-service and per-real counters (``saru ipvsadm -L --stats``)."""
        stats = await self._dataplane.stats()
        return {"stats": [
            {"service": key_to_dict(key), "connections": s.connections, "bytes_in": s.bytes_in,
             "bytes_out": s.bytes_out,
             "dests": [{"address": a, "port": p, "counters": asdict(d)} for (a, p), d in s.dests.items()]}
            for key, s in stats.items()
        ]}

    async def connections(self) -> ConnectionsAnswer:
        """The plane's connection entries (``saru ipvsadm -L -c``); ServiceError when it keeps none."""
        try:
            entries = await self._dataplane.connections()
        except DataplaneError as exc:
            raise ServiceError(str(exc)) from exc
        return {"connections": [asdict(e) for e in entries]}

    async def check_drift(self, found_by: str) -> DriftFound | None:
        """Check the kernel's table against what was applied (repairing a drift); what was found."""
        event = await self._drift.check(found_by)
        return None if event is None else {"detail": event.message(), "repaired": event.repaired}

    # -- changing ---------------------------------------------------------------------------------

    async def zero(self, key: ServiceKey | None) -> ZeroAnswer:
        """Reset the counters of one service, or of all (``saru ipvsadm -Z``); ServiceError when the
        plane cannot."""
        try:
            await self._dataplane.zero(key)
        except DataplaneError as exc:
            raise ServiceError(str(exc)) from exc
        return {"zeroed": True}

    async def apply(self, ops: Sequence[Op]) -> ApplyAnswer:
        """Manual table changes (``saru ipvsadm``): applied as one batch and logged; a service the
        config owns is brought back in line with health at its next reconciliation. Ops that do not
        fit the table are refused (``ServiceError``) and nothing is applied."""
        try:
            return {"applied": await self._reconciler.apply_manual(ops)}
        except OpError as exc:
            raise ServiceError(str(exc)) from exc

    async def reload(self) -> ReloadAnswer:
        """Re-read the config (and saru.toml); a bad file is refused and the running one kept."""
        return await self._watcher.reload()

    async def stop(self) -> StopAnswer:
        """Stop the daemon (cleanstop, as on SIGTERM); the answer comes before it has stopped."""
        self._life.stop()
        return {"stopping": True}

    # -- high availability ------------------------------------------------------------------------

    async def ha(self) -> HAAnswer:
        return {"ha": self._node().snapshot()}

    async def ha_resign(self, hold: float) -> ResignAnswer:
        """failover-test: hand the VIP to the peer and refuse it back for ``hold`` seconds."""
        node = self._node()
        if not 0 <= hold <= MAX_HOLD:  # NaN too
            raise ServiceError(f"hold must be a number of seconds, 0-{MAX_HOLD:g}")
        try:
            node.resign(hold)
        except HACommandError as exc:
            raise ServiceError(str(exc)) from exc
        return {"resigned": True, "hold": hold}

    async def ha_takeover(self) -> TakeoverAnswer:
        """Become master now."""
        try:
            self._node().takeover()
        except HACommandError as exc:
            raise ServiceError(str(exc)) from exc
        return {"takeover": True}

    def _node(self) -> HANodeLike:
        node = self._gate.node
        if node is not None:
            return node
        if self._gate.ha_settings is not None:
            raise ServiceError("HA is configured but not started yet (first health pass running)")
        raise ServiceError("HA is not configured for this daemon (saru.toml [ha] mode = \"vrrp\", passed "
                           "with --settings)")
