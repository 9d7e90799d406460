"""The config watcher (saru.daemon.configwatch): a reload swaps the config and keeps the old services
owned until removed; a bad file (or one the plane cannot run) is refused and the running config
kept; saru.toml's [director] and [ha] are held until restart; the file watch acts on a content
change only, reloading with autoreload and running the callback."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import time
from pathlib import Path

import pytest

from saru.daemon.configwatch import ConfigWatcher, file_state, settings_for_reload
from saru.daemon.driftwatch import DriftWatcher
from saru.daemon.gate import HAGate
from saru.daemon.hooks import HookRunner
from saru.daemon.journal import Journal
from saru.daemon.reconciler import Reconciler
from saru.daemon.state import Life, Loaded
from saru.model import Config, DirectorSettings, HASettings, IPVSSyncSettings, ServiceKey, Settings
from tests.unit.doubles import OFF, TWO_VIRTUALS, UP, MemoryPlane, until

NEW = ServiceKey("tcp", "10.0.0.3", 443)
ONE_VIRTUAL = """\
virtual=10.0.0.3:443
\treal=10.1.0.9:443 masq
\tchecktype=on
\tscheduler=rr
"""


class World:
    """A watcher over real parts (reconciler, gate, drift watcher, hook runner) and a memory plane."""

    def __init__(self, tmp_path: Path, text: str = TWO_VIRTUALS, settings_path: str | None = None) -> None:
        from saru.config.ldirectord import parse_file

        self.path = tmp_path / "test.cf"
        self.path.write_text(text)
        self.plane = MemoryPlane()
        self.loaded = Loaded(str(self.path), parse_file(self.path))
        self.life, self.journal, self.hooks = Life(), Journal(), HookRunner()
        self.reconciler = Reconciler(self.plane, dict, self.loaded, self.life, self.journal, self.hooks)
        self.gate = HAGate(self.plane, self.loaded, self.life, self.journal.emit,
                           reconcile=self.reconciler.reconcile_or_retry)
        self.drift = DriftWatcher(self.plane, lambda: self.loaded.owned, self.reconciler.lock, self.journal.emit,
                                  self.reconciler.mark_dirty, 0)
        self.configured: list[Config] = []
        self.drift_checks: list[str] = []

        async def check_drift(found_by: str) -> None:
            self.drift_checks.append(found_by)
            await self.drift.check(found_by)

        self.watcher = ConfigWatcher(self.loaded, self.life, self.plane.capabilities, self.journal,
                                     reconciler=self.reconciler, gate=self.gate, hooks=self.hooks,
                                     configure=self.configured.append, check_drift=check_drift,
                                     settings_path=settings_path, interval=0.01)

    def rewrite(self, text: str) -> None:
        """New content, and an mtime that differs even on a coarse clock."""
        self.path.write_text(text)
        later = time.time() + 5
        os.utime(self.path, (later, later))



async def test_a_reload_swaps_the_config_and_keeps_the_old_services_owned(tmp_path: Path) -> None:
    world = World(tmp_path)
    await world.reconciler.reconcile()
    world.rewrite(ONE_VIRTUAL)
    answer = await world.watcher.reload()
    assert answer == {"reloaded": True, "errors": [], "warnings": []}
    assert [v.key for v in world.loaded.config.virtuals] == [NEW] and world.configured == [world.loaded.config]
    assert world.loaded.owned == {UP, OFF} and world.loaded.reloads == 1
    assert world.reconciler.dirty.is_set() and world.drift_checks == ["reload"] and world.life.phase == "starting"
    await world.reconciler.reconcile()  # the old services go, the new one comes; from then on only it is owned
    assert set(world.plane.table.services) == {NEW} and world.loaded.owned == {NEW}


async def test_a_bad_file_is_refused_and_the_running_config_kept(tmp_path: Path) -> None:
    world = World(tmp_path)
    running = world.loaded.config
    world.rewrite("virtual=10.0.0.1:80\n\treal=not-an-address:80 masq\n\tnosuchdirective=1\n")
    answer = await world.watcher.reload()
    assert answer["reloaded"] is False and answer["errors"] and world.loaded.config is running
    assert world.loaded.last_reload_error == "\n".join(answer["errors"]) and world.loaded.reloads == 0
    assert world.configured == [] and not world.reconciler.dirty.is_set()


async def test_a_config_the_plane_cannot_run_is_refused(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.rewrite(ONE_VIRTUAL.replace("scheduler=rr", "scheduler=sed"))
    answer = await world.watcher.reload()
    assert answer["reloaded"] is False
    assert "scheduler 'sed' is not supported by the memory data plane" in answer["errors"][0]


def test_director_and_ha_changes_wait_for_a_restart_sync_and_cluster_do_not() -> None:
    vip = (ipaddress.ip_interface("10.0.0.1/24"),)
    running = Settings(director=DirectorSettings(dataplane="nft"), ha=HASettings(interface="eth0", vips=vip))
    new = Settings(director=DirectorSettings(dataplane="ipvs"), ha=HASettings(interface="eth1", vips=vip),
                   ipvs_sync=IPVSSyncSettings(interface="eth0"))
    taken, held = settings_for_reload(running, new)
    assert taken.director == running.director and taken.ha == running.ha and taken.ipvs_sync == new.ipvs_sync
    assert held == ["saru.toml [director] changed: it takes effect at the next restart",
                    "saru.toml [ha] changed: it takes effect at the next restart (restart the backup first, "
                    "then `saru failover-test`, then the other director)"]
    assert settings_for_reload(running, running) == (running, [])


async def test_a_reload_rereads_saru_toml_and_says_what_waits(tmp_path: Path) -> None:
    toml = tmp_path / "saru.toml"
    toml.write_text('[director]\ndataplane = "nft"\n')
    world = World(tmp_path, settings_path=str(toml))
    world.loaded.settings = Settings(path=str(toml))
    answer = await world.watcher.reload()
    assert answer["reloaded"] is True
    assert answer.get("warnings") == ["saru.toml [director] changed: it takes effect at the next restart"]


async def test_the_watch_reloads_on_a_content_change_only_and_runs_the_callback(tmp_path: Path) -> None:
    marker = tmp_path / "called"
    extra = f'autoreload=yes\ncallback="/bin/sh -c \'echo $0 > {marker}\'"\n'
    world = World(tmp_path, extra + TWO_VIRTUALS)
    task = asyncio.create_task(world.watcher.run())
    try:
        later = time.time() + 5
        os.utime(world.path, (later, later))  # touched, same content: nothing
        await until(lambda: world.watcher.file_state == file_state(str(world.path)))
        assert world.loaded.reloads == 0
        world.rewrite(extra + ONE_VIRTUAL)
        await until(lambda: world.loaded.reloads == 1)
        await until(marker.exists)
        await world.hooks.wait()
        assert marker.read_text().strip() == str(world.path)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_without_autoreload_a_change_only_runs_the_callback(tmp_path: Path) -> None:
    marker = tmp_path / "called"
    extra = f'callback="/bin/sh -c \'echo changed > {marker}\'"\n'
    world = World(tmp_path, extra + TWO_VIRTUALS)
    task = asyncio.create_task(world.watcher.run())
    try:
        world.rewrite(extra + ONE_VIRTUAL)
        await until(marker.exists)
        await world.hooks.wait()
        assert world.loaded.reloads == 0 and [v.key for v in world.loaded.config.virtuals] == [UP, OFF]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
