"""The director daemon: wires config, monitor, planner, diff and a data plane together.

One asyncio loop runs everything. Health verdicts from the monitor mark the table dirty; one
reconciler task then reads the data plane's table, plans the desired one, diffs and applies the
ops, and narrates them in ldirectord's words. Reloads (SIGHUP, ``saru reload``, ``autoreload``)
parse the new file off-loop; a bad file is logged and the old config keeps running. SIGTERM/SIGINT
stop the daemon, removing the virtual services whose ``cleanstop`` is yes.

High availability (``saru.toml`` ``[ha] mode = "vrrp"``, loaded from ``DaemonOptions.settings_path``):
the HA node (``saru.ha.node``) starts once the first health pass is done, so a node never becomes
master with a table that does not yet know which reals are alive. The table of the services this
daemon owns is programmed only while the node is active (``set_active``), unless ``warm_standby``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, TextIO

from saru import __version__
from saru.config.diagnostics import ConfigError
from saru.config.ldirectord import parse_file
from saru.config.native import load_settings
from saru.control import ControlServer, default_socket_path, runtime_dir
from saru.dataplane.base import Dataplane, DataplaneError, ServiceStats
from saru.dataplane.select import select_dataplane, unsupported
from saru.diff import OpError, apply_ops, diff
from saru.driftwatch import DEFAULT_INTERVAL, DriftWatcher
from saru.events import DaemonEvent, Event, TableChange
from saru.events.alerts import AlertSink
from saru.events.logsink import configure_logging, reopen_log_files
from saru.events.monitorfile import MonitorFile
from saru.events.narrate import narrate
from saru.hooks import run_hook
from saru.instance_lock import InstanceLock, InstanceLocked, lock_path
from saru.model import Config, DelService, ServiceKey, Settings, Table, format_hostport
from saru.monitor import Monitor
from saru.planner import desired_table, dest_port, fallback_active, real_ref
from saru.tablecodec import key_from_dict, key_to_dict, op_from_dict, table_to_list

LOGGER = logging.getLogger("saru")
RETRY_DELAY = 1.0  # first retry of a failed apply; doubled at each failure once ready, up to RETRY_MAX
RETRY_MAX = 30.0
DEFAULT_START_TIMEOUT = 30.0


@dataclass
class DaemonOptions:
    config_path: str
    dataplane: str = "auto"
    control_path: str | None = None
    pidfile: str | None = None
    console: TextIO | None = None
    debug: bool = False
    rise: int = 1
    watch_interval: float = 1.0  # how often the config file is stat()ed for autoreload/callback
    #: called once when every real has its first verdict and the table is applied (daemonising
    #: front ends such as ``saru-ldirectord start`` return to their caller then)
    on_ready: Callable[[], None] | None = None
    #: saru.toml: ``[ha] mode = "vrrp"`` makes this daemon one of a failover pair
    settings_path: str | None = None
    #: before the daemon is first ready, a table that keeps failing to apply for this many seconds
    #: stops it with exit status 1 (0: keep retrying); after that, failures are retried, never fatal
    start_timeout: float = DEFAULT_START_TIMEOUT
    #: the give-up message's advice (how this front end asks for endless retries)
    start_timeout_hint: str = "--start-timeout 0 keeps retrying"
    #: seconds between two checks of the kernel's table (and of the VIP on an HA master) against
    #: what Saru applied; 0: only on status, plan and reload (``saru.driftwatch``)
    drift_interval: float = DEFAULT_INTERVAL


@dataclass
class Held:
    """What this daemon has acquired. Its way out releases exactly that, so a daemon refused at start
    (socket or pid file of a running one) touches nothing of the running one's."""

    pidfile: bool = False  # the pid file names this process
    control: bool = False  # the control socket was bound by this process
    dataplane: bool = False  # the data plane handle is open
    table: bool = False  # this daemon directs its config's services: it programs and cleanstops them


@dataclass
class ApplyError:
    """The table could not be brought in line with health: the latest failure of an unbroken run."""

    message: str
    since: float  # wall clock of the first failure of the run
    at: float  # wall clock of the latest failure
    attempts: int = 1
    since_monotonic: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"message": self.message, "since": self.since, "at": self.at, "attempts": self.attempts}


class Daemon:
    """A running director. ``await Daemon(options).run()`` returns the process exit status."""

    def __init__(self, options: DaemonOptions) -> None:
        self.options = options
        self.config_path = os.path.abspath(options.config_path)
        self.cfgname = Path(self.config_path).name
        self.config: Config | None = None
        self.dataplane: Dataplane | None = None
        self.dataplane_reason = ""
        self.monitor: Monitor | None = None
        self.control: ControlServer | None = None  # set once its socket is bound (held.control)
        self.held = Held()
        self.instance_lock: InstanceLock | None = None  # one daemon per config per network namespace
        self.apply_error: ApplyError | None = None
        self._retry_now = asyncio.Event()  # a reload cuts a retry back-off short
        self.drift: DriftWatcher | None = None
        self.events: deque[str] = deque(maxlen=200)
        self.dirty = asyncio.Event()
        self.stopping = asyncio.Event()
        self.ready = asyncio.Event()  # set once every real has its first verdict and the table is applied
        self.applied = asyncio.Event()  # set by every successful reconciliation
        self.reconcile_lock = asyncio.Lock()
        self.owned: set[ServiceKey] = set()
        self.started_at = time.time()
        self.reloads = 0
        self.last_reload_error: str | None = None
        self._file_state: tuple[float, int, str] | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        #: ldirectord's daemon states, used by emailalertstatus
        self.state = "starting"
        self.alerts = AlertSink(lambda: self.config, state=lambda: self.state)
        self.monitorfile = MonitorFile(lambda: self.config)
        self._hooks: set[asyncio.Future[Any]] = set()
        self._last_hook: asyncio.Future[None] | None = None
        self.settings = Settings()
        self.ha: Any = None  # saru.ha.node.HANode when [ha] mode = "vrrp"
        #: whether the owned services may be in the table (False on an HA backup without warm_standby)
        self.active = True
        self._sync_warned = False
        self.exit_status = 0

    # ------------------------------------------------------------------ life cycle

    async def run(self) -> int:
        try:
            if self.options.settings_path:
                self.settings = await asyncio.to_thread(load_settings, self.options.settings_path)
            config = await asyncio.to_thread(parse_file, self.config_path)
        except ConfigError as exc:
            print(str(exc), file=sys.stderr)
            return 2
        for warning in self.settings.warnings:
            print(str(warning), file=sys.stderr)
        if self.ha_settings is not None:
            self.active = False  # until the HA node says this director is master
        for warning in config.warnings:
            print(str(warning), file=sys.stderr)
        console = self.options.console
        if console is None and config.globals.supervised:
            console = sys.stdout
        configure_logging(config.globals.logfile, self.cfgname, console, self.options.debug)
        try:
            self.dataplane, self.dataplane_reason = select_dataplane(self.options.dataplane)
        except DataplaneError as exc:
            print(f"saru: {exc}", file=sys.stderr)
            return 2
        problems = unsupported(config, self.dataplane.capabilities)
        if problems:
            print("\n".join(map(str, problems)), file=sys.stderr)
            return 2
        self.config = config
        self._file_state = self._stat_config()
        try:
            return await self._serve()
        finally:
            await self._shutdown()

    async def _serve(self) -> int:
        assert self.config is not None and self.dataplane is not None
        self.emit(DaemonEvent(f"Starting saru {__version__} with {self.config_path} "
                              f"on the {self.dataplane.capabilities.name} data plane"))
        # the exclusive resources first, the data plane after: refused here, this daemon has touched
        # nothing (another daemon's table, socket, sync daemons or listeners stay as they are)
        if not self._write_pidfile():
            return 1
        self.held.pidfile = True
        control_path = Path(self.options.control_path or default_socket_path(self.config_path))
        control = ControlServer(control_path, {
            "status": self._cmd_status,
            "reload": self._cmd_reload,
            "table": self._cmd_table,
            "stop": self._cmd_stop,
            "stats": self._cmd_stats,
            "apply": self._cmd_apply,
            "zero": self._cmd_zero,
            "connections": self._cmd_connections,
            "ha": self._cmd_ha,
            "ha-resign": self._cmd_ha_resign,
            "ha-takeover": self._cmd_ha_takeover,
        })
        try:
            await control.start()
        except OSError as exc:
            LOGGER.error("cannot open control socket: %s", exc)
            return 1
        self.control, self.held.control = control, True
        lock = InstanceLock(lock_path(runtime_dir(), self.config_path), self.config_path)
        try:
            lock.acquire()
        except (InstanceLocked, OSError) as exc:
            LOGGER.error("%s", exc)
            return 1
        self.instance_lock = lock
        try:
            await self.dataplane.start()
        except (DataplaneError, OSError) as exc:
            LOGGER.error("cannot start the %s data plane: %s", self.dataplane.capabilities.name, exc)
            return 1
        self.held.dataplane = self.held.table = True
        await self._sync_daemons()
        self.monitor = Monitor(emit=self.emit, rise=self.options.rise)
        self.monitor.add_listener(self.dirty.set)
        self.monitor.add_result_listener(self.monitorfile.record)
        self.alerts.start()
        self.monitor.configure(self.config)
        self.owned = {v.key for v in self.config.virtuals}
        self.drift = DriftWatcher(self.dataplane, lambda: self.owned, self.reconcile_lock, self.emit,
                                  self.dirty.set, self.options.drift_interval)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, lambda: self._spawn(self.reload()))
        loop.add_signal_handler(signal.SIGUSR1, self._reopen_logs)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        self._tasks = [
            asyncio.create_task(self._reconcile_loop(), name="reconcile"),
            asyncio.create_task(self._watch_config(), name="watch-config"),
            asyncio.create_task(self._first_pass(), name="first-pass"),
            asyncio.create_task(self.drift.run(), name="drift"),
        ]
        self.dirty.set()
        await self.stopping.wait()
        return self.exit_status

    async def _first_pass(self) -> None:
        assert self.monitor is not None
        await self.monitor.first_pass()
        self.applied.clear()
        try:
            await self.reconcile()
        except DataplaneError as exc:  # the reconcile loop retries; ready only once a table is applied
            self._apply_failed(exc)
            self.dirty.set()
            await self.applied.wait()
        self.ready.set()
        self.state = "running"
        self.emit(DaemonEvent("All real servers checked; table in line with health"))
        if self.ha_settings is not None:
            await self._start_ha()
            if self.stopping.is_set():  # HA could not start: not a successful start (exit status 1)
                return
        if self.options.on_ready is not None:
            self.options.on_ready()

    @property
    def ha_settings(self) -> Any:
        """The ``[ha]`` settings when this daemon runs the built-in VRRP, else None."""
        ha = self.settings.ha
        return ha if ha is not None and ha.mode == "vrrp" else None

    async def _start_ha(self) -> None:
        from saru.ha.node import HANode

        self.ha = HANode(self.ha_settings, set_active=self.set_active, emit=self.emit,
                         vip_check_interval=self.options.drift_interval)
        try:
            await self.ha.start()
        except Exception as exc:  # no VRRP (no such interface, no privilege…): a director that can never
            # take the VIP must not look healthy; stop with an error so the operator or systemd sees it
            LOGGER.error("HA: cannot start: %s; stopping", exc)
            self.exit_status = 1
            self.stopping.set()

    async def set_active(self, active: bool) -> None:
        """The HA node's gate: program (True) or clear (False) the owned services; returns when done."""
        self.active = active
        if self.stopping.is_set() and not active:
            return  # stopping: the cleanstop setting of each virtual decides, as without HA
        try:
            await self.reconcile()
        except DataplaneError as exc:
            self._apply_failed(exc)
            self.dirty.set()
            raise
        finally:
            await self._sync_daemons()

    async def _sync_daemons(self, stop: bool = False) -> None:
        """Run the IPVS sync daemons ``[ipvs.sync]`` asks for (``follow-ha``: master daemon while this
        director is active, backup daemon otherwise); ``stop`` stops the ones Saru started."""
        sync = self.settings.ipvs_sync
        if sync is None or self.dataplane is None:
            return
        if self.dataplane.capabilities.name != "ipvs":
            if not stop and not self._sync_warned:
                LOGGER.warning("[ipvs.sync] is ignored: the %s data plane has no IPVS connection sync",
                               self.dataplane.capabilities.name)
                self._sync_warned = True
            return
        from saru.dataplane.ipvs import SyncError, apply_sync

        try:
            done = await apply_sync(self.dataplane, None if stop else sync, "MASTER" if self.active else "BACKUP")
        except SyncError as exc:
            LOGGER.error("IPVS connection sync: %s", exc)
            return
        for line in done:
            self.emit(DaemonEvent(f"IPVS connection sync: {line}"))

    def _gated(self) -> bool:
        """Whether the owned services must be out of the table right now."""
        ha = self.ha_settings
        return ha is not None and not self.active and not ha.warm_standby

    async def _shutdown(self) -> None:
        self.state = "stopping"
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        for task in self._tasks:
            if task.get_name() != "reconcile":
                task.cancel()
        for task in self._tasks:
            if task.get_name() != "reconcile":
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.ha is not None:  # priority-0 advert, VIP removed, table cleared: while the plane works
            try:
                await self.ha.stop(graceful=True)
            except Exception:
                LOGGER.exception("HA: stopping failed")
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.monitor is not None:
            await self.monitor.close()
        if self.drift is not None:  # a check under way ends before the table is cleaned
            await self.drift.close()
        # release what this daemon holds, and only that (see Held)
        if self.held.table and self.dataplane is not None and self.config is not None:
            self.emit(DaemonEvent("Stopping: cleaning the table (cleanstop)"))
            await self._cleanstop()
            await self._sync_daemons(stop=True)
        if self.held.dataplane and self.dataplane is not None:
            with contextlib.suppress(Exception):
                await self.dataplane.close()
        if self.held.control and self.control is not None:
            await self.control.close()
        await self.alerts.close()
        await self.monitorfile.close()
        if self._hooks:
            await asyncio.gather(*self._hooks, return_exceptions=True)
        if self.held.pidfile:
            self._remove_pidfile()
        if self.instance_lock is not None:
            self.instance_lock.release()
            self.instance_lock = None
        self.held = Held()
        if self.config is not None:
            self.emit(DaemonEvent("saru stopped"))

    async def _cleanstop(self) -> None:
        assert self.dataplane is not None and self.config is not None
        async with self.reconcile_lock:
            try:
                current = await self.dataplane.read()
                ops = [DelService(v.key) for v in self.config.virtuals
                       if v.cleanstop and v.key in current.services]
                if ops:
                    await self.dataplane.apply(ops)
                    for change in narrate(ops, current, self.config):
                        self.emit(change)
                    # the fallback leaves with its virtual: tell fallbackcommand (ldirectord issue #750)
                    self._fallback_commands(self.config, current, await self.dataplane.read())
            except DataplaneError as exc:
                LOGGER.error("cleanstop failed: %s", exc)

    def _reopen_logs(self) -> None:
        """SIGUSR1: reopen the log file now (after a rotation), like nginx."""
        for path in reopen_log_files():
            LOGGER.info("Reopened the log file %s (SIGUSR1)", path)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._hooks.add(task)
        task.add_done_callback(self._hooks.discard)

    def _run_hook_in_order(self, command: str, *args: str) -> None:
        """Run an external command after every earlier one has finished (start/stop never swap)."""
        previous = self._last_hook

        async def after_previous() -> None:
            if previous is not None:
                await asyncio.gather(previous, return_exceptions=True)
            await run_hook(command, *args)

        self._last_hook = asyncio.ensure_future(after_previous())
        self._hooks.add(self._last_hook)
        self._last_hook.add_done_callback(self._hooks.discard)

    # ------------------------------------------------------------------ events

    def emit(self, event: Event) -> None:
        LOGGER.log(event.level, self._record(event))
        if isinstance(event, TableChange):
            self.alerts.handle(event, self.state)

    def _record(self, event: Event) -> str:
        """Keep the event for ``status`` (its last events); return its message."""
        message = event.message()
        self.events.append(f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(event.at))} {message}")
        return message

    # ------------------------------------------------------------------ reconciliation

    async def _reconcile_loop(self) -> None:
        while True:
            await self.dirty.wait()
            self.dirty.clear()
            try:
                await self.reconcile()
            except DataplaneError as exc:
                delay = self._apply_failed(exc)
                self._retry_now.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._retry_now.wait(), delay)
                self.dirty.set()

    def _apply_failed(self, exc: DataplaneError) -> float:
        """Record a failed apply (``status``, log, events); return the delay before the next attempt.

        Until the daemon is first ready, retries come every RETRY_DELAY and a failure lasting
        ``start_timeout`` seconds stops the daemon with exit status 1 (systemd and ``saru-ldirectord
        start`` see it); once ready, retries back off up to RETRY_MAX and never stop the daemon."""
        now, mono = time.time(), time.monotonic()
        error = self.apply_error
        if error is None:
            error = self.apply_error = ApplyError(str(exc), since=now, at=now, since_monotonic=mono)
            self._record(DaemonEvent(f"Cannot program the table: {exc}"))  # logged just below
        else:
            error.message, error.at, error.attempts = str(exc), now, error.attempts + 1
        timeout = self.options.start_timeout
        if not self.ready.is_set():
            if timeout > 0 and mono - error.since_monotonic >= timeout:
                if not self.stopping.is_set():
                    LOGGER.error("could not program the table within %gs (start timeout, %d attempts): %s; "
                                 "stopping (%s)", timeout, error.attempts, exc,
                                 self.options.start_timeout_hint)
                    self.exit_status = 1
                    self.stopping.set()
                return RETRY_DELAY
            delay = RETRY_DELAY
        else:
            delay = min(RETRY_MAX, RETRY_DELAY * 2 ** min(error.attempts - 1, 16))
        LOGGER.error("applying the table failed (attempt %d), retrying in %gs: %s", error.attempts, delay, exc)
        return delay

    def _apply_succeeded(self) -> None:
        self.applied.set()
        error, self.apply_error = self.apply_error, None
        if error is not None:
            self.emit(DaemonEvent(f"Table applied again after {error.attempts} failed attempts "
                                  f"({time.time() - error.since:.0f}s)"))

    async def reconcile(self) -> None:
        """Bring the data plane in line with config + health (minimal ops, narrated)."""
        assert self.dataplane is not None and self.config is not None and self.monitor is not None
        async with self.reconcile_lock:
            config = self.config
            current = await self.dataplane.read()
            rewrite = self.dataplane.capabilities.rewrites_gate_ports
            desired = desired_table(config, self.monitor.health(), current, kernel_ports=rewrite)
            if self._gated():
                desired = Table.of([])
            ops = diff(current, desired, owned=self.owned)
            if not ops:
                self._apply_succeeded()
                return
            await self.dataplane.apply(ops)
            self._apply_succeeded()
            self.owned = {v.key for v in config.virtuals}
            for change in narrate(ops, current, config):
                self.emit(change)
            self._fallback_commands(config, current, desired)

    def _fallback_commands(self, config: Config, before: Table, after: Table) -> None:
        rewrite = self.dataplane.capabilities.rewrites_gate_ports if self.dataplane else True
        was = fallback_active(config, before, rewrite)
        now = fallback_active(config, after, rewrite)
        for v in config.virtuals:
            command = v.fallbackcommand
            if not command or was.get(v.key) == now.get(v.key):
                continue
            action = "start" if now.get(v.key) else "stop"
            target = f"{v.fwmark}:0" if v.protocol == "fwm" else format_hostport(v.address, v.port)
            self._run_hook_in_order(command, action, target, v.protocol)

    # ------------------------------------------------------------------ reload

    async def reload(self) -> dict[str, Any]:
        """Re-read the config file; on error keep the running config and say why."""
        self.emit(DaemonEvent(f"Reloading configuration {self.config_path}"))
        await self._check_drift("reload")
        previous_state, self.state = self.state, "reloading"
        try:
            settings = self.settings
            if self.options.settings_path:
                settings = await asyncio.to_thread(load_settings, self.options.settings_path)
            new = await asyncio.to_thread(parse_file, self.config_path)
            if self.dataplane is not None:
                problems = unsupported(new, self.dataplane.capabilities)
                if problems:
                    raise ConfigError(problems)
        except ConfigError as exc:
            self.last_reload_error = str(exc)
            LOGGER.error("Error reading configuration, keeping the running one:\n%s", exc)
            self.state = previous_state
            return {"reloaded": False, "errors": str(exc).splitlines()}
        settings, held = _settings_for_reload(self.settings, settings)
        for warning in held:
            LOGGER.warning("%s", warning)
        sync_changed = settings.ipvs_sync != self.settings.ipvs_sync
        self.settings = settings
        if sync_changed:
            await self._sync_daemons()
        old = self.config
        if old is not None:
            self.owned |= {v.key for v in old.virtuals}
        self.config = new
        self._file_state = self._stat_config()
        self.reloads += 1
        self.last_reload_error = None
        configure_logging(new.globals.logfile, self.cfgname,
                          self.options.console or (sys.stdout if new.globals.supervised else None),
                          self.options.debug)
        if self.monitor is not None:
            self.monitor.configure(new)
        self.dirty.set()
        self._retry_now.set()
        self.state = previous_state
        return {"reloaded": True, "errors": [], "warnings": [str(w) for w in new.warnings] + held}

    def _stat_config(self) -> tuple[float, int, str] | None:
        try:
            st = os.stat(self.config_path)
            digest = hashlib.sha256(Path(self.config_path).read_bytes()).hexdigest()
        except OSError:
            return None
        return (st.st_mtime, st.st_size, digest)

    async def _watch_config(self) -> None:
        """ldirectord's autoreload/callback: act when the file's content (not just mtime) changes."""
        while True:
            await asyncio.sleep(self.options.watch_interval)
            try:
                st = os.stat(self.config_path)
            except OSError:
                continue
            if self._file_state and (st.st_mtime, st.st_size) == self._file_state[:2]:
                continue
            state = self._stat_config()
            if state is None or (self._file_state and state[2] == self._file_state[2]):
                self._file_state = state or self._file_state
                continue
            self._file_state = state
            assert self.config is not None
            LOGGER.info("Configuration file '%s' has changed on disk", self.config_path)
            callback = self.config.globals.callback
            if self.config.globals.autoreload:
                LOGGER.info(" - reread new configuration")
                await self.reload()
            else:
                LOGGER.info(" - ignore new configuration")
            if callback:
                self._run_hook_in_order(callback, self.config_path)

    # ------------------------------------------------------------------ pid file

    def _write_pidfile(self) -> bool:
        path = self.options.pidfile
        if not path:
            return True
        try:
            other = int(Path(path).read_text().split()[0])
            os.kill(other, 0)
            if other != os.getpid():
                LOGGER.error("already running with pid %s (pid file %s)", other, path)
                return False
        except (OSError, ValueError, IndexError):
            pass
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(f"{os.getpid()}\n")
        except OSError as exc:
            LOGGER.error("cannot write pid file %s: %s", path, exc.strerror)
            return False
        return True

    def _remove_pidfile(self) -> None:
        path = self.options.pidfile
        if not path:
            return
        with contextlib.suppress(OSError, ValueError):
            if int(Path(path).read_text().split()[0]) == os.getpid():
                Path(path).unlink()

    # ------------------------------------------------------------------ control commands

    async def _cmd_reload(self, _request: dict[str, Any]) -> dict[str, Any]:
        return await self.reload()

    async def _cmd_stop(self, _request: dict[str, Any]) -> dict[str, Any]:
        self.stopping.set()
        return {"stopping": True}

    async def _check_drift(self, found_by: str) -> dict[str, Any] | None:
        """Check the kernel's table against what was applied (repairing a drift); the event's text."""
        event = await self.drift.check(found_by) if self.drift is not None else None
        return None if event is None else {"detail": event.message(), "repaired": event.repaired}

    async def _cmd_table(self, _request: dict[str, Any]) -> dict[str, Any]:
        assert self.dataplane is not None and self.monitor is not None
        found = await self._check_drift("table request (saru plan)")
        table = await self.dataplane.read()
        health = [{"service": str(ref.service), "address": ref.address, "port": ref.port, "up": up}
                  for ref, up in self.monitor.health().items()]
        return {"table": table_to_list(table), "health": health, "owned": [str(k) for k in self.owned],
                "dataplane": self.dataplane.capabilities.name, "drift": found}

    async def _cmd_stats(self, _request: dict[str, Any]) -> dict[str, Any]:
        assert self.dataplane is not None
        stats = await self.dataplane.stats()
        return {"stats": [
            {"service": key_to_dict(key), "connections": s.connections, "bytes_in": s.bytes_in,
             "bytes_out": s.bytes_out,
             "dests": [{"address": a, "port": p, "counters": asdict(d)} for (a, p), d in s.dests.items()]}
            for key, s in stats.items()
        ]}

    async def _cmd_zero(self, request: dict[str, Any]) -> dict[str, Any]:
        """``saru ipvsadm -Z [-t|-u|-f service]``: reset counters."""
        assert self.dataplane is not None
        try:
            key = key_from_dict(request["service"]) if request.get("service") else None
        except (KeyError, TypeError, ValueError) as exc:
            return {"ok": False, "error": f"malformed service: {exc}"}
        try:
            await self.dataplane.zero(key)
        except DataplaneError as exc:
            return {"ok": False, "error": str(exc)}
        return {"zeroed": True}

    async def _cmd_connections(self, _request: dict[str, Any]) -> dict[str, Any]:
        """``saru ipvsadm -L -c``: the plane's connection entries."""
        assert self.dataplane is not None
        try:
            entries = await self.dataplane.connections()
        except DataplaneError as exc:
            return {"ok": False, "error": str(exc)}
        return {"connections": [asdict(e) for e in entries]}

    async def _cmd_apply(self, request: dict[str, Any]) -> dict[str, Any]:
        """Manual table changes (``saru ipvsadm``): applied as one batch and logged; a service the
        config owns is brought back in line with health at its next reconciliation."""
        assert self.dataplane is not None and self.config is not None
        try:
            ops = [op_from_dict(item) for item in request.get("ops", [])]
        except (KeyError, TypeError, ValueError) as exc:
            return {"ok": False, "error": f"malformed ops: {exc}"}
        async with self.reconcile_lock:
            current = await self.dataplane.read()
            try:
                apply_ops(current, ops)
            except OpError as exc:
                return {"ok": False, "error": str(exc)}
            await self.dataplane.apply(ops)
            for change in narrate(ops, current, self.config):
                self.emit(DaemonEvent(f"manual change (saru ipvsadm): {change.message()}"))
        return {"applied": len(ops)}

    async def _cmd_ha(self, _request: dict[str, Any]) -> dict[str, Any]:
        if self.ha is None:
            return self._no_ha()
        return {"ha": self.ha.snapshot()}

    async def _cmd_ha_resign(self, request: dict[str, Any]) -> dict[str, Any]:
        """failover-test: hand the VIP to the peer and refuse it back for ``hold`` seconds."""
        if self.ha is None:
            return self._no_ha()
        hold = request.get("hold", 30.0)
        if not isinstance(hold, int | float) or isinstance(hold, bool) or not 0 <= hold <= 3600:
            return {"ok": False, "error": "hold must be a number of seconds, 0-3600"}
        answer: dict[str, Any] = self.ha.resign(float(hold))
        return answer

    async def _cmd_ha_takeover(self, _request: dict[str, Any]) -> dict[str, Any]:
        if self.ha is None:
            return self._no_ha()
        answer: dict[str, Any] = self.ha.takeover()
        return answer

    def _no_ha(self) -> dict[str, Any]:
        if self.ha_settings is not None:
            return {"ok": False, "error": "HA is configured but not started yet (first health pass running)"}
        return {"ok": False, "error": "HA is not configured for this daemon (saru.toml [ha] mode = \"vrrp\", "
                                     "passed with --settings)"}

    async def _cmd_status(self, _request: dict[str, Any]) -> dict[str, Any]:
        assert self.dataplane is not None and self.config is not None and self.monitor is not None
        await self._check_drift("status")
        table = await self.dataplane.read()
        stats = await self.dataplane.stats()
        return status_document(self, table, stats)


def status_document(daemon: Daemon, table: Table, stats: dict[ServiceKey, ServiceStats]) -> dict[str, Any]:
    """The JSON answer to ``status``: the daemon, then every virtual with its reals."""
    assert daemon.config is not None and daemon.monitor is not None and daemon.dataplane is not None
    snapshot = daemon.monitor.snapshot()
    rewrite = daemon.dataplane.capabilities.rewrites_gate_ports
    fallbacks = fallback_active(daemon.config, table, rewrite)
    virtuals = []
    for v in daemon.config.virtuals:
        service = table.services.get(v.key)
        service_stats = stats.get(v.key, ServiceStats())
        reals = []
        for r in v.reals:
            ref = real_ref(v, r)
            health = snapshot.get(ref)
            port = dest_port(v, r.forward, r.port, rewrite)
            dest = service.dests.get((r.address, port)) if service else None
            dstats = service_stats.dests.get((r.address, port))
            last = health.last_result if health else None
            if health is None or health.up is None:
                state = "unknown"
            elif health.maintenance:
                state = "maintenance"
            else:
                state = "up" if health.up else "down"
            reals.append({
                "address": r.address, "port": r.port, "forward": r.forward,
                "configured_weight": r.weight,
                "weight": dest.weight if dest else None,
                "in_table": dest is not None,
                "state": state,
                "failures": health.failures if health else 0,
                "active_connections": dstats.active_connections if dstats else 0,
                "connections": dstats.connections if dstats else 0,
                "last_check": None if last is None else {
                    "ok": last.ok, "message": last.message, "latency": last.latency,
                    "at": health.last_checked if health else None,
                },
            })
        virtuals.append({
            "service": str(v.key), "name": v.name, "protocol": v.protocol, "scheduler": v.scheduler,
            "checktype": v.checktype, "service_type": v.service,
            "in_table": service is not None,
            "fallback": None if v.fallback is None else format_hostport(v.fallback.address, v.fallback.port),
            "fallback_active": fallbacks.get(v.key, False),
            "connections": service_stats.connections,
            "reals": reals,
        })
    return {
        "version": __version__,
        "pid": os.getpid(),
        "config": daemon.config_path,
        "dataplane": {"name": daemon.dataplane.capabilities.name, "reason": daemon.dataplane_reason},
        "started_at": daemon.started_at,
        "ready": daemon.ready.is_set(),
        "apply_error": daemon.apply_error.to_dict() if daemon.apply_error is not None else None,
        "reloads": daemon.reloads,
        "last_reload_error": daemon.last_reload_error,
        "drift": daemon.drift.snapshot() if daemon.drift is not None else None,
        "virtuals": virtuals,
        "ha": daemon.ha.snapshot() if daemon.ha is not None else None,
        "settings": daemon.settings.path,
        "events": list(daemon.events)[-20:],
        "cluster_events": _cluster_events(daemon.settings),
    }


def _cluster_events(settings: Any) -> list[str]:
    """With ``[ha] mode = "pacemaker"``: the cluster's last events in short sentences (pm_logconv's job)."""
    if settings.ha is None or settings.ha.mode != "pacemaker":
        return []
    from saru.cluster.logconv import PACEMAKER_LOG, recent_events

    return recent_events(os.environ.get("SARU_PACEMAKER_LOG", PACEMAKER_LOG), settings.cluster)


def _settings_for_reload(running: Settings, new: Settings) -> tuple[Settings, list[str]]:
    """What a reload takes from a re-read saru.toml: ``[ipvs.sync]`` and ``[cluster]`` at once; the
    data plane and ``[ha]`` only at the next restart (a running VRRP node and data plane are not
    swapped under traffic) — with a warning saying so."""
    held: list[str] = []
    if new.director != running.director:
        held.append("saru.toml [director] changed: it takes effect at the next restart")
    if new.ha != running.ha:
        held.append("saru.toml [ha] changed: it takes effect at the next restart "
                    "(restart the backup first, then `saru failover-test`, then the other director)")
    return replace(new, director=running.director, ha=running.ha), held
