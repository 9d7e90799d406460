"""The proxy's listening sockets in systemd's file descriptor store, under a real systemd (nspawn).

saru.service as shipped (``FileDescriptorStoreMax=``, ``Restart=on-failure``, ``RestartSec=2s``) runs the
proxy on two virtuals. A client hammers one with new connections while the daemon is killed with -9:
systemd restarts it and hands the kept sockets back, so no connection is refused — those made during
the gap wait in the backlog and are served by the new daemon (the few relayed through the killed
process at that moment die with it: that is its memory). A virtual taken out of the file before
the crash has its kept socket closed by the new daemon (and removed from the store).

The session's container (``machine``, tests/packaging/conftest.py), shared with test_systemd.py and
test_bgp.py: this module's real server, port and units are its own, and it leaves saru.service stopped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from tests.packaging.container import Container
from tests.packaging.test_systemd import get, main_pid

pytestmark = pytest.mark.timeout(600)

LDIRECTORD_CF = """\
checktimeout=2
checkinterval=1
logfile="/var/log/saru/ldirectord.log"
virtual=127.0.0.1:80
\treal=127.0.0.1:8091 masq
\tscheduler=rr
\tprotocol=tcp
\tchecktype=connect
"""
SECOND = """\
virtual=127.0.0.1:81
\treal=127.0.0.1:8091 masq
\tprotocol=tcp
\tchecktype=connect
"""
SARU_TOML = '[director]\nconfig = "ldirectord.cf"\ndataplane = "proxy"\n'
HAMMER = """\
# New connections to 127.0.0.1:80 from 4 threads until /run/hammer/stop exists; the counts to stdout.
import json, os, socket, threading, time
counts = {"ok": 0, "refused": 0, "broken": 0, "other": 0, "slowest": 0.0, "errors": []}
lock = threading.Lock()

def work():
    while not os.path.exists("/run/hammer/stop"):
        started = time.monotonic()
        try:
            with socket.create_connection(("127.0.0.1", 80), timeout=30) as s:
                s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
            kind = "ok" if data.startswith(b"HTTP/1.0 200") else "broken"
            error = "" if kind == "ok" else f"short answer: {data[:60]!r}"
        except ConnectionRefusedError as exc:
            kind, error = "refused", repr(exc)
        except ConnectionResetError as exc:
            kind, error = "broken", repr(exc)
        except OSError as exc:
            kind, error = "other", repr(exc)
        with lock:
            counts[kind] += 1
            if error:
                counts["errors"].append(error)
            counts["slowest"] = max(counts["slowest"], time.monotonic() - started)
        if kind == "refused":
            time.sleep(0.01)

threads = [threading.Thread(target=work) for _ in range(4)]
for t in threads:
    t.start()
open("/run/hammer/started", "w").close()
for t in threads:
    t.join()
print(json.dumps(counts))
"""


def store_size(c: Container) -> int:
    return int(c.show("saru.service", "NFileDescriptorStore")["NFileDescriptorStore"])


def kill_and_wait_for_restart(c: Container) -> None:
    pid = main_pid(c)
    c.run("kill", "-KILL", str(pid))
    c.wait_for("the restart", lambda: main_pid(c) not in (0, pid)
               and c.show("saru.service", "ActiveState")["ActiveState"] == "active", timeout=60)


@pytest.fixture
def c(machine: Container) -> Iterator[Container]:
    """The shared container, left with saru.service stopped and this module's units gone."""
    try:
        yield machine
    finally:
        machine.run("systemctl", "stop", "saru.service", "fdstore-rs1.service", "hammer.service",
                    check=False, timeout=60)
        machine.run("systemctl", "reset-failed", "saru.service", check=False)


def test_a_killed_daemon_refuses_no_connection(c: Container) -> None:
    c.write("/srv/fdstore/index.html", "rs1\n")
    c.write("/etc/saru/saru.toml", SARU_TOML)
    c.write("/etc/saru/ldirectord.cf", LDIRECTORD_CF + SECOND)
    c.run("systemctl", "reset-failed", "saru.service", check=False)
    c.run("systemd-run", "--unit=fdstore-rs1", "--property=DynamicUser=yes", "python3", "-m", "http.server",
          "8091", "--bind", "127.0.0.1", "--directory", "/srv/fdstore")
    c.wait_for("the real server", lambda: get(c, "http://127.0.0.1:8091/"))
    c.run("systemctl", "start", "saru.service", timeout=150)
    c.wait_for("traffic through the proxy", lambda: get(c, "http://127.0.0.1/") == "rs1\n")
    assert store_size(c) == 2, c.journal("saru.service")  # one listening socket per virtual

    c.write("/usr/local/lib/saru-test/hammer.py", HAMMER)
    c.run("mkdir", "-p", "/run/hammer")
    c.run("systemd-run", "--unit=hammer", "--property=StandardOutput=file:/run/hammer/out",
          "python3", "/usr/local/lib/saru-test/hammer.py")
    c.wait_for("the hammer", lambda: c.run("test", "-e", "/run/hammer/started", check=False).returncode == 0)
    time.sleep(0.5)  # some connections before the kill (the counts show them)
    kill_and_wait_for_restart(c)
    c.wait_for("traffic after the restart", lambda: get(c, "http://127.0.0.1/") == "rs1\n")
    c.run("touch", "/run/hammer/stop")
    c.wait_for("the hammer's end", lambda: c.show("hammer.service", "ActiveState")["ActiveState"]
               in ("inactive", "failed"), timeout=60)
    counts = json.loads(c.run("cat", "/run/hammer/out").stdout)
    # none refused; the requests in flight through the killed process (one per thread at most) are
    # broken with it: a userspace proxy's established connections live in its memory
    assert counts["refused"] == 0 and counts["other"] == 0 and counts["broken"] <= 4, counts
    assert counts["ok"] > 20 and counts["slowest"] > 1.0, counts  # some waited out the restart
    assert store_size(c) == 2

    # a virtual gone from the file by the time of the restart: its kept socket is closed
    c.write("/etc/saru/ldirectord.cf", LDIRECTORD_CF)
    kill_and_wait_for_restart(c)
    c.wait_for("the stale socket's closing", lambda: store_size(c) == 1)
    assert "Closed the kept listening socket tcp-127.0.0.1-81" in c.journal("saru.service", 100)
    refused = c.run("python3", "-c", "import socket; socket.create_connection(('127.0.0.1', 81), timeout=3)",
                    check=False)
    assert "ConnectionRefusedError" in refused.stderr, refused.stderr
    assert get(c, "http://127.0.0.1/") == "rs1\n"

    c.run("systemctl", "stop", "saru.service", timeout=60)
    assert get(c, "http://127.0.0.1/") == ""  # a clean stop lets go of the sockets
