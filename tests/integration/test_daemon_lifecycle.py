"""Early exits do no harm, and a director that cannot program its table says so and fails fast.

Real ``saru run`` / ``saru demo`` / ``saru-ldirectord`` processes on the userspace proxy, on loopback;
"a port in use" is a real socket this test holds on 127.0.0.1.

* a second daemon refused because the first holds the control socket leaves the first serving,
  answering ``status`` and owning its socket (issue 10, item 1, on the proxy plane);
* a second daemon whose UDP virtual is the first's port is refused instead of stealing its datagrams;
* a table that cannot be programmed at start: exit 1 within ``--start-timeout``; with
  ``--start-timeout 0`` the daemon keeps retrying and ``status`` says NOT READY and why;
* after start, a failing apply is retried, shown by ``status``, and not fatal;
* ``saru demo`` and ``saru-ldirectord start`` fail (non-zero, with the reason) on a taken port.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from saru.cli.daemon_cmds import render_status
from saru.control import request_sync
from tests.director import Director, get, pid_alive
from tests.helpers import free_port

SARU = [sys.executable, "-m", "saru"]
_SCRIPT = Path(sys.executable).parent / "saru-ldirectord"
LDIRECTORD = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "saru.cli.ldirectord"]


def tcp_config(workdir: Path, port: int, real_port: int, extra: str = "") -> str:
    return f"""\
checkinterval=1
checktimeout=1
logfile="{workdir / 'ldirectord.log'}"
virtual=127.0.0.1:{port}
\treal=127.0.0.1:{real_port} masq
\tservice=http
\tscheduler=rr
\tprotocol=tcp
\tchecktype=on
{extra}"""


def udp_config(workdir: Path, port: int, real_port: int) -> str:
    return f"""\
checkinterval=1
logfile="{workdir / 'ldirectord.log'}"
virtual=127.0.0.1:{port}
\treal=127.0.0.1:{real_port} masq
\tservice=none
\tscheduler=rr
\tprotocol=udp
\tchecktype=on
"""


def until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``condition`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        time.sleep(0.05)


def status(control: Path) -> dict[str, Any] | None:
    try:
        answer = request_sync(control, "status", timeout=5)
    except OSError:
        return None
    return answer if answer.get("ok") else None


def held_port(kind: int = socket.SOCK_STREAM) -> socket.socket:
    """A socket on 127.0.0.1 holding a port as any other program would (TCP: listening)."""
    sock = socket.socket(socket.AF_INET, kind)
    sock.bind(("127.0.0.1", 0))
    if kind == socket.SOCK_STREAM:
        sock.listen(16)
    return sock


class UdpEcho:
    """A UDP server on loopback answering ``<name>:<datagram>``."""

    def __init__(self, name: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.name = name.encode()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(2048)
                self.sock.sendto(self.name + b":" + data, peer)
            except OSError:
                return

    def close(self) -> None:
        self.sock.close()


def udp_ask(port: int, payload: bytes = b"ping") -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(1.0)
        s.sendto(payload, ("127.0.0.1", port))
        try:
            return s.recv(2048)
        except OSError:
            return None


@pytest.fixture
def directors(tmp_path: Path) -> Iterator[Callable[..., Director]]:
    started: list[Director] = []

    def start(name: str, text: str, *args: str) -> Director:
        workdir = tmp_path / name
        workdir.mkdir()
        d = Director(workdir, text, args)
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop()


def run_second(*argv: str, timeout: float = 30.0) -> tuple[subprocess.CompletedProcess[str], float]:
    began = time.monotonic()
    proc = subprocess.run([*SARU, *argv], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    return proc, time.monotonic() - began


# ------------------------------------------------------------------------------ item 1: do no harm


def test_second_daemon_on_the_same_socket_leaves_the_first_serving(nginx, directors, tmp_path):
    rs = nginx(name="rs1", files={"/index.html": "rs1\n"})
    port = free_port()
    first = directors("first", tcp_config(tmp_path, port, rs.port))
    first.wait_ready()
    assert get(port)[1] == "rs1"
    second, took = run_second("run", "-c", str(first.config), "--dataplane", "proxy",
                              "--control", str(first.control), "--pidfile", str(tmp_path / "second.pid"))
    assert second.returncode == 1, second.stderr
    assert "in use" in second.stderr
    assert took < 20
    # the first keeps its socket, its table and its traffic
    assert first.control.exists()
    answer = first.status()
    assert answer["pid"] == first.process.pid and answer["ready"] is True
    assert answer["virtuals"][0]["in_table"] is True
    assert [get(port)[1] for _ in range(3)] == ["rs1"] * 3
    assert first.process.poll() is None
    assert "Purged virtual server" not in second.stderr and "cleanstop" not in second.stderr
    assert not (tmp_path / "second.pid").exists()
    # and stops cleanly through that socket, removing it
    assert first.command("stop")["stopping"] is True
    assert first.process.wait(15) == 0
    assert not first.control.exists()


def test_second_daemon_of_the_same_config_with_its_own_socket_and_pidfile_is_refused(nginx, directors, tmp_path):
    """Same ldirectord.cf, same network namespace, different --control and --pidfile: on a kernel plane
    the two would share and fight over one table, so the second is refused by the instance lock."""
    rs = nginx(name="rs1", files={"/index.html": "rs1\n"})
    port = free_port()
    first = directors("first", tcp_config(tmp_path, port, rs.port))
    first.wait_ready()
    second, took = run_second("run", "-c", str(first.config), "--dataplane", "proxy",
                              "--control", str(tmp_path / "other.sock"), "--pidfile", str(tmp_path / "other.pid"))
    assert second.returncode == 1, second.stderr
    assert f"already directs {first.config}" in second.stderr
    assert f"(pid {first.process.pid})" in second.stderr
    assert took < 20
    assert not (tmp_path / "other.sock").exists() and not (tmp_path / "other.pid").exists()
    answer = first.status()
    assert answer["ready"] is True and answer["virtuals"][0]["in_table"] is True
    assert [get(port)[1] for _ in range(3)] == ["rs1"] * 3
    # the lock dies with its owner: after a kill -9 a new daemon of the same config starts at once
    first.process.kill()
    first.process.wait(10)
    control = tmp_path / "third.sock"
    third = subprocess.Popen([*SARU, "run", "-c", str(first.config), "--dataplane", "proxy", "--control",
                              str(control)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    try:
        until(lambda: (status(control) or {}).get("ready"), 20, "the restarted daemon is ready")
        assert get(port)[1] == "rs1"
    finally:
        third.terminate()
        third.wait(15)


def test_second_daemon_on_the_same_udp_port_is_refused_not_stealing_datagrams(directors, tmp_path):
    echo_a, echo_b = UdpEcho("A"), UdpEcho("B")
    try:
        port = free_port(kind=socket.SOCK_DGRAM)
        first = directors("first", udp_config(tmp_path, port, echo_a.port))
        first.wait_ready()
        assert udp_ask(port) == b"A:ping"
        workdir = tmp_path / "second"
        workdir.mkdir()
        (workdir / "b.cf").write_text(udp_config(workdir, port, echo_b.port))
        second = subprocess.Popen([*SARU, "run", "-c", str(workdir / "b.cf"), "--dataplane", "proxy",
                                   "--control", str(workdir / "b.sock"), "--start-timeout", "3"],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  text=True)
        try:
            # while the second runs (and after it gave up) every datagram still reaches the first's real
            while second.poll() is None:
                assert udp_ask(port) == b"A:ping"
            _, err = second.communicate(timeout=20)
        finally:
            if second.poll() is None:
                second.kill()
                second.wait()
        assert second.returncode == 1, err
        assert "Address already in use" in err
        assert udp_ask(port) == b"A:ping"
        assert first.status()["ready"] is True
    finally:
        echo_a.close()
        echo_b.close()


# ------------------------------------------------------------------------------ item 3: fail fast


def test_port_in_use_at_start_exits_1_within_the_start_timeout(tmp_path):
    with held_port() as taken:
        port = taken.getsockname()[1]
        config = tmp_path / "busy.cf"
        config.write_text(tcp_config(tmp_path, port, free_port()))
        control, pidfile = tmp_path / "busy.sock", tmp_path / "busy.pid"
        proc, took = run_second("run", "-c", str(config), "--dataplane", "proxy", "--control", str(control),
                                "--pidfile", str(pidfile), "--start-timeout", "2")
    assert proc.returncode == 1, proc.stderr
    assert took < 15, f"took {took:.1f}s"
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in proc.stderr
    assert "could not program the table within 2s" in proc.stderr
    assert "--start-timeout 0" in proc.stderr  # says how to keep retrying instead
    assert not control.exists() and not pidfile.exists()  # it owned them: it removed them


def test_status_says_not_ready_while_the_table_cannot_be_programmed(nginx, directors, tmp_path):
    rs = nginx(name="rs1", files={"/index.html": "rs1\n"})
    taken = held_port()
    port = taken.getsockname()[1]
    try:
        d = directors("busy", tcp_config(tmp_path, port, rs.port), "--start-timeout", "0")
        doc = until(lambda: (s := status(d.control)) and s.get("apply_error") and s, 15, "an apply error")
        assert doc["ready"] is False
        error = doc["apply_error"]
        assert "Address already in use" in error["message"]
        assert error["attempts"] >= 1 and error["since"] <= error["at"] <= time.time()
        text = render_status(doc)
        assert "NOT READY: table not programmed:" in text and "Address already in use" in text
        assert "NOT IN TABLE" in text
        d.wait_for(r"applying the table failed.*Address already in use")
        until(lambda: (s := status(d.control)) and s["apply_error"]["attempts"] >= 3, 15, "three attempts")
        assert d.process.poll() is None  # --start-timeout 0: it keeps retrying
        # the port comes free: the table is programmed, the daemon is ready, status says so
        taken.close()
        d.wait_ready()
        doc = until(lambda: (s := status(d.control)) and s["ready"] and s, 10, "ready")
        assert doc["apply_error"] is None
        text = render_status(doc)
        assert "NOT READY" not in text and "NOT IN TABLE" not in text
        assert get(port)[1] == "rs1"
    finally:
        taken.close()


def test_apply_failure_after_start_is_retried_shown_and_not_fatal(nginx, directors, tmp_path):
    rs = nginx(name="rs1", files={"/index.html": "rs1\n"})
    port = free_port()
    d = directors("late", tcp_config(tmp_path, port, rs.port), "--start-timeout", "1")
    d.wait_ready()
    with held_port() as taken:
        busy = taken.getsockname()[1]
        extra = f"virtual=127.0.0.1:{busy}\n\treal=127.0.0.1:{rs.port} masq\n\tservice=http\n\tchecktype=on\n"
        d.config.write_text(tcp_config(tmp_path, port, rs.port, extra))
        assert d.command("reload")["reloaded"] is True
        doc = until(lambda: (s := status(d.control)) and s["apply_error"] and s, 15, "an apply error")
        assert doc["ready"] is True
        assert f"127.0.0.1:{busy}: Address already in use" in doc["apply_error"]["message"]
        text = render_status(doc)
        assert "TABLE NOT IN LINE WITH HEALTH" in text and "Address already in use" in text
        busy_line = next(line for line in text.splitlines() if f"127.0.0.1:{busy} " in line)
        assert "NOT IN TABLE" in busy_line
        # past the start timeout it is still running, retrying, and the first virtual still serves
        until(lambda: (s := status(d.control)) and s["apply_error"]["attempts"] >= 3, 20, "three attempts")
        assert d.process.poll() is None
        assert get(port)[1] == "rs1"
    # the port comes free: the retry programs the new virtual and the error clears
    doc = until(lambda: (s := status(d.control)) and s["apply_error"] is None and s, 40, "error cleared")
    assert all(v["in_table"] for v in doc["virtuals"])
    assert get(busy)[1] == "rs1"
    d.wait_for(r"Table applied again after \d+ failed attempts")


def test_demo_exits_nonzero_when_its_port_is_taken(tmp_path):
    with held_port() as taken:
        port = taken.getsockname()[1]
        began = time.monotonic()
        proc = subprocess.run([*SARU, "demo", "--port", str(port), "--dir", str(tmp_path), "--duration", "30"],
                              capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        took = time.monotonic() - began
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert took < 20, f"took {took:.1f}s"
    assert f"127.0.0.1:{port} is in use" in proc.stderr
    assert "Saru demo is running" not in proc.stdout


def test_ldirectord_start_fails_when_the_port_is_taken(tmp_path):
    piddir = tmp_path / "run"
    piddir.mkdir()
    config = tmp_path / f"saru-busy-{os.getpid()}.cf"
    with held_port() as taken:
        port = taken.getsockname()[1]
        config.write_text(tcp_config(tmp_path, port, free_port()))
        env = {**os.environ, "SARU_DATAPLANE": "proxy", "SARU_LDIRECTORD_PIDDIR": str(piddir),
               "SARU_LDIRECTORD_START_TIMEOUT": "60", "SARU_LDIRECTORD_TABLE_TIMEOUT": "2"}
        began = time.monotonic()
        proc = subprocess.run([*LDIRECTORD, str(config), "start"], env=env, capture_output=True, text=True,
                              timeout=90, stdin=subprocess.DEVNULL)
        took = time.monotonic() - began
        pidfile = piddir / f"ldirectord.{config.name}.pid"
        leftover = pidfile.read_text().strip() if pidfile.exists() else ""
        try:
            assert proc.returncode == 1, (proc.stdout, proc.stderr)
            assert took < 30, f"took {took:.1f}s"
            assert "Address already in use" in proc.stderr
            assert "could not program the table" in proc.stderr
            assert not leftover
            status_ = subprocess.run([*LDIRECTORD, str(config), "status"], env=env, capture_output=True,
                                     text=True, timeout=30)
            assert status_.returncode == 3, status_
        finally:
            if leftover and pid_alive(int(leftover)):
                os.kill(int(leftover), 15)


def test_status_json_keeps_ready_and_carries_the_apply_error(directors, tmp_path, nginx):
    """``saru status --json`` (the CLI, not just the socket) shows ``ready`` and ``apply_error``."""
    rs = nginx(name="rs1", files={"/index.html": "rs1\n"})
    with held_port() as taken:
        port = taken.getsockname()[1]
        d = directors("json", tcp_config(tmp_path, port, rs.port), "--start-timeout", "0")
        until(lambda: (s := status(d.control)) and s.get("apply_error"), 15, "an apply error")
        out = subprocess.run([*SARU, "status", "--control", str(d.control), "--json"], capture_output=True,
                             text=True, timeout=30)
        assert out.returncode == 1, out.stderr  # answers, but not ready: scripts and monitoring see it
        doc = json.loads(out.stdout)
        assert doc["ready"] is False and "Address already in use" in doc["apply_error"]["message"]
        text = subprocess.run([*SARU, "status", "--control", str(d.control)], capture_output=True, text=True,
                              timeout=30)
        assert "NOT READY: table not programmed:" in text.stdout and text.returncode == 1
    until(lambda: (s := status(d.control)) and s.get("ready"), 30, "ready once the port is free")
    ready = subprocess.run([*SARU, "status", "--control", str(d.control)], capture_output=True, text=True, timeout=30)
    assert ready.returncode == 0 and "NOT READY" not in ready.stdout, ready
