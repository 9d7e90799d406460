"""``saru-ldirectord``: ldirectord's command contract, against a real daemon and real nginx reals.

The director runs on the userspace proxy (``SARU_DATAPLANE=proxy``) on loopback; pid files go to a
temporary directory (``SARU_LDIRECTORD_PIDDIR``). Every config file gets a unique name, since the
control socket is named after it.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from saru.cli.ldirectord import Invocation, UsageError, instance_name, parse_argv
from tests.director import get
from tests.helpers import HungServer, free_port, start_nginx

_SCRIPT = Path(sys.executable).parent / "saru-ldirectord"
COMMAND = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "saru.cli.ldirectord"]
_names = itertools.count()

CONFIG = """\
checktimeout=2
negotiatetimeout=2
checkinterval=1
logfile="{log}"
virtual=127.0.0.1:{port}
\treal=127.0.0.1:{up} masq 1
\treal=127.0.0.1:{hung} masq 1
\tservice=http
\tscheduler=rr
\tprotocol=tcp
\tchecktype=negotiate
\trequest="check.html"
\treceive="up and running"
"""


class Setup:
    """One ldirectord instance: config, pid dir, environment; ``run(cmd)`` runs saru-ldirectord."""

    def __init__(self, workdir: Path, up_port: int, hung_port: int) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.log = workdir / "ldirectord.log"
        self.config = workdir / f"saru-ldt-{os.getpid()}-{next(_names)}.cf"
        self.config.write_text(CONFIG.format(log=self.log, port=self.port, up=up_port, hung=hung_port))
        self.piddir = workdir / "run"
        self.piddir.mkdir(exist_ok=True)
        self.pidfile = self.piddir / f"ldirectord.{self.config.name}.pid"
        self.env = {**os.environ, "SARU_DATAPLANE": "proxy", "SARU_LDIRECTORD_PIDDIR": str(self.piddir)}

    def run(self, *args: str, timeout: float = 30.0, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*COMMAND, *args], env={**self.env, **env}, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def cmd(self, command: str, **env: str) -> subprocess.CompletedProcess[str]:
        return self.run(str(self.config), command, **env)

    def pid(self) -> int:
        return int(self.pidfile.read_text())

    def cleanup(self) -> None:
        try:
            pid = int(self.pidfile.read_text())
        except (OSError, ValueError):
            return
        if _alive(pid):
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGTERM)
            _wait_gone(pid, 15)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _refused(port: int) -> bool:
    try:
        get(port, timeout=2)
    except OSError:
        return True
    return False


@pytest.fixture(scope="module")
def reals(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int]]:
    """A real nginx answering the check, and a server that accepts and never answers."""
    nginx = start_nginx(tmp_path_factory.mktemp("nginx"), name="rs1",
                        files={"/check.html": "up and running\n", "/index.html": "rs1\n"})
    hung = HungServer()
    yield nginx.port, hung.port
    nginx.stop()
    hung.close()


@pytest.fixture
def ld(tmp_path: Path, reals: tuple[int, int]) -> Iterator[Setup]:
    setup = Setup(tmp_path, *reals)
    yield setup
    setup.cleanup()


def test_start_status_reload_stop_contract(ld: Setup) -> None:
    result = ld.cmd("status")
    assert (result.returncode, result.stdout) == (3, f"ldirectord is stopped for {ld.config}\n")

    began = time.monotonic()
    result = ld.cmd("start")
    took = time.monotonic() - began
    assert result.returncode == 0, result.stderr
    # start returns once every real has a verdict and the table is programmed: the hung real's
    # check had to time out (2 s) first, and the VIP serves from the healthy real right away
    assert took >= 1.8, took
    assert [get(ld.port)[1] for _ in range(4)] == ["rs1"] * 4
    pid = ld.pid()
    assert b"ldirectord" in Path(f"/proc/{pid}/cmdline").read_bytes()

    result = ld.cmd("status")
    assert result.returncode == 0
    assert result.stderr == f"ldirectord for {ld.config} is running with pid: {pid}\n"

    result = ld.cmd("start")  # already running: a no-op success
    assert result.returncode == 0 and ld.pid() == pid

    result = ld.cmd("reload")
    assert result.returncode == 0, result.stderr
    assert "Reloading configuration" in ld.log.read_text()

    good = ld.config.read_text()
    ld.config.write_text(good + "\tbogus=1\n")
    result = ld.cmd("reload")
    assert result.returncode == 2
    assert 'unknown directive "bogus"' in result.stderr
    ld.config.write_text(good)
    assert ld.cmd("status").returncode == 0 and get(ld.port)[1] == "rs1"  # still serving

    result = ld.cmd("stop")
    assert result.returncode == 0, result.stderr
    # stop returns once the table is cleaned and the process gone
    assert not _alive(pid)
    assert not ld.pidfile.exists()
    assert _refused(ld.port)
    assert "Purged virtual server" in ld.log.read_text()

    assert ld.cmd("status").returncode == 3
    assert ld.cmd("stop").returncode == 0  # stopping a stopped director succeeds
    result = ld.cmd("reload")
    assert result.returncode == 1
    assert f"ldirectord is stopped for {ld.config}" in result.stderr
    assert ld.cmd("try-restart").returncode == 0 and ld.cmd("status").returncode == 3


def test_restart_replaces_the_daemon(ld: Setup) -> None:
    assert ld.cmd("restart").returncode == 0  # restart of a stopped director starts it
    first = ld.pid()
    result = ld.cmd("try-restart")
    assert result.returncode == 0, result.stderr
    second = ld.pid()
    assert second != first and not _alive(first)
    assert get(ld.port)[1] == "rs1"
    assert ld.cmd("force-reload").returncode == 0
    assert ld.cmd("stop").returncode == 0 and not _alive(second)


def test_stale_pid_file(ld: Setup) -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        for pid in (sleeper.pid, 2**22 + 7):  # a live process that is no director, and no process
            ld.pidfile.write_text(f"{pid}\n")
            result = ld.cmd("status")
            assert result.returncode == 1
            assert result.stderr == f"ldirectord stale pid file {ld.pidfile} for {ld.config}\n"
            assert result.stdout == f"ldirectord is stopped for {ld.config}\n"
        # start replaces a stale pid file
        assert ld.cmd("start").returncode == 0
        assert ld.pid() != sleeper.pid and ld.cmd("status").returncode == 0
        assert sleeper.poll() is None  # the unrelated process was left alone
        assert ld.cmd("stop").returncode == 0
    finally:
        sleeper.kill()
        sleeper.wait()


def test_config_errors_and_startup_failures_reach_the_caller(ld: Setup, tmp_path: Path) -> None:
    good = ld.config.read_text()
    ld.config.write_text(good + "\tbogus=1\n")
    result = ld.cmd("start")
    assert result.returncode == 2
    assert f'{ld.config}:14: unknown directive "bogus"' in result.stderr
    assert not ld.pidfile.exists()
    ld.config.write_text(good)

    result = ld.run(str(tmp_path / "missing.cf"), "start")
    assert (result.returncode, result.stderr) == (1, f"Config file {tmp_path / 'missing.cf'} not found\n")

    result = ld.cmd("start", SARU_DATAPLANE="warp")
    assert result.returncode == 2 and "SARU_DATAPLANE='warp' is not one of" in result.stderr

    # a failure after the fork: a second instance with the same config name but another pid
    # directory finds the control socket in use; its error and exit status reach the caller
    assert ld.cmd("start").returncode == 0
    other = tmp_path / "other-run"
    other.mkdir()
    result = ld.cmd("start", SARU_LDIRECTORD_PIDDIR=str(other))
    assert result.returncode == 1
    assert "is in use by a running daemon" in result.stderr
    assert list(other.iterdir()) == []
    assert ld.cmd("stop").returncode == 0


def test_hung_daemon_status_and_bounded_stop(ld: Setup) -> None:
    assert ld.cmd("start").returncode == 0
    pid = ld.pid()
    os.kill(pid, signal.SIGSTOP)
    try:
        result = ld.cmd("status", SARU_LDIRECTORD_STATUS_TIMEOUT="1")
        assert result.returncode == 1
        assert f"running with pid: {pid}, but does not answer on" in result.stderr
        assert "stale pid file" not in result.stderr  # the OCF agent must not read this as stopped
        began = time.monotonic()
        result = ld.cmd("stop", SARU_LDIRECTORD_STOP_TIMEOUT="1")
        assert result.returncode == 1
        assert f"pid {pid} ({ld.config}) did not exit within 1s of SIGTERM" in result.stderr
        assert time.monotonic() - began < 5
    finally:
        os.kill(pid, signal.SIGCONT)
    # the SIGTERM sent meanwhile is delivered now; stop waits for the cleanup
    assert ld.cmd("stop").returncode == 0
    assert _wait_gone(pid, 5) and not ld.pidfile.exists()


def test_debug_runs_in_the_foreground(ld: Setup) -> None:
    process = subprocess.Popen([*COMMAND, "-d", str(ld.config), "start"], env=ld.env, text=True,
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert process.stderr is not None
        lines = []
        deadline = time.monotonic() + 15
        for line in process.stderr:
            lines.append(line)
            if "table in line with health" in line or time.monotonic() > deadline:
                break
        assert any("Added real server" in line for line in lines), lines
        assert get(ld.port)[1] == "rs1"
        assert not ld.pidfile.exists()  # -d: no pid file, as ldirectord
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_usage_version_and_exit_codes(ld: Setup) -> None:
    result = ld.run("frobnicate")
    assert result.returncode == 255 and result.stdout.startswith("Usage:\n    saru-ldirectord [-d|--debug]")
    result = ld.run("-x", "status")
    assert result.returncode == 255 and result.stderr == "Unknown option: x\n"
    result = ld.run("-v")
    assert result.returncode == 0 and "Linux Director v1.186-ha" in result.stdout
    assert ld.run("--help").returncode == 0


def test_argument_parsing_follows_getopt() -> None:
    assert parse_argv(["start"]) == Invocation("start", None)
    assert parse_argv(["-d", "x.cf", "stop"]) == Invocation("stop", "x.cf", debug=True)
    assert parse_argv(["--", "-weird.cf", "status"]) == Invocation("status", "-weird.cf")
    assert parse_argv(["-dv"]) == "version"
    assert parse_argv(["-?"]) == "help"
    for bad in ([], ["x.cf"], ["a", "b", "start"], ["--verbose", "start"], ["x.cf", "begin"]):
        with pytest.raises(UsageError):
            parse_argv(bad)
    assert instance_name(None) == "ldirectord"
    assert instance_name("/etc/ha.d/ldirectord.cf") == "ldirectord.cf"
