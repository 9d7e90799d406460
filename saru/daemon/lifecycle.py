"""The director daemon's life: start-up order, signals, and a way out that releases only what it holds.

``await Daemon(options).run()`` loads the config (and saru.toml), picks the data plane, assembles the
parts (``saru.daemon``'s reconciler, HA gate, config watcher, drift watcher, service layer) and
serves until SIGTERM/SIGINT, ``saru stop`` or a fatal start-up failure; it returns the process exit
status (0, 1 for a failure while running, 2 for a configuration the daemon cannot run).

Start-up order: the exclusive resources first — pid file, control socket, instance lock, the HTTP
API's listening socket (saru.toml ``[api]``, ``saru.api.server``) — and the data plane after them,
so a daemon refused at start (another one's socket, pid file, lock or API port) has touched nothing
of the running one's: not its table, socket, sync daemons or listeners. ``Held`` records what this
daemon has acquired; the way out releases exactly that, in reverse: HA leaves first (priority-0
advert, VIP removed, table cleared while the plane still works), then the checks, the cleanstop, the
API, the plane, the socket, the pid file, the lock.

Under systemd the proxy's listening sockets go to its file descriptor store (``saru.daemon.fdstore``):
a daemon restarted by ``Restart=`` takes them back (``LISTEN_FDS``) and refuses no connection; outside
systemd ``saru run --handover`` takes them from the running daemon before stopping it.

Signals: SIGHUP reloads, SIGUSR1 reopens the log file (after a rotation), SIGTERM/SIGINT stop.

Once ready, and a little after each reload, the heap is settled (``saru.daemon.heap``): the garbage
collector stops walking the long-lived objects of a large configuration at every full collection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from saru import __version__
from saru.checks import tlsclient
from saru.config.diagnostics import ConfigError
from saru.config.ldirectord import parse_file
from saru.config.native import load_settings
from saru.control.paths import default_socket_path, runtime_dir
from saru.control.server import ControlServer
from saru.daemon.announcer import Announcer, bird_factory
from saru.daemon.bus import BusLogHandler, EventBus
from saru.daemon.commands import control_handlers
from saru.daemon.configwatch import ConfigWatcher
from saru.daemon.driftwatch import DriftWatcher
from saru.daemon.fdstore import FdStore
from saru.daemon.gate import HAGate, NodeFactory, vrrp_node
from saru.daemon.handover import HandoverError, take_over
from saru.daemon.heap import Settler, settle, tune
from saru.daemon.hooks import HookRunner
from saru.daemon.instance_lock import InstanceLock, InstanceLocked, lock_path
from saru.daemon.journal import Journal
from saru.daemon.operator import OperatorState, state_path
from saru.daemon.options import DaemonOptions
from saru.daemon.pidfile import remove_pidfile, write_pidfile
from saru.daemon.privileges import pwd_name, resolve
from saru.daemon.realstats import RealStats
from saru.daemon.reconciler import Reconciler
from saru.daemon.service import DaemonService
from saru.daemon.state import Life, Loaded
from saru.daemon.systemd import SystemdLink, stall_limit, status_line
from saru.daemon.transitions import Transitions
from saru.dataplane.base import Dataplane, DataplaneError
from saru.dataplane.select import select_dataplane, unsupported
from saru.events import AlertSink, DaemonEvent, Event, MonitorFile, configure_logging, reopen_log_files
from saru.model import Config, Settings
from saru.monitor import Monitor
from saru.sdnotify import listen_fds
from saru.subproc import RunAs, set_command_user

if TYPE_CHECKING:
    from saru.api.server import APIServer

LOGGER = logging.getLogger("saru")


@dataclass
class Held:
    """What this daemon has acquired. Its way out releases exactly that, so a daemon refused at start
    (socket or pid file of a running one) touches nothing of the running one's."""

    pidfile: bool = False  # the pid file names this process
    control: bool = False  # the control socket was bound by this process
    api: bool = False  # the HTTP API listens (its socket bound by this process)
    dataplane: bool = False  # the data plane handle is open
    table: bool = False  # this daemon directs its config's services: it programs and cleanstops them
    bgp: bool = False  # the routing daemon was started (or configured) by this process: [bgp]


@dataclass(eq=False)
class Parts:
    """The daemon's parts, assembled once the config is loaded and the plane chosen."""

    loaded: Loaded
    dataplane: Dataplane
    monitor: Monitor
    alerts: AlertSink
    monitorfile: MonitorFile
    reconciler: Reconciler
    gate: HAGate
    drift: DriftWatcher
    watcher: ConfigWatcher
    service: DaemonService
    realstats: RealStats


class Daemon:
    """A running director. ``await Daemon(options).run()`` returns the process exit status.

    ``dataplane``: the plane to program (default: chosen by ``options.dataplane``); ``node_factory``:
    how the HA node is made (default: the VRRP node); ``systemd``: the notify link (default: from
    ``NOTIFY_SOCKET``, a no-op without it)."""

    def __init__(self, options: DaemonOptions, *, dataplane: Dataplane | None = None,
                 node_factory: NodeFactory = vrrp_node, systemd: SystemdLink | None = None) -> None:
        self.options = options
        self.systemd = systemd if systemd is not None else SystemdLink()  # NOTIFY_SOCKET, if any
        # the proxy's listening sockets systemd kept across a restart (LISTEN_FDS), and its store
        self.fdstore = FdStore(self.systemd.notifier, listen_fds())
        self.config_path = os.path.abspath(options.config_path)
        self.life = Life()
        self.held = Held()
        self.journal = Journal(self._alert)
        self.bus = EventBus()  # every event the daemon logs, to the HTTP API's subscribers
        self._bus_handler: BusLogHandler | None = None
        self.hooks = HookRunner()
        self.parts: Parts | None = None  # once assembled
        self.control: ControlServer | None = None  # set once its socket is bound (held.control)
        self.api: APIServer | None = None  # set once it listens (held.api)
        self.instance_lock: InstanceLock | None = None  # one daemon per config per network namespace
        self._dataplane = dataplane
        self._node_factory = node_factory
        self._tasks: list[asyncio.Task[None]] = []
        self._heap = Settler()  # the garbage collector kept off long-lived objects (saru.daemon.heap)

    @property
    def service(self) -> DaemonService | None:
        """The service layer (what a front door calls), once the daemon is assembled."""
        return self.parts.service if self.parts is not None else None

    def stop(self) -> None:
        """Stop the daemon, as SIGTERM does."""
        self.life.stop()

    # ------------------------------------------------------------------ start

    async def run(self) -> int:
        config_path = self.config_path
        tune()
        try:
            settings = Settings()
            if self.options.settings_path:
                settings = await asyncio.to_thread(load_settings, self.options.settings_path)
            config = await asyncio.to_thread(parse_file, config_path)
        except ConfigError as exc:
            print(str(exc), file=sys.stderr)
            return 2
        for warning in (*settings.warnings, *config.warnings):
            print(str(warning), file=sys.stderr)
        loaded = Loaded(config_path, config, settings)
        self._configure_logging(loaded, config)
        set_command_user(self._command_user(settings))
        tlsclient.configure(resume=settings.checks.tls_session_resumption)
        try:
            dataplane, reason = (self._dataplane, "given by the caller") if self._dataplane is not None \
                else select_dataplane(self.options.dataplane, settings.nft)
        except DataplaneError as exc:
            print(f"saru: {exc}", file=sys.stderr)
            return 2
        if settings.director.expire_nodest_conn is not None:
            dataplane.expire_nodest_conn = settings.director.expire_nodest_conn
        if dataplane.listen_sockets is None:
            dataplane.listen_sockets = self.fdstore
        if self.options.handover:
            try:
                self.fdstore.add(await asyncio.to_thread(take_over, self._control_path(loaded)))
            except HandoverError as exc:
                print(f"saru: --handover: {exc}", file=sys.stderr)
                return 1
        problems = unsupported(config, dataplane.capabilities)
        if problems:
            print("\n".join(map(str, problems)), file=sys.stderr)
            return 2
        self.parts = self._assemble(loaded, dataplane, reason)
        try:
            return await self._serve(self.parts)
        finally:
            await self._shutdown(self.parts)

    def _command_user(self, settings: Settings) -> RunAs | None:
        """The user external commands run as (``saru.daemon.privileges``); None: this process's own (a
        daemon not started as root cannot switch: a written command_user other than itself is warned of)."""
        name = settings.director.command_user
        if os.geteuid() != 0:
            if name is not None and name != pwd_name(os.geteuid()):
                LOGGER.warning("[director] command_user %s: only a root daemon can start commands as another "
                               "user; they run as this daemon's user", name)
            return None
        try:
            resolved = resolve(name, "command_user")
        except KeyError as exc:
            LOGGER.warning("[director] command_user: %s; commands run as root", exc)
            return None
        if resolved.warning:
            LOGGER.warning("%s", resolved.warning)
        return resolved.run_as

    def _assemble(self, loaded: Loaded, dataplane: Dataplane, reason: str) -> Parts:
        """Make the parts and wire them to each other (nothing runs yet)."""
        options, life, journal = self.options, self.life, self.journal
        operator = OperatorState(state_path(loaded.config_path))
        for warning in operator.load(loaded.config):
            LOGGER.warning("%s", warning)
        transitions = Transitions()
        journal.add_listener(transitions.record)
        journal.add_listener(self.bus.publish_event)
        monitor = Monitor(emit=journal.emit, rise=options.rise)
        alerts = AlertSink(lambda: loaded.config, state=lambda: life.phase)
        monitorfile = MonitorFile(lambda: loaded.config)
        gate: HAGate | None = None
        reconciler = Reconciler(dataplane, monitor.health, loaded, life, journal, self.hooks,
                                gated=lambda: gate is not None and gate.gated(),
                                overrides=lambda: operator.for_config(loaded.config),
                                failed=monitor.failed_since,
                                start_timeout=options.start_timeout, start_timeout_hint=options.start_timeout_hint)
        gate = HAGate(dataplane, loaded, life, journal.emit, reconcile=reconciler.reconcile_or_retry,
                      node_factory=self._node_factory, vip_check_interval=options.drift_interval)
        drift = DriftWatcher(dataplane, lambda: loaded.owned, reconciler.lock, journal.emit, reconciler.mark_dirty,
                             options.drift_interval)

        def configure(config: Config) -> None:  # a reload's
            self._configure_logging(loaded, config)
            self._prune_kept_sockets(config)
            for warning in operator.load(config):  # a reload reads the kept overrides again
                LOGGER.warning("%s", warning)
            monitor.configure(config)
            self._heap.settle_later()

        watcher = ConfigWatcher(loaded, life, dataplane.capabilities, journal, reconciler=reconciler, gate=gate,
                                hooks=self.hooks, configure=configure, check_drift=drift.check,
                                reloading=self.systemd.reloading, reloaded=self.systemd.reloaded,
                                settings_path=options.settings_path, interval=options.watch_interval)
        realstats = RealStats()
        service = DaemonService(life=life, loaded=loaded, dataplane=dataplane, dataplane_reason=reason,
                                monitor=monitor, reconciler=reconciler, gate=gate, drift=drift, watcher=watcher,
                                journal=journal, operator=operator, bus=self.bus, transitions=transitions,
                                realstats=realstats)
        return Parts(loaded, dataplane, monitor, alerts, monitorfile, reconciler, gate, drift, watcher, service,
                     realstats)

    def _control_path(self, loaded: Loaded) -> Path:
        return Path(self.options.control_path or default_socket_path(loaded.config_path))

    def _prune_kept_sockets(self, config: Config) -> None:
        """Close the listening sockets systemd handed back for virtuals the config no longer has."""
        for name in self.fdstore.prune(v.key for v in config.virtuals):
            LOGGER.info("Closed the kept listening socket %s: no such virtual in the configuration", name)

    def _configure_logging(self, loaded: Loaded, config: Config) -> None:
        console = self.options.console
        if console is None and config.globals.supervised:
            console = sys.stdout
        configure_logging(config.globals.logfile, loaded.cfgname, console, self.options.debug)
        if self._bus_handler is not None:  # configure_logging replaced the saru logger's handlers
            LOGGER.addHandler(self._bus_handler)

    def _alert(self, change: Event) -> None:
        """Table changes and panic mode to the e-mail alerts."""
        if self.parts is not None:
            self.parts.alerts.handle(change, self.life.phase)

    async def _serve(self, parts: Parts) -> int:
        loaded, dataplane = parts.loaded, parts.dataplane
        self._bus_handler = BusLogHandler(self.bus, asyncio.get_running_loop())
        LOGGER.addHandler(self._bus_handler)
        self.journal.emit(DaemonEvent(f"Starting saru {__version__} with {loaded.config_path} "
                                      f"on the {dataplane.capabilities.name} data plane"))
        # the exclusive resources first, the data plane after: refused here, this daemon has touched
        # nothing (another daemon's table, socket, sync daemons or listeners stay as they are)
        if self.options.pidfile and not write_pidfile(self.options.pidfile):
            return 1
        self.held.pidfile = True
        control_path = self._control_path(loaded)
        control = ControlServer(control_path, control_handlers(parts.service, lambda: self.held.dataplane))
        try:
            await control.start()
        except OSError as exc:
            LOGGER.error("cannot open control socket: %s", exc)
            return 1
        self.control, self.held.control = control, True
        lock = InstanceLock(lock_path(runtime_dir(), loaded.config_path), loaded.config_path)
        try:
            lock.acquire()
        except (InstanceLocked, OSError) as exc:
            LOGGER.error("%s", exc)
            return 1
        self.instance_lock = lock
        if not await self._start_api(parts):
            return 1
        try:
            await dataplane.start()
        except (DataplaneError, OSError) as exc:
            LOGGER.error("cannot start the %s data plane: %s", dataplane.capabilities.name, exc)
            return 1
        self.held.dataplane = self.held.table = True
        self._prune_kept_sockets(loaded.config)
        await parts.gate.sync_daemons()
        if loaded.settings.bgp is not None and not await self._start_bgp(parts, control_path):
            return 1
        parts.monitor.add_listener(parts.reconciler.health_changed)
        parts.monitor.add_result_listener(parts.monitorfile.record)
        parts.monitor.add_result_listener(parts.realstats.record)
        parts.monitor.add_result_listener(self.systemd.progress)
        parts.alerts.start()
        parts.monitor.configure(loaded.config)
        loaded.own_config()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, lambda: self.hooks.spawn(parts.watcher.reload()))
        loop.add_signal_handler(signal.SIGUSR1, self._reopen_logs)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.life.stop)
        self._tasks += [
            asyncio.create_task(parts.reconciler.run(), name="reconcile"),
            asyncio.create_task(parts.watcher.run(), name="watch-config"),
            asyncio.create_task(self._first_pass(parts), name="first-pass"),
            asyncio.create_task(parts.drift.run(), name="drift"),
        ]
        self.systemd.start(lambda: self._status_line(parts), lambda: stall_limit(parts.loaded.config))
        parts.reconciler.mark_dirty()
        await self.life.stopping.wait()
        return self.life.exit_status

    async def _start_api(self, parts: Parts) -> bool:
        """The HTTP API, when saru.toml has ``[api]`` with a listen address; False: it cannot listen."""
        settings = parts.loaded.settings.api
        endpoint = settings.endpoint if settings is not None else None
        if settings is None or endpoint is None:
            return True
        from saru.api.server import APIServer, APIStartError  # aiohttp is loaded only by a daemon with an API

        api = APIServer(parts.service, settings, endpoint, opened=lambda: self.held.dataplane)
        try:
            await api.start()
        except APIStartError as exc:
            LOGGER.error("%s", exc)
            return False
        self.api, self.held.api = api, True
        self.journal.emit(DaemonEvent(f"HTTP API listening on {api.url}"
                                      + ("" if settings.token_file else " (read-only: no token_file)")))
        return True

    async def _start_bgp(self, parts: Parts, control_path: Path) -> bool:
        """``[bgp]``: the routing daemon, every VIP withdrawn until the first table is applied."""
        from saru.bgp import RoutingDaemonError

        settings = parts.loaded.settings.bgp
        assert settings is not None
        announcer = Announcer(settings, parts.loaded, parts.dataplane, parts.reconciler, self.life,
                              self.journal, bird_factory(control_path), health=parts.monitor.health)
        try:
            await announcer.start()
        except (RoutingDaemonError, OSError) as exc:
            LOGGER.error("cannot start BGP: %s", exc)
            await announcer.close()
            return False
        parts.service.announcer, self.held.bgp = announcer, True
        self._tasks.append(asyncio.create_task(self._announce_ready(announcer), name="bgp-ready"))
        return True

    async def _announce_ready(self, announcer: Announcer) -> None:
        await self.life.ready.wait()
        announcer.poke()

    async def _first_pass(self, parts: Parts) -> None:
        """Ready once every real has its first verdict and the table is applied; then HA starts."""
        reconciler = parts.reconciler
        await parts.monitor.first_pass()
        reconciler.applied.clear()
        try:
            await reconciler.reconcile_or_retry()
        except DataplaneError:  # the reconcile loop retries; ready only once a table is applied
            await reconciler.applied.wait()
        self.life.ready.set()
        self.life.phase = "running"
        settle()
        self.journal.emit(DaemonEvent("All real servers checked; table in line with health"))
        if parts.gate.ha_settings is not None:
            await parts.gate.start_node()
            if self.life.stopping.is_set():  # HA could not start: not a successful start (exit status 1)
                return
        self.systemd.ready(self._status_line(parts))
        for name in self.fdstore.release_untaken():  # an HA backup's: it serves none of them
            LOGGER.info("Closed the kept listening socket %s: not served by this director now", name)
        if self.options.on_ready is not None:
            self.options.on_ready()

    def _status_line(self, parts: Parts) -> str:
        """systemd's STATUS= line: ``MASTER, 2 virtuals, 4/4 reals up, nft``."""
        node = parts.gate.node
        return status_line(node.snapshot()["state"] if node is not None else None,
                           len(parts.loaded.config.virtuals), parts.monitor.health(),
                           parts.dataplane.capabilities.name, self.life.ready.is_set())

    def _reopen_logs(self) -> None:
        """SIGUSR1: reopen the log file now (after a rotation), like nginx."""
        for path in reopen_log_files():
            LOGGER.info("Reopened the log file %s (SIGUSR1)", path)

    # ------------------------------------------------------------------ stop

    async def _shutdown(self, parts: Parts) -> None:
        self.systemd.stopping()
        await self.systemd.close()
        self.life.phase = "stopping"
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        others = [task for task in self._tasks if task.get_name() != "reconcile"]
        for task in others:
            task.cancel()
        for task in others:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        announcer = parts.service.announcer
        if self.held.bgp and announcer is not None:  # withdrawn first, while the table still forwards
            parts.service.announcer = None
            await announcer.close()
        await parts.gate.stop_node()  # priority-0 advert, VIP removed, table cleared: while the plane works
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._heap.cancel()
        await parts.monitor.close()
        await parts.drift.close()  # a check under way ends before the table is cleaned
        # release what this daemon holds, and only that (see Held)
        if self.held.table:
            self.journal.emit(DaemonEvent("Stopping: cleaning the table (cleanstop)"))
            await parts.reconciler.cleanstop()
            await parts.gate.sync_daemons(stop=True)
        if self.held.api and self.api is not None:  # after the cleanstop (its events are streamed),
            await self.api.close()  # before the plane closes (no request reads a closed plane)
        if self.held.dataplane:
            with contextlib.suppress(Exception):
                await parts.dataplane.close()
        if self.held.control and self.control is not None:
            await self.control.close()
        self.fdstore.close()
        await parts.alerts.close()
        await parts.monitorfile.close()
        await self.hooks.wait()
        if self.held.pidfile and self.options.pidfile:
            remove_pidfile(self.options.pidfile)
        if self.instance_lock is not None:
            self.instance_lock.release()
            self.instance_lock = None
        self.held = Held()
        self.journal.emit(DaemonEvent("saru stopped"))
        if self._bus_handler is not None:
            LOGGER.removeHandler(self._bus_handler)
            self._bus_handler = None
