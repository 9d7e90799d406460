"""The config watcher: reloads (SIGHUP, ``saru reload``, ``autoreload``) and ldirectord's
``autoreload``/``callback`` on a file that changed on disk.

A reload parses the new files off-loop; a bad file is logged, the old config keeps running and the
reload says why (``ReloadAnswer``). From a re-read ``saru.toml`` a reload takes ``[ipvs.sync]``,
``[cluster]`` and ``[checks]`` at once, the data plane, ``[ha]`` and ``[api]`` only at the next
restart (a running VRRP node and data plane are not swapped under traffic), with a warning saying
so (``settings_for_reload``). The services of the replaced config stay owned until the next
applied table has removed them.

The file is ``stat()``ed every ``interval`` seconds; only a change of its content (a digest, not
just the mtime) counts. Autoreload skips an empty file (an editor truncates, then writes: caught in
between, it would purge every virtual) until the file changes again; SIGHUP and ``saru reload``
still apply it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import NotRequired, TypedDict

from saru.checks import tlsclient
from saru.config.diagnostics import ConfigError
from saru.config.ldirectord import parse_file
from saru.config.native import load_settings
from saru.daemon.gate import HAGate
from saru.daemon.hooks import HookRunner
from saru.daemon.journal import Journal
from saru.daemon.reconciler import Reconciler
from saru.daemon.state import Life, Loaded
from saru.dataplane.base import Capabilities
from saru.dataplane.select import unsupported
from saru.events import ConfigReloaded, DaemonEvent, ReloadFailed
from saru.events.throttle import Kind, Throttle, default_interval, lasting
from saru.model import Config, Settings

LOGGER = logging.getLogger("saru")

#: (mtime, size, sha256 of the content) of the config file; None when it cannot be read
FileState = tuple[float, int, str] | None


class ReloadAnswer(TypedDict):
    """What a reload did: ``reloaded`` false with the ``errors`` (the running config kept), else the
    new config's ``warnings`` and the saru.toml changes held until the next restart."""

    reloaded: bool
    errors: list[str]
    warnings: NotRequired[list[str]]


def settings_for_reload(running: Settings, new: Settings) -> tuple[Settings, list[str]]:
    """What a reload takes from a re-read saru.toml: ``[ipvs.sync]``, ``[cluster]`` and ``[checks]`` at once; the
    data plane, ``[ha]`` and ``[api]`` only at the next restart (a running VRRP node and data plane are not
    swapped under traffic) — with a warning saying so. A changed ``[bgp]`` at once, an added or removed
    one at the next restart."""
    held: list[str] = []
    if new.director != running.director:
        held.append("saru.toml [director] changed: it takes effect at the next restart")
    if new.ha != running.ha:
        held.append("saru.toml [ha] changed: it takes effect at the next restart "
                    "(restart the backup first, then `saru failover-test`, then the other director)")
    if new.api != running.api:
        held.append("saru.toml [api] changed: it takes effect at the next restart")
    bgp = new.bgp
    if (new.bgp is None) != (running.bgp is None):  # a changed [bgp] is applied at once (saru.daemon.announcer)
        held.append(f"saru.toml [bgp] {'added' if running.bgp is None else 'removed'}: it takes effect at "
                    "the next restart")
        bgp = running.bgp
    return replace(new, director=running.director, ha=running.ha, api=running.api, bgp=bgp), held


#: the digest of an empty file (autoreload does not apply one)
_EMPTY_DIGEST = hashlib.sha256(b"").hexdigest()


def file_state(path: str) -> FileState:
    """The file's (mtime, size, content digest), None when it cannot be read."""
    try:
        st = os.stat(path)
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None
    return (st.st_mtime, st.st_size, digest)


class ConfigWatcher:
    """Reloads the daemon's configuration and watches its file (see the module docstring).

    ``configure`` hands a newly loaded config to the parts that follow it (the monitor, the log
    destination); ``check_drift(found_by)`` checks the kernel's table (a reload is one of the moments
    it is checked)."""

    def __init__(self, loaded: Loaded, life: Life, capabilities: Capabilities, journal: Journal, *,
                 reconciler: Reconciler, gate: HAGate, hooks: HookRunner,
                 configure: Callable[[Config], None], check_drift: Callable[[str], Awaitable[object]],
                 settings_path: str | None = None, interval: float = 1.0,
                 reloading: Callable[[], None] = lambda: None, reloaded: Callable[[], None] = lambda: None) -> None:
        self._loaded = loaded
        self._life = life
        self._capabilities = capabilities
        self._journal = journal
        self._reconciler = reconciler
        self._gate = gate
        self._hooks = hooks
        self._configure = configure
        self._check_drift = check_drift
        self._reloading, self._reloaded = reloading, reloaded  # systemd: RELOADING=1 … READY=1
        self.settings_path = settings_path
        self.interval = interval
        self.file_state: FileState = file_state(loaded.config_path)
        self._failures = Throttle(default_interval())  # a reload that keeps failing, by config path

    async def reload(self, automatic: bool = False) -> ReloadAnswer:
        """Re-read the config file (and saru.toml); on error keep the running config and say why
        (``automatic``: autoreload's, whose repeated failures are reminded, not repeated)."""
        self._reloading()
        try:
            return await self._reload(automatic)
        finally:
            self._reloaded()  # applied or refused, a config runs: ready again

    async def _reload(self, automatic: bool) -> ReloadAnswer:
        loaded = self._loaded
        self._journal.emit(DaemonEvent(f"Reloading configuration {loaded.config_path}"))
        await self._check_drift("reload")
        previous_phase, self._life.phase = self._life.phase, "reloading"
        try:
            settings = loaded.settings
            if self.settings_path:
                settings = await asyncio.to_thread(load_settings, self.settings_path)
            new = await asyncio.to_thread(parse_file, loaded.config_path)
            problems = unsupported(new, self._capabilities)
            if problems:
                raise ConfigError(problems)
        except ConfigError as exc:
            loaded.last_reload_error = str(exc)
            loaded.reload_failures += 1
            self._reload_failed(loaded.config_path, tuple(str(exc).splitlines()), automatic)
            self._life.phase = previous_phase
            return {"reloaded": False, "errors": str(exc).splitlines()}
        settings, held = settings_for_reload(loaded.settings, settings)
        for warning in held:
            LOGGER.warning("%s", warning)
        sync_changed = settings.ipvs_sync != loaded.settings.ipvs_sync
        loaded.settings = settings
        tlsclient.configure(resume=settings.checks.tls_session_resumption)
        if sync_changed:
            await self._gate.sync_daemons()
        loaded.owned |= {v.key for v in loaded.config.virtuals}
        loaded.config = new
        self.file_state = file_state(loaded.config_path)
        loaded.reloads += 1
        loaded.loaded_at = time.time()
        loaded.last_reload_error = None
        now = time.monotonic()
        if (cleared := self._failures.clear(loaded.config_path, now)) is not None:
            self._journal.emit(DaemonEvent(f"Configuration reads again after {cleared.count} failed reloads "
                                           f"over {lasting(now - cleared.since)}"))
        self._configure(new)
        self._reconciler.retry_now()
        self._life.phase = previous_phase
        warnings = [str(w) for w in new.warnings] + held
        self._journal.emit(ConfigReloaded(path=loaded.config_path, reloads=loaded.reloads, warnings=tuple(warnings)))
        return {"reloaded": True, "errors": [], "warnings": warnings}

    def _reload_failed(self, path: str, errors: tuple[str, ...], automatic: bool) -> None:
        """Log a failed reload when the errors are new or changed, else a reminder at most once a
        minute with the count (autoreload retrying a broken file must not flood the log); a reload
        an operator asked for (SIGHUP, ``saru reload``, the API) is always logged in full. Every
        failure is kept for ``status`` and the event stream all the same."""
        now = time.monotonic()
        decision = self._failures.observe(path, "\n".join(errors), now)
        if not automatic:
            self._journal.emit(ReloadFailed(path=path, errors=errors))
        elif decision is None:
            self._journal.record(ReloadFailed(path=path, errors=errors))
        elif decision.kind is Kind.REMINDER:
            self._journal.emit(ReloadFailed(path=path, errors=errors, repeated=decision.count,
                                            lasting=lasting(now - decision.since)))
        else:
            self._journal.emit(ReloadFailed(path=path, errors=errors))

    async def run(self) -> None:
        """ldirectord's autoreload/callback: act when the file's content (not just mtime) changes."""
        path = self._loaded.config_path
        while True:
            await asyncio.sleep(self.interval)
            try:
                st = os.stat(path)
            except OSError:
                continue
            if self.file_state and (st.st_mtime, st.st_size) == self.file_state[:2]:
                continue
            state = file_state(path)
            if state is None or (self.file_state and state[2] == self.file_state[2]):
                self.file_state = state or self.file_state
                continue
            self.file_state = state
            LOGGER.info("Configuration file '%s' has changed on disk", path)
            config = self._loaded.config
            callback = config.globals.callback
            if config.globals.autoreload and state[2] == _EMPTY_DIGEST:
                # an editor truncates, then writes: an empty file caught in between would purge every
                # virtual. An explicit reload (SIGHUP, saru reload) still applies an empty file.
                LOGGER.warning(" - the file is empty (being written?): not reloaded until it changes again")
            elif config.globals.autoreload:
                LOGGER.info(" - reread new configuration")
                await self.reload(automatic=True)
            else:
                LOGGER.info(" - ignore new configuration")
            if callback:
                self._hooks.run_in_order(callback, path)
