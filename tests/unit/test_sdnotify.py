"""saru.sdnotify against a real notify socket: the test binds the ``AF_UNIX`` datagram socket systemd
would (a path, and a name in the abstract namespace), with ``SO_PASSCRED`` as systemd sets it, and
reads what the notifier sends — the datagram and the sender's credentials. No systemd, no
``systemd-notify``; the same module under a real systemd as PID 1 is in tests/packaging/test_systemd.py.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from saru.sdnotify import (
    STATUS_MAX,
    Notifier,
    fd_name,
    format_message,
    monotonic_usec,
    ping_period,
    socket_address,
    watchdog_interval,
)

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Received:
    fields: dict[str, str]
    raw: bytes
    pid: int
    uid: int


class Manager:
    """The supervisor's side: a bound datagram socket that receives notifications with credentials."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(address)
        self.sock.settimeout(5)
        #: what NOTIFY_SOCKET says for this socket
        self.env_value = "@" + address[1:] if address.startswith("\0") else address

    def receive(self) -> Received:
        data, ancdata, _flags, _addr = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
        pid = uid = -1
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid, uid, _gid = struct.unpack("3i", payload[:12])
        fields = dict(line.split("=", 1) for line in data.decode().split("\n"))
        return Received(fields, data, pid, uid)

    def nothing_pending(self) -> bool:
        self.sock.setblocking(False)
        try:
            self.sock.recv(4096)
        except BlockingIOError:
            return True
        finally:
            self.sock.settimeout(5)
        return False

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def path_manager(tmp_path: Path) -> Iterator[Manager]:
    manager = Manager(str(tmp_path / "notify"))
    yield manager
    manager.close()


@pytest.fixture
def abstract_manager() -> Iterator[Manager]:
    manager = Manager(f"\0saru-test-notify-{os.getpid()}-{time.monotonic_ns()}")
    yield manager
    manager.close()


# -- pure parts ----------------------------------------------------------------------------------------


def test_format_message_joins_fields_in_order() -> None:
    assert format_message({"READY": "1", "STATUS": "MASTER, 2 virtuals"}) == b"READY=1\nSTATUS=MASTER, 2 virtuals"


def test_format_message_flattens_and_caps_the_status_line() -> None:
    assert format_message({"STATUS": "a\nb\t c"}) == b"STATUS=a b c"
    assert len(format_message({"STATUS": "x" * 5000})) == len("STATUS=") + STATUS_MAX


@pytest.mark.parametrize("fields", [{}, {"ready": "1"}, {"READY=": "1"}, {"": "1"}, {"ERRNO": "1\nREADY=1"},
                                    {"X": "a\0b"}])
def test_format_message_refuses_what_would_corrupt_the_protocol(fields: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        format_message(fields)


def test_socket_address_kinds() -> None:
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("@saru/notify") == "\0saru/notify"
    assert socket_address(None) is None
    assert socket_address("") is None
    assert socket_address("vsock:2:1234") is None
    assert socket_address("relative/path") is None


def test_watchdog_interval_parsing() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "1500000", "WATCHDOG_PID": str(os.getpid())}) == 1.5
    assert watchdog_interval({"WATCHDOG_USEC": "1500000", "WATCHDOG_PID": "1"}, pid=1) == 1.5
    assert watchdog_interval({"WATCHDOG_USEC": "1500000", "WATCHDOG_PID": str(os.getpid() + 1)}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "1500000", "WATCHDOG_PID": "x"}) is None
    for bad in ("", "0", "-5", "1.5", "abc"):
        assert watchdog_interval({"WATCHDOG_USEC": bad}) is None
    assert watchdog_interval({}) is None
    assert ping_period(30.0) == 15.0


# -- against a real socket --------------------------------------------------------------------------------


def test_unset_notify_socket_is_a_no_op() -> None:
    env: dict[str, str] = {}
    notifier = Notifier.from_environment(env)
    assert not notifier.enabled
    assert notifier.ready("x") is False
    assert notifier.watchdog() is False
    assert notifier.last_error is None


def test_ready_with_status_reaches_a_path_socket_with_our_credentials(path_manager: Manager) -> None:
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": path_manager.env_value})
    assert notifier.enabled
    assert notifier.ready(status="MASTER, 2 virtuals, 4/4 reals up, nftables") is True
    got = path_manager.receive()
    assert got.raw == b"READY=1\nSTATUS=MASTER, 2 virtuals, 4/4 reals up, nftables"
    assert (got.pid, got.uid) == (os.getpid(), os.getuid())
    notifier.close()


def test_every_message_reaches_an_abstract_socket(abstract_manager: Manager) -> None:
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": abstract_manager.env_value})
    assert abstract_manager.env_value.startswith("@")

    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert notifier.reloading()
    after = monotonic_usec()
    got = abstract_manager.receive()
    assert got.fields["RELOADING"] == "1"
    assert before <= int(got.fields["MONOTONIC_USEC"]) <= after
    assert list(got.fields) == ["RELOADING", "MONOTONIC_USEC"]

    assert notifier.ready()
    assert abstract_manager.receive().raw == b"READY=1"
    assert notifier.status("BACKUP, 2 virtuals, 3/4 reals up, ipvs")
    assert abstract_manager.receive().raw == b"STATUS=BACKUP, 2 virtuals, 3/4 reals up, ipvs"
    assert notifier.watchdog()
    assert abstract_manager.receive().raw == b"WATCHDOG=1"
    assert notifier.extend_timeout(2.5)
    assert abstract_manager.receive().raw == b"EXTEND_TIMEOUT_USEC=2500000"
    assert notifier.stopping(status="stopping: releasing the VIP")
    assert abstract_manager.receive().raw == b"STOPPING=1\nSTATUS=stopping: releasing the VIP"
    assert abstract_manager.nothing_pending()
    notifier.close()


def test_a_vanished_socket_is_a_failed_send_not_an_exception(tmp_path: Path) -> None:
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert notifier.enabled
    assert notifier.ready() is False
    assert notifier.last_error is not None and "gone" in notifier.last_error
    # and it recovers when the socket appears
    manager = Manager(str(tmp_path / "gone"))
    try:
        assert notifier.watchdog() is True
        assert manager.receive().raw == b"WATCHDOG=1"
        assert notifier.last_error is None
    finally:
        manager.close()
        notifier.close()


def test_a_full_queue_never_blocks(path_manager: Manager) -> None:
    """The manager never reads: sends fail (False) once its queue is full, and each returns at once."""
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": path_manager.env_value})
    results = []
    start = time.monotonic()
    for _ in range(5000):
        results.append(notifier.status("x" * 400))
        if not results[-1]:
            break
    assert time.monotonic() - start < 5
    assert results[-1] is False and "Resource temporarily unavailable" in (notifier.last_error or "")
    notifier.close()


def test_unsupported_address_is_reported_and_sends_nothing() -> None:
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": "vsock:2:99"})
    assert not notifier.enabled
    assert notifier.last_error == "unsupported NOTIFY_SOCKET 'vsock:2:99'"
    assert notifier.ready() is False


def test_unset_removes_the_variables_children_would_inherit(path_manager: Manager) -> None:
    env = {"NOTIFY_SOCKET": path_manager.env_value, "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "7", "PATH": "/bin"}
    interval = watchdog_interval(env, pid=7)
    notifier = Notifier.from_environment(env, unset=True)
    assert interval == 2.0
    assert env == {"PATH": "/bin"}
    assert notifier.ready()
    assert path_manager.receive().raw == b"READY=1"
    notifier.close()


def test_a_child_process_notifies_from_its_environment(path_manager: Manager) -> None:
    """The way the daemon is started by systemd: NOTIFY_SOCKET in a new process's environment."""
    code = ("from saru.sdnotify import Notifier; import sys; "
            "sys.exit(0 if Notifier.from_environment().ready('up') else 1)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, timeout=30,
                          env={**os.environ, "NOTIFY_SOCKET": path_manager.env_value})
    assert proc.returncode == 0
    got = path_manager.receive()
    assert got.raw == b"READY=1\nSTATUS=up"
    assert got.pid not in (os.getpid(), -1)


# -- the file descriptor store ----------------------------------------------------------------------------


def test_fd_name_is_valid_for_listen_fdnames() -> None:
    assert fd_name("tcp-127.0.0.1-80") == "tcp-127.0.0.1-80"
    assert fd_name("tcp-2001:db8::1-443") == "tcp-2001_db8__1-443"  # ":" separates LISTEN_FDNAMES
    for bad in ("", "a\nb", "é", "x" * 256):
        with pytest.raises(ValueError):
            fd_name(bad)


def test_store_fd_hands_a_copy_of_the_descriptor_to_the_manager(path_manager: Manager) -> None:
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": path_manager.env_value})
    listener = socket.create_server(("127.0.0.1", 0))
    with listener:
        assert notifier.store_fd("tcp-127.0.0.1-80", listener.fileno()) is True
        data, ancdata, _flags, _addr = path_manager.sock.recvmsg(4096, 256)
        fds = [fd for level, kind, payload in ancdata if (level, kind) == (socket.SOL_SOCKET, socket.SCM_RIGHTS)
               for fd in struct.unpack(f"{len(payload) // 4}i", payload)]
        assert data == b"FDSTORE=1\nFDNAME=tcp-127.0.0.1-80" and len(fds) == 1
        with socket.socket(fileno=fds[0]) as copy:  # the very socket: a client reaches it through the copy
            assert copy.getsockname() == listener.getsockname()
    assert notifier.remove_fd("tcp-127.0.0.1-80") is True
    assert path_manager.receive().raw == b"FDSTOREREMOVE=1\nFDNAME=tcp-127.0.0.1-80"
    notifier.close()


LISTEN_CHILD = """
import json, os, socket
from saru.sdnotify import listen_fds
s = socket.create_server(("127.0.0.1", 0))
os.dup2(s.fileno(), 3)
os.dup2(s.fileno(), 4)
env = {"LISTEN_FDS": "2", "LISTEN_PID": str(os.getpid()), "LISTEN_FDNAMES": "tcp-127.0.0.1-80"}
got = listen_fds(env)
others = {"LISTEN_FDS": "2", "LISTEN_PID": str(os.getpid() + 1)}
print(json.dumps({"got": got, "cloexec": not os.get_inheritable(3), "left": sorted(env),
                  "others": listen_fds(others)}))
"""


def test_listen_fds_reads_what_systemd_passes_only_for_this_process() -> None:
    out = subprocess.run([sys.executable, "-c", LISTEN_CHILD], capture_output=True, text=True, check=True,
                         cwd=ROOT, timeout=30).stdout
    assert json.loads(out) == {"got": [["tcp-127.0.0.1-80", 3], ["unknown", 4]], "cloexec": True, "left": [],
                               "others": []}
