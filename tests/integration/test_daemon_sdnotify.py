"""``saru run`` speaks systemd's notify protocol to a real notify socket (a datagram socket this test
binds and passes as ``NOTIFY_SOCKET``, as systemd does): READY=1 only once the table is programmed,
RELOADING=1 + MONOTONIC_USEC then READY=1 around a reload (a refused one too), STATUS= lines,
WATCHDOG=1 pings with ``WATCHDOG_USEC``, STOPPING=1 on SIGTERM; the variables are not passed on to
the commands the daemon runs. (The same wiring under a real systemd as PID 1: tests/packaging.)
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from saru.control import request_sync
from saru.daemon.systemd import SystemdLink, stall_limit, status_line
from saru.model import RealRef, ServiceKey
from saru.sdnotify import Notifier
from tests.helpers import free_port


class NotifySocket:
    """The supervisor's end: a bound AF_UNIX datagram socket collecting messages."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[tuple[float, dict[str, str]]] = []

    def _drain(self, timeout: float) -> None:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(4096)
        except TimeoutError:
            return
        fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
        self.messages.append((time.monotonic(), fields))

    def wait(self, key: str, value: str | None = None, timeout: float = 20.0, after: int = 0) -> int:
        """Index of the first message from ``after`` on holding ``key`` (= ``value``)."""
        deadline = time.monotonic() + timeout
        while True:
            for i, (_, fields) in enumerate(self.messages[after:], after):
                if key in fields and (value is None or fields[key] == value):
                    return i
            assert time.monotonic() < deadline, f"no {key}={value} within {timeout}s: {self.messages}"
            self._drain(0.2)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    sock = NotifySocket(tmp_path / "notify.sock")
    yield sock
    sock.close()


def start(tmp_path: Path, notify: NotifySocket, cf_text: str, watchdog_usec: int | None = None,
          ) -> tuple[subprocess.Popen[str], Path]:
    cf = tmp_path / "sd.cf"
    cf.write_text(cf_text)
    control = tmp_path / "sd.sock"
    env = {**os.environ, "NOTIFY_SOCKET": str(notify.path)}
    if watchdog_usec:
        env["WATCHDOG_USEC"] = str(watchdog_usec)
    process = subprocess.Popen([sys.executable, "-m", "saru", "run", "-c", str(cf), "--dataplane", "proxy",
                                "--control", str(control), "-q"], env=env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return process, control


def config(tmp_path: Path, port: int, real_port: int, extra: str = "") -> str:
    return (f"checkinterval=1\nchecktimeout=1\nlogfile=\"{tmp_path / 'sd.log'}\"\n"
            f"virtual=127.0.0.1:{port}\n\treal=127.0.0.1:{real_port} masq\n\tservice=http\n"
            f"\tscheduler=rr\n\tprotocol=tcp\n\tchecktype=negotiate\n\trequest=\"/\"\n\treceive=\"ok\"\n{extra}")


def test_ready_reload_status_stopping_on_a_real_notify_socket(nginx, notify, tmp_path) -> None:
    rs = nginx(name="rs1", files={"/index.html": "ok\n"})
    port = free_port()
    marker = tmp_path / "callback-env"
    extra = f"callback=\"/bin/sh -c 'env > {marker}'\"\n"
    process, control = start(tmp_path, notify, config(tmp_path, port, rs.port, extra))
    try:
        ready = notify.wait("READY", "1")
        # READY=1 only once the table is in: the daemon then answers "ready" and serves the VIP
        status = request_sync(control, "status", timeout=5)
        assert status["ready"] is True and status["virtuals"][0]["in_table"] is True
        assert "1/1 reals up" in notify.messages[ready][1].get("STATUS", ""), notify.messages[ready]
        assert all("READY" not in fields for _, fields in notify.messages[:ready])
        # a reload: RELOADING=1 with MONOTONIC_USEC, then READY=1 again
        process.send_signal(signal.SIGHUP)
        reloading = notify.wait("RELOADING", "1", after=ready + 1)
        assert int(notify.messages[reloading][1]["MONOTONIC_USEC"]) > 0
        notify.wait("READY", "1", after=reloading + 1)
        # a refused reload (bad file) ends in READY=1 too: the old config runs on
        cf = tmp_path / "sd.cf"
        good = cf.read_text()
        cf.write_text(good + "\tscheduler=nonsense-\n")
        answer = request_sync(control, "reload", timeout=10)
        assert answer["reloaded"] is False
        again = notify.wait("RELOADING", "1", after=reloading + 1)
        notify.wait("READY", "1", after=again + 1)
        # the callback (run on the file change) did not inherit NOTIFY_SOCKET
        deadline = time.monotonic() + 10
        while not marker.exists() and time.monotonic() < deadline:
            notify._drain(0.2)
        assert marker.exists(), "the callback did not run"
        assert "NOTIFY_SOCKET" not in marker.read_text()
        # a real going down changes the STATUS= line
        rs.stop()
        notify.wait("STATUS", "1 virtual, 0/1 reals up, proxy", after=again + 1)
        process.send_signal(signal.SIGTERM)
        notify.wait("STOPPING", "1", after=again + 1)
        assert process.wait(20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_watchdog_pings_while_checks_complete(nginx, notify, tmp_path) -> None:
    rs = nginx(name="rs1", files={"/index.html": "ok\n"})
    process, _control = start(tmp_path, notify, config(tmp_path, free_port(), rs.port), watchdog_usec=1_000_000)
    try:
        ready = notify.wait("READY", "1")
        first = notify.wait("WATCHDOG", "1", after=ready)
        second = notify.wait("WATCHDOG", "1", after=first + 1)
        gap = notify.messages[second][0] - notify.messages[first][0]
        assert 0.2 < gap < 1.0  # half of WatchdogSec=1s, give or take the scheduling
        # SIGSTOP wedges everything: no ping while stopped (systemd would kill and restart it)
        process.send_signal(signal.SIGSTOP)
        stopped_at = time.monotonic()
        time.sleep(0.1)  # let a datagram already in flight arrive
        notify._drain(0.1)
        while time.monotonic() - stopped_at < 1.5:
            notify._drain(0.2)
        assert not [m for at, m in notify.messages if at > stopped_at + 0.3 and "WATCHDOG" in m]
        process.send_signal(signal.SIGCONT)
        notify.wait("WATCHDOG", "1", after=len(notify.messages))
    finally:
        process.send_signal(signal.SIGCONT)
        process.terminate()
        process.wait(20)


# -- pure parts ---------------------------------------------------------------------------------------


def test_status_line() -> None:
    key = ServiceKey("tcp", "10.0.0.1", 80)
    health = {RealRef(key, "10.0.0.2", 80): True, RealRef(key, "10.0.0.3", 80): False,
              RealRef(key, "10.0.0.4", 80): None}
    assert status_line("master", 2, health, "nft", True) == "MASTER, 2 virtuals, 1/3 reals up, nft"
    assert status_line(None, 1, {}, "proxy", False) == "starting: 1 virtual, 0/0 reals up, proxy"


def test_the_watchdog_is_withheld_when_no_check_completes() -> None:
    from saru.config.ldirectord import parse_text

    link = SystemdLink(notifier=Notifier.from_environment({}), interval=1.0)  # no NOTIFY_SOCKET: a no-op
    limit = stall_limit(parse_text("virtual=10.0.0.1:80\n\treal=10.0.0.2:80 gate\n\tchecktimeout=2\n"
                                   "\tnegotiatetimeout=3\n\tcheckinterval=5\n", "t.cf"))
    assert limit == 3 * (5 + 3) + 10
    now = time.monotonic()
    link.progress()
    assert link.healthy(limit, now + limit - 1)
    assert not link.healthy(limit, now + limit + 1)
    nothing_checked = stall_limit(parse_text("virtual=10.0.0.1:80\n\treal=10.0.0.2:80 gate\n\tchecktype=on\n", "t.cf"))
    assert nothing_checked is None and link.healthy(None, now + 10_000)
