"""monitorfile end to end: a real Monitor checking real loopback listeners writes ldirectord's lines."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from saru.events.monitorfile import MonitorFile
from saru.model import Config, GlobalConfig, RealConfig, VirtualConfig
from saru.monitor import Monitor
from tests.helpers import free_port

LINE = re.compile(r"^\[(\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4})\] \[(\d+)\] (.*) \[(up|down)\] (.*)$")


@pytest.fixture
async def listener() -> AsyncIterator[int]:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


def config(*virtuals: VirtualConfig, maintenancedir: str | None = None) -> Config:
    return Config("test.cf", GlobalConfig(maintenancedir=maintenancedir), virtuals)


def connect_virtual(monitorfile: Path | str, *reals: RealConfig, port: int = 80) -> VirtualConfig:
    return VirtualConfig(protocol="tcp", address="127.0.0.10", port=port, checktype="connect",
                         checktimeout=1, checkinterval=0.1, monitorfile=str(monitorfile), reals=reals)


def read_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.is_file() else []


async def wait_lines(path: Path, predicate, timeout: float = 5.0) -> list[str]:
    """Poll the file (with a deadline) until its lines satisfy ``predicate``."""
    deadline = time.monotonic() + timeout
    lines: list[str] = []
    while time.monotonic() < deadline:
        lines = read_lines(path)
        if predicate(lines):
            return lines
        await asyncio.sleep(0.05)
    raise AssertionError(f"monitorfile never matched; it holds {lines!r}")


async def run(cfg: Config, writer: MonitorFile) -> Monitor:
    monitor = Monitor(emit=lambda event: None, maintenance_dir=cfg.globals.maintenancedir)
    monitor.add_result_listener(writer.record)
    monitor.configure(cfg)
    return monitor


async def test_every_result_is_written_in_ldirectords_format(tmp_path, listener):
    path = tmp_path / "monitor.log"
    closed = free_port()
    cfg = config(connect_virtual(path, RealConfig("127.0.0.1", listener, forward="masq", weight=3),
                                 RealConfig("127.0.0.1", closed)))
    writer = MonitorFile(lambda: cfg)
    monitor = await run(cfg, writer)
    try:
        lines = await wait_lines(path, lambda ls: sum(f" {closed} " in line for line in ls) >= 3)
    finally:
        await monitor.close()
        await writer.close()
    parsed = [LINE.match(line) for line in lines]
    assert all(parsed), lines
    assert {m.group(2) for m in parsed if m} == {str(os.getpid())}
    ups = [m for m in parsed if m and m.group(3) == f"connect tcp 127.0.0.1 {listener} 3 masq / "]
    downs = [m for m in parsed if m and m.group(3) == f"connect tcp 127.0.0.1 {closed} 1 gate / "]
    assert ups and {(m.group(4), m.group(5)) for m in ups} == {("up", "connected")}
    assert len(downs) >= 3 and {(m.group(4), m.group(5)) for m in downs} == {("down", "connection refused")}


async def test_only_virtuals_with_a_monitorfile_write_and_each_to_its_own(tmp_path, listener):
    first, second = tmp_path / "first.log", tmp_path / "second.log"
    real = RealConfig("127.0.0.1", listener)
    quiet = VirtualConfig(protocol="tcp", address="127.0.0.11", port=80, checktype="connect",
                          checkinterval=0.1, reals=(real,))
    cfg = config(connect_virtual(first, real, port=80), connect_virtual(second, real, port=81), quiet)
    writer = MonitorFile(lambda: cfg)
    monitor = await run(cfg, writer)
    try:
        await wait_lines(first, lambda ls: len(ls) >= 2)
        await wait_lines(second, lambda ls: len(ls) >= 2)
    finally:
        await monitor.close()
        await writer.close()
    assert writer.written == len(first.read_text().splitlines()) + len(second.read_text().splitlines())


async def test_external_check_message_and_maintenance(tmp_path):
    path, maintenance = tmp_path / "monitor.log", tmp_path / "maintenance"
    maintenance.mkdir()
    script = tmp_path / "check"
    script.write_text("#!/bin/sh\necho 'disk 100% full | read-only' >&2\nexit 2\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    virtual = VirtualConfig(protocol="tcp", address="127.0.0.10", port=80, checktype="external",
                            checkcommand=str(script), checkinterval=0.1, monitorfile=str(path),
                            reals=(RealConfig("127.0.0.1", 8080),))
    cfg = config(virtual, maintenancedir=str(maintenance))
    writer = MonitorFile(lambda: cfg)
    monitor = await run(cfg, writer)
    try:
        lines = await wait_lines(path, lambda ls: len(ls) >= 1)
        assert lines[0].endswith(f"] external {script} tcp 127.0.0.1 8080 1 gate /  "
                                 "[down] exit status 2: disk 100%25 full %7c read-only")
        (maintenance / "127.0.0.1:8080").touch()
        lines = await wait_lines(path, lambda ls: ls[-1].endswith("[down] Server in maintenance"))
    finally:
        await monitor.close()
        await writer.close()


async def test_a_write_error_is_logged_once_and_the_daemon_goes_on(tmp_path, listener, caplog):
    path = tmp_path / "monitor.log"
    path.mkdir()  # a directory: every append fails with EISDIR
    cfg = config(connect_virtual(path, RealConfig("127.0.0.1", listener)))
    writer = MonitorFile(lambda: cfg)
    caplog.set_level(logging.INFO, logger="saru.events.monitorfile")
    monitor = await run(cfg, writer)
    results: list[bool] = []
    five = asyncio.Event()

    def count(ref, spec, result, up) -> None:
        results.append(result.ok)
        if len(results) >= 5:
            five.set()

    monitor.add_result_listener(count)
    try:
        await asyncio.wait_for(five.wait(), 5)  # the monitor keeps checking despite the write errors
        errors = [r for r in caplog.records if "cannot write monitorfile" in r.getMessage()]
        assert len(errors) == 1 and errors[0].levelno == logging.ERROR
        path.rmdir()  # the operator fixes it: lines appear again
        await wait_lines(path, lambda ls: len(ls) >= 2)
        assert any("writable again" in r.getMessage() for r in caplog.records)
    finally:
        await monitor.close()
        await writer.close()
