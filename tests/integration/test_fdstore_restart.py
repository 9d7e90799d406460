"""``saru run`` on the proxy plane keeps its listening sockets across a restart, refusing no connection.

* The file descriptor store, as under systemd (tests/packaging/test_fdstore.py runs the shipped unit
  under a real systemd): this test is the supervisor — a notify socket that receives the ``FDSTORE=1``
  descriptors, then a new ``saru run`` started with them as ``LISTEN_FDS`` after a kill -9. A kept
  socket whose virtual left the file is closed by the new daemon.
* ``saru run --handover`` outside systemd: the new daemon takes the sockets from the running one over
  its control socket, stops it and serves on them.

Each time a client hammers new connections across the restart: none is refused.
"""

from __future__ import annotations

import array
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import Nginx, free_port, start_nginx, wait_for_port

pytestmark = [pytest.mark.needs_nginx, pytest.mark.timeout(60)]


class Store:
    """systemd's side: FDSTORE=1 keeps a descriptor by name, FDSTOREREMOVE=1 closes it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.fds: dict[str, int] = {}

    def receive(self, timeout: float) -> None:
        self.sock.settimeout(timeout)
        try:
            data, ancdata, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(16))
        except TimeoutError:
            return
        fields = dict(line.split("=", 1) for line in data.decode().splitlines())
        fds = [fd for level, kind, payload in ancdata if (level, kind) == (socket.SOL_SOCKET, socket.SCM_RIGHTS)
               for fd in array.array("i", payload[:len(payload) - len(payload) % 4])]
        if fields.get("FDSTORE") == "1" and fds:
            self.fds.setdefault(fields["FDNAME"], fds[0])
        elif fields.get("FDSTOREREMOVE") == "1" and fields["FDNAME"] in self.fds:
            os.close(self.fds.pop(fields["FDNAME"]))

    def wait_for(self, names: set[str], timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while set(self.fds) != names:
            assert time.monotonic() < deadline, f"store holds {sorted(self.fds)}, expected {sorted(names)}"
            self.receive(0.2)

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.sock.close()


CONFIG = """\
checktimeout=2
checkinterval=1
logfile="{log}"
virtual=127.0.0.1:{port}
\treal=127.0.0.1:{real} masq
\tprotocol=tcp
\tchecktype=connect
"""


def start(tmp_path: Path, store: Store | None, fds: dict[str, int] | None = None,
          extra: tuple[str, ...] = ()) -> subprocess.Popen[bytes]:
    """``saru run`` with NOTIFY_SOCKET (``store``); ``fds``: handed down as systemd does (fd 3… + LISTEN_*)."""
    env = dict(os.environ)
    env.pop("NOTIFY_SOCKET", None)
    if store is not None:
        env["NOTIFY_SOCKET"] = str(store.path)
    names, sources = list(fds or {}), list((fds or {}).values())

    def hand_down() -> None:  # in the child: the descriptors at 3, 4, …
        for i, fd in enumerate(sources):
            os.dup2(fd, 3 + i)

    for key in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
        env.pop(key, None)
    if sources:
        env.update(LISTEN_FDS=str(len(sources)), LISTEN_FDNAMES=":".join(names))
    argv = [sys.executable, "-m", "saru", "run", "-c", str(tmp_path / "ldirectord.cf"), "--dataplane", "proxy",
            "--control", str(tmp_path / "control.sock"), "--pidfile", str(tmp_path / "saru.pid"), *extra]
    if sources:  # LISTEN_PID is the daemon's own pid: the shell's, which exec keeps
        argv = ["sh", "-c", 'LISTEN_PID=$$ exec "$@"', "sh", *argv]
    return subprocess.Popen(
        argv, env=env, preexec_fn=hand_down, pass_fds=tuple(range(3, 3 + len(sources))),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


class Hammer:
    """New connections to one port, one after the other, until stopped; counts what happened."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.counts = {"ok": 0, "refused": 0, "broken": 0}
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopped.is_set():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=20) as s:
                    s.sendall(b"GET / HTTP/1.0\r\n\r\n")
                    data = b""
                    while chunk := s.recv(4096):
                        data += chunk
                self.counts["ok" if data.startswith(b"HTTP/1.1 200") else "broken"] += 1
            except ConnectionRefusedError:
                self.counts["refused"] += 1
                time.sleep(0.01)
            except OSError:
                self.counts["broken"] += 1

    def wait_ok(self, count: int, alive: Callable[[], None], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while self.counts["ok"] < count:
            alive()
            assert time.monotonic() < deadline, self.counts
            time.sleep(0.05)

    def stop(self) -> dict[str, int]:
        self.stopped.set()
        self.thread.join(25)
        return self.counts


def running(proc: subprocess.Popen[bytes], what: str) -> Callable[[], None]:
    def check() -> None:
        if proc.poll() is not None:
            assert proc.stderr is not None
            raise AssertionError(f"{what} exited {proc.returncode}: {proc.stderr.read().decode()}")
    return check


def stop_all(*procs: subprocess.Popen[bytes] | None) -> None:
    for proc in procs:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc is not None and proc.stderr is not None:
            proc.stderr.close()


@pytest.fixture
def real(tmp_path: Path) -> Iterator[Nginx]:
    server = start_nginx(tmp_path / "rs1", "rs1", files={"index.html": "rs1\n"})
    yield server
    server.stop()


def test_a_killed_daemon_takes_its_sockets_back(real: Nginx, tmp_path: Path) -> None:
    ports = free_port(), free_port()
    cf = tmp_path / "ldirectord.cf"
    cf.write_text("".join(CONFIG.format(log=tmp_path / "saru.log", port=p, real=real.port) for p in ports))
    names = {f"tcp-127.0.0.1-{p}" for p in ports}
    store = Store(tmp_path / "notify")
    first = second = None
    hammer: Hammer | None = None
    try:
        first = start(tmp_path, store)
        store.wait_for(names)  # one socket per virtual, named by it
        hammer = Hammer(ports[0])
        hammer.wait_ok(10, running(first, "the first daemon"))
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        cf.write_text(CONFIG.format(log=tmp_path / "saru.log", port=ports[0], real=real.port))  # one left
        second = start(tmp_path, store, dict(store.fds))
        hammer.wait_ok(hammer.counts["ok"] + 10, running(second, "the second daemon"))
        counts = hammer.stop()
        assert counts["refused"] == 0 and counts["broken"] <= 1, counts  # at most the one in flight at the kill
        store.wait_for({f"tcp-127.0.0.1-{ports[0]}"})  # the gone virtual's socket: removed from the store
        with pytest.raises(ConnectionRefusedError):  # and closed by the new daemon
            socket.create_connection(("127.0.0.1", ports[1]), timeout=3).close()
        second.send_signal(signal.SIGTERM)
        assert second.wait(15) == 0
    finally:
        if hammer is not None:
            hammer.stop()
        stop_all(first, second)
        store.close()


def test_handover_refuses_no_connection(real: Nginx, tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "ldirectord.cf").write_text(CONFIG.format(log=tmp_path / "saru.log", port=port, real=real.port))
    old = new = None
    hammer: Hammer | None = None
    try:
        old = start(tmp_path, None)
        wait_for_port("127.0.0.1", port, timeout=20)
        hammer = Hammer(port)
        hammer.wait_ok(10, running(old, "the old daemon"))
        new = start(tmp_path, None, extra=("--handover",))
        assert old.wait(30) == 0  # told to stop by the new one, after it took the sockets
        hammer.wait_ok(hammer.counts["ok"] + 20, running(new, "the new daemon"))
        counts = hammer.stop()
        assert counts["refused"] == 0 and counts["broken"] <= 1, counts  # at most one relayed by the old at its stop
        new.send_signal(signal.SIGTERM)
        assert new.wait(15) == 0
        alone = start(tmp_path, None, extra=("--handover",))  # nothing running: starts as usual
        try:
            deadline = time.monotonic() + 20
            while True:
                running(alone, "a --handover daemon with none to replace")()
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=3).close()
                    break
                except ConnectionRefusedError:
                    assert time.monotonic() < deadline
                    time.sleep(0.1)
            alone.send_signal(signal.SIGTERM)
            assert alone.wait(15) == 0
        finally:
            stop_all(alone)
    finally:
        if hammer is not None:
            hammer.stop()
        stop_all(old, new)
