"""The daemon's life (saru.daemon.lifecycle) in this process, on an in-memory data plane, with its
real control socket, pid file and instance lock in a temporary runtime directory: start, ready,
SIGHUP, stop with cleanstop; a daemon refused at start (a live pid file, a served socket) touches
nothing of the other's and never opens its plane; the start timeout and an HA node that cannot
start end it with status 1."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from saru.control import ControlServer, request
from saru.daemon import Daemon, DaemonOptions
from saru.daemon.gate import Emit, HANodeLike, SetActive
from saru.ha.node import HASnapshot
from saru.model import HASettings
from tests.unit.doubles import OFF, TWO_VIRTUALS, MemoryPlane, until

HA_TOML = '[ha]\nmode = "vrrp"\ninterface = "lo"\nvips = ["10.0.0.1/24"]\n'


@pytest.fixture(autouse=True)
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Runtime files under tmp_path; the ``saru`` logger as it was afterwards (the daemon configures it)."""
    monkeypatch.setenv("SARU_RUNTIME_DIR", str(tmp_path / "run"))
    logger = logging.getLogger("saru")
    handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
    yield
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    for handler in handlers:
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = propagate


def options(tmp_path: Path, text: str = TWO_VIRTUALS, **kwargs: object) -> DaemonOptions:
    config = tmp_path / "test.cf"
    config.write_text(text)
    return DaemonOptions(config_path=str(config), control_path=str(tmp_path / "ctl.sock"),
                         pidfile=str(tmp_path / "saru.pid"), **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def other_pid() -> Iterator[int]:
    """A live process that is not this one."""
    other = subprocess.Popen(["sleep", "30"])
    yield other.pid
    other.kill()
    other.wait()



async def test_start_ready_sighup_and_stop_with_cleanstop(tmp_path: Path) -> None:
    plane, readies = MemoryPlane(), []
    opts = options(tmp_path, on_ready=lambda: readies.append(1))
    pidfile, control = tmp_path / "saru.pid", tmp_path / "ctl.sock"
    daemon = Daemon(opts, dataplane=plane)
    task = asyncio.create_task(daemon.run())
    await until(daemon.life.ready.is_set)
    assert readies == [1] and plane.started and daemon.life.phase == "running"
    assert pidfile.read_text() == f"{os.getpid()}\n"
    status = await request(control, "status", timeout=5)
    assert status["ok"] and status["ready"] and status["dataplane"] == {"name": "memory",
                                                                         "reason": "given by the caller"}
    assert [v["in_table"] for v in status["virtuals"]] == [True, True]
    os.kill(os.getpid(), signal.SIGHUP)
    assert daemon.service is not None
    await until(lambda: daemon.parts is not None and daemon.parts.loaded.reloads == 1)
    assert await request(control, "stop", timeout=5) == {"ok": True, "stopping": True}
    assert await asyncio.wait_for(task, 10) == 0
    assert set(plane.table.services) == {OFF} and plane.closed  # cleanstop=yes went, cleanstop=no stayed
    assert not pidfile.exists() and not control.exists()


async def test_refused_by_a_live_pid_file_it_touches_nothing(tmp_path: Path, other_pid: int) -> None:
    opts = options(tmp_path)
    pidfile = tmp_path / "saru.pid"
    pidfile.write_text(f"{other_pid}\n")
    plane = MemoryPlane()
    assert await Daemon(opts, dataplane=plane).run() == 1
    assert pidfile.read_text() == f"{other_pid}\n"
    assert not plane.started and not plane.closed and not (tmp_path / "ctl.sock").exists()


async def test_refused_by_a_served_socket_it_leaves_the_socket_serving(tmp_path: Path) -> None:
    opts = options(tmp_path)
    control = tmp_path / "ctl.sock"

    async def answer(_request: dict[str, object]) -> dict[str, object]:
        return {"first": True}

    first = ControlServer(control, {"status": answer})
    await first.start()
    try:
        plane = MemoryPlane()
        assert await Daemon(opts, dataplane=plane).run() == 1
        assert not plane.started and not plane.closed
        assert await request(control, "status", timeout=5) == {"ok": True, "first": True}
        assert not (tmp_path / "saru.pid").exists()  # its own pid file: written, then removed
    finally:
        await first.close()


async def test_a_table_that_never_applies_ends_the_start_with_status_1(tmp_path: Path) -> None:
    plane = MemoryPlane()
    plane.fail = ["address already in use"] * 10
    readies: list[int] = []
    opts = options(tmp_path, start_timeout=0.2, on_ready=lambda: readies.append(1))
    assert await asyncio.wait_for(Daemon(opts, dataplane=plane).run(), 10) == 1
    assert readies == [] and plane.closed


class BrokenNode:
    def __init__(self) -> None:
        self.stopped = False

    async def start(self) -> None:
        raise OSError("no VRRP on lo")

    async def stop(self, graceful: bool = True) -> None:
        self.stopped = True

    def snapshot(self) -> HASnapshot:
        raise NotImplementedError

    def resign(self, hold: float) -> None: ...
    def takeover(self) -> None: ...


async def test_an_ha_node_that_cannot_start_ends_the_daemon_with_status_1(tmp_path: Path) -> None:
    toml = tmp_path / "saru.toml"
    toml.write_text(HA_TOML)
    nodes: list[BrokenNode] = []

    def factory(settings: HASettings, *, set_active: SetActive, emit: Emit, vip_check_interval: float) -> HANodeLike:
        nodes.append(BrokenNode())
        return nodes[-1]

    plane, readies = MemoryPlane(), []
    opts = options(tmp_path, settings_path=str(toml), on_ready=lambda: readies.append(1))
    assert await asyncio.wait_for(Daemon(opts, dataplane=plane, node_factory=factory).run(), 10) == 1
    assert readies == [] and nodes[0].stopped
    assert plane.applied == []  # a backup's table is gated: never programmed
