"""The daemon's service layer: every operation a front door offers, as typed methods.

The control socket (``saru.daemon.commands``) and the HTTP API (``saru.api.server``) call these:
``status``, ``table``, ``stats``, ``zero``, ``connections``, ``apply``, ``reload``, ``stop``,
``ha``, ``ha_resign``, ``ha_takeover``, the operator's ``drain``, ``enable``, ``disable`` and
``set_weight`` (reals named as the API names them: ``proxy`` ``tcp/10.0.0.1:80``, ``server``
``10.0.0.2:80``; kept across reloads and restarts by ``saru.daemon.operator``), ``subscribe`` (the
event bus, ``saru.daemon.bus``), ``note`` (a front door's log line) and ``metrics_snapshot`` (what
``GET /metrics`` shows, ``saru.daemon.metrics_snapshot``). Each returns a typed,
JSON-able answer (``TypedDict``); a request the daemon refuses raises ``ServiceError`` (its text is
the answer's error, ``status`` the HTTP status a front door answers with: 400 bad input, 404 no
such real, 409 not possible now, 500 could not be done), and a data plane failure raises
``DataplaneError`` as the plane does. The service reads the daemon's state objects and parts; what
it holds of its own is kept to answer faster and never changes an answer: ``/metrics``' rows and
the status document's reals kept between requests (``metrics_live``, ``status_live``; they need
``realstats`` fed by the monitor's results, as the daemon wires it), and the plane's counters for
``/metrics`` (at most ``COUNTERS_MAX_AGE`` old).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any, TypedDict

from saru import __version__
from saru.api.names import BadName, parse_proxy, parse_server, proxy_name, server_name
from saru.control.codec import ServiceKeyDict, key_to_dict, table_to_list
from saru.daemon.announcer import Announcer, DrainAnswer
from saru.daemon.bus import EventBus, Subscription
from saru.daemon.configwatch import ConfigWatcher, ReloadAnswer
from saru.daemon.driftwatch import DriftWatcher
from saru.daemon.gate import HAGate, HANodeLike
from saru.daemon.journal import Journal
from saru.daemon.metrics_live import LiveServers
from saru.daemon.metrics_snapshot import MetricsSnapshot
from saru.daemon.metrics_snapshot import build as build_metrics
from saru.daemon.operator import OperatorError, OperatorState
from saru.daemon.realstats import RealStats
from saru.daemon.reconciler import Reconciler
from saru.daemon.state import Life, Loaded
from saru.daemon.status import StatusDocument, VirtualStatus, alarms_doc, cluster_events, virtuals_status
from saru.daemon.status_live import LiveVirtuals
from saru.daemon.transitions import Transitions
from saru.dataplane.base import Dataplane, DataplaneError, ServiceStats
from saru.diff import OpError
from saru.events import DaemonEvent, OperatorAction
from saru.ha.node import HACommandError, HASnapshot
from saru.model import Op, Override, OverrideState, RealRef, ServiceKey, Table
from saru.monitor import Monitor

#: how many recent events ``status`` shows
STATUS_EVENTS = 20
#: the longest ``ha_resign`` hold, seconds
MAX_HOLD = 3600.0
#: an operator's weight: what IPVS and ipvsadm take
MAX_WEIGHT = 65535
#: the oldest reading of the plane's counters ``/metrics`` shows, seconds (docs/metrics.md)
COUNTERS_MAX_AGE = 2.0


class ServiceError(Exception):
    """A request the daemon refuses (bad input, nothing to do); ``str()`` is the reason, ``status``
    the HTTP status a front door answers with (400 bad input, 404 unknown, 409 not now, 500 failed)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class RealName(TypedDict):
    proxy: str
    server: str


class OperatorAnswer(TypedDict):
    """What an operator's drain/enable/disable/weight did."""

    action: str  # drain, enable, disable, weight
    proxy: str
    server: str
    #: the override now (None after enable) and the weight the real gets while its check passes
    #: (None: out of the table)
    override: str | None
    weight: int | None
    changed: bool  # false: it was already so
    #: where the override is kept across reloads and restarts: "maintenancedir" or "state file"
    #: ("" when nothing is kept: after enable), and the file
    kept: str
    path: str
    reals: list[RealName]  # every real it applies to (a maintenancedir file: each virtual with it)
    applied: bool  # the table was brought in line before the answer
    apply_error: str | None


class DriftFound(TypedDict):
    """A drift found (and repaired, unless ``repaired`` is false) while answering."""

    detail: str
    repaired: bool


class HealthEntry(TypedDict):
    service: ServiceKeyDict
    address: str
    port: int
    up: bool | None
    #: seconds since its checks brought it down (the panic rule's input); None: not down by checks
    failed_for: float | None
    #: the operator's override (``{"state", "weight"}``), None: none
    override: dict[str, Any] | None


class PanicEntry(TypedDict):
    service: ServiceKeyDict
    since: float  # seconds since the panic started


class TableAnswer(TypedDict):
    """The live table, the reals' health, the owned services, the plane (``saru plan``, ``ipvsadm``)."""

    table: list[dict[str, Any]]
    health: list[HealthEntry]
    owned: list[ServiceKeyDict]
    dataplane: str
    drift: DriftFound | None
    panic: list[PanicEntry]  # the virtuals in panic mode now
    panic_threshold: int  # [director] panic_threshold, as the daemon read it
    gated: bool  # an HA backup without warm standby: the owned services are kept out of the table


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


class RuntimeAnswer(TypedDict):
    """``runtime``: the process's own resources and the sizes of what it keeps (the soak watches them),
    and how many data-plane writes it made since it started (the disruption bench counts them)."""

    pid: int
    rss_bytes: int
    open_fds: int
    tasks: int
    journal_events: int
    transition_reals: int
    transitions: int
    realstats: int
    check_results: int
    bus_subscribers: int
    applies: int
    ops_applied: int


class ListenersAnswer(TypedDict):
    names: list[str]
    _fds: list[int]  # passed as SCM_RIGHTS, not as JSON (saru.control.server.FDS)


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
                 watcher: ConfigWatcher, journal: Journal, operator: OperatorState | None = None,
                 bus: EventBus | None = None, transitions: Transitions | None = None,
                 realstats: RealStats | None = None) -> None:
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
        self._operator = operator
        self._bus = bus if bus is not None else EventBus()
        self._transitions = transitions
        self._realstats = realstats if realstats is not None else RealStats()
        self.announcer: Announcer | None = None  # saru.toml [bgp], set by the lifecycle once started
        self._metrics_rows = LiveServers(self._realstats)
        # the status document's reals kept between requests: it needs the statistics the monitor feeds
        self._status_virtuals = LiveVirtuals(realstats, transitions) if realstats is not None else None
        self._counters: tuple[float, dict[ServiceKey, ServiceStats]] | None = None  # (when, the plane's)

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
            "virtuals": self._virtuals_status(table, stats),
            "ha": node.snapshot() if node is not None else None,
            "bgp": await self.announcer.snapshot() if self.announcer is not None else None,
            "settings": loaded.settings.path,
            "events": self._journal.recent(STATUS_EVENTS),
            "cluster_events": cluster_events(loaded.settings),
            "alarms": alarms_doc(self._monitor.local_faults(), self._reconciler.panic),
        }

    def _virtuals_status(self, table: Table, stats: dict[ServiceKey, ServiceStats]) -> list[VirtualStatus]:
        """``status.virtuals_status``, kept between requests where the monitor feeds ``realstats``
        (``saru.daemon.status_live``)."""
        config, snapshot, rewrite = self._loaded.config, self._monitor.snapshot(), self._reconciler.rewrite
        if self._status_virtuals is None:
            return virtuals_status(config, snapshot, table, stats, rewrite, self._overrides(), self._transitions)
        return self._status_virtuals.update(config, snapshot, table, stats, rewrite, self._overrides())

    async def table(self) -> TableAnswer:
        """The live table with the reals' health and the owned services (``saru plan``'s input)."""
        found = await self.check_drift("table request (saru plan)")
        table = await self._dataplane.read()
        now, failed, overrides = time.monotonic(), self._monitor.failed_since(), self._overrides()

        def override(ref: RealRef) -> dict[str, Any] | None:
            o = overrides.get(ref)
            return None if o is None else {"state": o.state, "weight": o.weight}

        health: list[HealthEntry] = [
            {"service": key_to_dict(ref.service), "address": ref.address, "port": ref.port, "up": up,
             "failed_for": now - failed[ref] if ref in failed else None, "override": override(ref)}
            for ref, up in self._monitor.health().items()]
        return {"table": table_to_list(table), "health": health,
                "owned": [key_to_dict(k) for k in self._loaded.owned],
                "dataplane": self._dataplane.capabilities.name, "drift": found,
                "panic": [{"service": key_to_dict(k), "since": now - t} for k, t in self._reconciler.panic.items()],
                "panic_threshold": self._loaded.settings.director.panic_threshold,
                "gated": self._reconciler.gated()}

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

    async def metrics_snapshot(self) -> MetricsSnapshot:
        """Every number ``/metrics`` shows: the reals' states and check statistics, the plane's
        counters, VRRP, reloads, apply durations (no drift check: scrapes come every few seconds). The
        rows are kept from one scrape to the next and redone where something changed
        (``saru.daemon.metrics_live``); the plane's counters are read again when the last reading is
        ``COUNTERS_MAX_AGE`` seconds old."""
        table = await self._dataplane.read()
        stats = await self._metrics_counters()
        loaded, node = self._loaded, self._gate.node
        config = loaded.config
        if len(self._realstats) > sum(len(v.reals) for v in config.virtuals):  # reals left by a reload
            self._realstats.retain({RealRef(v.key, r.address, r.port) for v in config.virtuals for r in v.reals})
        return build_metrics(
            version=__version__, dataplane=self._dataplane.capabilities.name, config=config,
            table=table, stats=stats, realstats=self._realstats,
            rewrite=self._reconciler.rewrite, ha=node.snapshot() if node is not None else None,
            reloads_ok=loaded.reloads, reloads_failed=loaded.reload_failures,
            last_reload_success=loaded.loaded_at, apply_durations=self._reconciler.apply_times.snapshot(),
            overrides=self._operator.for_config(config) if self._operator is not None else None,
            local_faults=self._monitor.local_fault_counts,
            alarms={"local_fault": bool(self._monitor.local_faults()), "panic": bool(self._reconciler.panic)},
            kept=self._metrics_rows)

    async def _metrics_counters(self) -> dict[ServiceKey, ServiceStats]:
        now = time.monotonic()
        if self._counters is None or not 0 <= now - self._counters[0] < COUNTERS_MAX_AGE:
            self._counters = (now, await self._dataplane.stats())
        return self._counters[1]

    async def runtime(self) -> RuntimeAnswer:
        """Resident memory, open descriptors, asyncio tasks, history sizes and the apply counters."""
        reals, transitions = self._transitions.sizes() if self._transitions is not None else (0, 0)
        return {"pid": os.getpid(), "rss_bytes": _rss_bytes(), "open_fds": len(os.listdir("/proc/self/fd")),
                "tasks": len(asyncio.all_tasks()), "journal_events": len(self._journal),
                "transition_reals": reals, "transitions": transitions, "realstats": len(self._realstats),
                "check_results": self._realstats.results,
                "bus_subscribers": self._bus.subscribers, "applies": self._reconciler.apply_times.snapshot().count,
                "ops_applied": self._reconciler.ops_applied}

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

    async def drain_director(self, timeout: float, quiet: float) -> DrainAnswer:
        """``[bgp]``: withdraw every VIP, then stop once no traffic came for ``quiet`` s (at most
        ``timeout`` s); the answer comes at the withdrawal. ServiceError without ``[bgp]``."""
        if self.announcer is None:
            raise ServiceError("this director announces nothing (no [bgp] in saru.toml): drain a real "
                               "with saru drain PROXY SERVER, or stop the director")
        return await self.announcer.drain(timeout, quiet)

    async def listeners(self) -> ListenersAnswer:
        """The data plane's listening sockets (names, and the descriptors to pass): ``saru run
        --handover`` takes them before it stops this daemon."""
        sockets = await self._dataplane.listening_sockets()
        return {"names": list(sockets), "_fds": list(sockets.values())}

    # -- the operator's overrides ------------------------------------------------------------------

    async def drain(self, proxy: str, server: str, *, origin: str = "") -> OperatorAnswer:
        """Weight 0 while its check passes: existing connections stay, new ones go elsewhere."""
        return await self._override("drain", proxy, server, None, origin)

    async def disable(self, proxy: str, server: str, *, origin: str = "") -> OperatorAnswer:
        """Out of the table whatever its check says (a maintenancedir file when one is configured)."""
        return await self._override("disable", proxy, server, None, origin)

    async def set_weight(self, proxy: str, server: str, weight: int, *, origin: str = "") -> OperatorAnswer:
        """The operator's weight (0-65535) instead of the configured one while its check passes."""
        if type(weight) is not int or not 0 <= weight <= MAX_WEIGHT:
            raise ServiceError(f"weight must be a whole number 0-{MAX_WEIGHT}, not {weight!r}")
        return await self._override("weight", proxy, server, weight, origin)

    async def enable(self, proxy: str, server: str, *, origin: str = "") -> OperatorAnswer:
        """Remove the override: back at its configured weight once its check passes."""
        operator = self._operator_state()
        ref = self.resolve(proxy, server)
        before = operator.get(ref)
        try:
            done = operator.clear(ref)
        except OperatorError as exc:
            raise ServiceError(str(exc), 500) from exc
        reals = self._sharing(ref) if any(k.where == "maintenancedir" for k in done) else [ref]
        for each in reals:
            self._journal.emit(OperatorAction(action="enable", real=each, origin=origin or "an operator",
                                              kept=", ".join(k.path for k in done)))
        self._monitor.check_now(reals)
        answer = self._answer("enable", ref, reals, None, before is not None or bool(done), "", "")
        return await self._applied(answer)

    async def _override(self, state: OverrideState, proxy: str, server: str, weight: int | None,
                        origin: str) -> OperatorAnswer:
        operator = self._operator_state()
        ref = self.resolve(proxy, server)
        before = operator.get(ref)
        if state != "disable" and before is not None and before.state == "disable":
            raise ServiceError(f"{server} in {proxy} is disabled: enable it first (then {state} it)", 409)
        override = Override(state, weight, since=time.time())
        changed = before is None or (before.state, before.weight) != (state, weight)
        if changed:
            try:
                kept = operator.set(ref, override)
            except OperatorError as exc:
                raise ServiceError(str(exc), 500) from exc
        else:
            override = before or override
            kept = operator.keeping(state)
        reals = self._sharing(ref) if kept.where == "maintenancedir" else [ref]
        if changed:
            for each in reals:
                self._journal.emit(OperatorAction(action=state, real=each, weight=weight,
                                                  origin=origin or "an operator", kept=kept.path))
            if kept.where == "maintenancedir":
                self._monitor.check_now(reals)
        real = next(r for v in self._loaded.config.virtuals if v.key == ref.service for r in v.reals
                    if (r.address, r.port) == (ref.address, ref.port))
        answer = self._answer(state, ref, reals, override.planned_weight(real.weight), changed, kept.where,
                              kept.path)
        answer["override"] = state
        return await self._applied(answer)

    def _answer(self, action: str, ref: RealRef, reals: list[RealRef], weight: int | None, changed: bool,
                kept: str, path: str) -> OperatorAnswer:
        if action == "enable":
            weight = next((r.weight for v in self._loaded.config.virtuals if v.key == ref.service
                           for r in v.reals if (r.address, r.port) == (ref.address, ref.port)), None)
        return {"action": action, "proxy": proxy_name(ref.service), "server": server_name(ref.address, ref.port),
                "override": None, "weight": weight, "changed": changed, "kept": kept, "path": path,
                "reals": [{"proxy": proxy_name(r.service), "server": server_name(r.address, r.port)}
                          for r in reals],
                "applied": False, "apply_error": None}

    async def _applied(self, answer: OperatorAnswer) -> OperatorAnswer:
        """Bring the table in line now, so the answer comes with the change made (or why not)."""
        try:
            await self._reconciler.reconcile_or_retry()
        except DataplaneError as exc:
            answer["apply_error"] = str(exc)
        else:
            answer["applied"] = True
        return answer

    def resolve(self, proxy: str, server: str) -> RealRef:
        """The configured real named ``server`` in the virtual named ``proxy``; ServiceError 400 for a
        name that does not parse, 404 for one the config does not have."""
        try:
            wanted = parse_proxy(proxy)
            address, port = parse_server(server)
        except BadName as exc:
            raise ServiceError(str(exc)) from exc
        virtuals = [v for v in self._loaded.config.virtuals if wanted.matches(v.key)]
        if not virtuals:
            known = ", ".join(proxy_name(v.key) for v in self._loaded.config.virtuals[:10])
            raise ServiceError(f"no virtual service {proxy} in {self._loaded.config_path}"
                               f" (configured: {known or 'none'})", 404)
        name = server_name(address, port)
        for v in virtuals:
            for r in v.reals:
                if server_name(r.address, r.port) == name:
                    return RealRef(v.key, r.address, r.port)
        known = ", ".join(server_name(r.address, r.port) for v in virtuals for r in v.reals[:10])
        raise ServiceError(f"no real server {server} in {proxy} (its reals: {known or 'none'})", 404)

    def _sharing(self, ref: RealRef) -> list[RealRef]:
        """Every configured real with the same address and port (a maintenancedir file names them all)."""
        return [RealRef(v.key, r.address, r.port) for v in self._loaded.config.virtuals for r in v.reals
                if (r.address, r.port) == (ref.address, ref.port)]

    def _operator_state(self) -> OperatorState:
        if self._operator is None:
            raise ServiceError("this daemon keeps no operator overrides", 409)
        return self._operator

    def _overrides(self) -> dict[RealRef, Override]:
        return self._operator.for_config(self._loaded.config) if self._operator is not None else {}

    # -- events -------------------------------------------------------------------------------------

    def subscribe(self) -> Subscription:
        """Every event the daemon logs from now on, as JSON-able dicts (``saru.daemon.bus``): an async
        iterator with a bounded queue (a slow reader loses the oldest, with an ``events_lost`` marker);
        ``close()`` it when done."""
        return self._bus.subscribe()

    def note(self, text: str) -> None:
        """A front door's log line (what an accepted write did): logged, kept, published."""
        self._journal.emit(DaemonEvent(text))

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
            raise ServiceError(str(exc), 409) from exc
        return {"resigned": True, "hold": hold}

    async def ha_takeover(self) -> TakeoverAnswer:
        """Become master now."""
        try:
            self._node().takeover()
        except HACommandError as exc:
            raise ServiceError(str(exc), 409) from exc
        return {"takeover": True}

    def _node(self) -> HANodeLike:
        node = self._gate.node
        if node is not None:
            return node
        if self._gate.ha_settings is not None:
            raise ServiceError("HA is configured but not started yet (first health pass running)", 409)
        raise ServiceError("HA is not configured for this daemon (saru.toml [ha] mode = \"vrrp\", passed "
                           "with --settings)", 409)


def _rss_bytes() -> int:
    """This process's resident set size (``VmRSS`` of /proc/self/status; 0 where there is none)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
