"""A refused second ``saru run`` touches nothing of the running one's: the nftables table and the
control socket of the first stay (issue 10, item 1), on the real kernel in a network namespace.

One namespace (``tests.lab.Segment`` with one host) runs the first daemon on the nftables plane;
a second daemon with the same config is started against the same control socket, then against the
same pid file with a socket of its own. Each must exit 1, and afterwards ``nft list ruleset`` still
holds the first's virtual service and the first still answers ``status`` on its socket.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from saru.control import request_sync
from tests.helpers import require
from tests.lab import Host, Segment

pytestmark = pytest.mark.timeout(90)

VIP = "10.98.5.240"
REAL = "10.98.5.11"
CONFIG = """\
checkinterval=1
logfile="{log}"
virtual={vip}:80
\treal={real}:80 gate
\tservice=http
\tscheduler=rr
\tprotocol=tcp
\tchecktype=on
"""


@pytest.fixture
def director(tmp_path: Path) -> Iterator[Host]:
    ok, why = Segment.available()
    require(ok, why)
    with Segment({"ld": ["10.98.5.2/24"]}, tag="own") as lan:
        host = lan["ld"]
        probe = host.run(sys.executable, "-c", "from saru.dataplane.select import availability; "
                         "print(*availability('nft'))", check=False)
        require(probe.returncode == 0 and probe.stdout.startswith("True"), f"nftables plane: {probe.stdout}"
                f"{probe.stderr}")
        yield host


def ruleset(host: Host) -> str:
    return host.run("nft", "list", "ruleset").stdout


def answer(control: Path) -> dict[str, Any] | None:
    try:
        doc = request_sync(control, "status", timeout=5)
    except OSError:
        return None
    return doc if doc.get("ok") else None


def start_first(host: Host, tmp_path: Path) -> tuple[subprocess.Popen[str], Path, Path, Path]:
    cf = tmp_path / "nft.cf"
    cf.write_text(CONFIG.format(log=tmp_path / "saru.log", vip=VIP, real=REAL))
    control, pidfile = tmp_path / "first.sock", tmp_path / "first.pid"
    first = host.popen(sys.executable, "-m", "saru", "run", "-c", str(cf), "--dataplane", "nft",
                       "--control", str(control), "--pidfile", str(pidfile), "-q",
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not ((doc := answer(control)) and doc["ready"]):
        if first.poll() is not None:
            assert first.stderr is not None
            raise AssertionError(f"first daemon exited {first.returncode}: {first.stderr.read()}")
        assert time.monotonic() < deadline, "first daemon not ready within 30s"
        time.sleep(0.1)
    assert f"{VIP}" in ruleset(host) and REAL in ruleset(host)
    return first, cf, control, pidfile


def assert_first_intact(host: Host, first: subprocess.Popen[str], control: Path) -> None:
    table = ruleset(host)
    assert "saru" in table, table
    assert VIP in table and REAL in table, table
    assert control.exists()
    doc = answer(control)
    assert doc is not None, f"the first daemon's socket {control} does not answer"
    assert doc["pid"] == first.pid
    assert doc["ready"] is True and doc["virtuals"][0]["in_table"] is True
    assert first.poll() is None


def test_second_daemon_on_the_same_socket_leaves_table_and_socket(director: Host, tmp_path: Path) -> None:
    first, cf, control, _ = start_first(director, tmp_path)
    second = director.run(sys.executable, "-m", "saru", "run", "-c", str(cf), "--dataplane", "nft",
                          "--control", str(control), "--pidfile", str(tmp_path / "second.pid"),
                          check=False, timeout=30)
    assert second.returncode == 1, second.stderr
    assert "in use" in second.stderr
    assert "Purged virtual server" not in second.stderr
    assert_first_intact(director, first, control)
    first.terminate()
    assert first.wait(15) == 0
    assert VIP not in ruleset(director)  # the owner's cleanstop still works
    assert not control.exists()


def test_second_daemon_on_the_same_pidfile_leaves_table_and_socket(director: Host, tmp_path: Path) -> None:
    first, cf, control, pidfile = start_first(director, tmp_path)
    other = tmp_path / "second.sock"
    second = director.run(sys.executable, "-m", "saru", "run", "-c", str(cf), "--dataplane", "nft",
                          "--control", str(other), "--pidfile", str(pidfile), check=False, timeout=30)
    assert second.returncode == 1, second.stderr
    assert "already running" in second.stderr
    assert "Purged virtual server" not in second.stderr
    assert_first_intact(director, first, control)
    assert pidfile.read_text().split()[0] == str(answer(control)["pid"])  # type: ignore[index]
    assert not other.exists()
