"""A director whose HA node cannot start fails its start: ``saru-ldirectord start`` exits 1 with the
reason (it returned 0 while the daemon was stopping), ``saru run`` exits 1, and nothing is left
running. In a namespace of its own; the VRRP interface named in saru.toml does not exist there.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import require
from tests.lab import Host, Segment

BIN = Path(sys.executable).parent
CONFIG = """\
checkinterval=1
logfile="{log}"
virtual=10.98.7.240:80
\treal=10.98.7.11:80 gate
\tservice=http
\tscheduler=rr
\tchecktype=on
"""
SETTINGS = """\
[ha]
mode = "vrrp"
interface = "nosuch0"
vips = ["10.98.7.240/24"]
virtual_router_id = 57
priority = 100
"""


@pytest.fixture
def host() -> Iterator[Host]:
    ok, why = Segment.available()
    require(ok, why)
    with Segment({"ld": ["10.98.7.2/24"]}, tag="hsf") as lan:
        yield lan["ld"]


def files(tmp_path: Path) -> tuple[Path, Path]:
    cf = tmp_path / "hafail.cf"
    cf.write_text(CONFIG.format(log=tmp_path / "ldirectord.log"))
    toml = tmp_path / "saru.toml"
    toml.write_text(SETTINGS)
    return cf, toml


def test_ldirectord_start_fails_when_ha_cannot_start(host: Host, tmp_path: Path) -> None:
    cf, toml = files(tmp_path)
    piddir = tmp_path / "run"
    piddir.mkdir()
    env = ["env", "SARU_DATAPLANE=proxy", f"SARU_SETTINGS={toml}", f"SARU_LDIRECTORD_PIDDIR={piddir}",
           f"SARU_RUNTIME_DIR={piddir}"]
    got = host.run(*env, str(BIN / "saru-ldirectord"), str(cf), "start", check=False, timeout=60)
    assert got.returncode == 1, (got.stdout, got.stderr)
    assert "HA: cannot start" in got.stderr and "nosuch0" in got.stderr
    status = host.run(*env, str(BIN / "saru-ldirectord"), str(cf), "status", check=False, timeout=30)
    assert status.returncode == 3, (status.stdout, status.stderr)
    assert not list(piddir.glob("*.sock")) and not list(piddir.glob("*.pid"))


def test_saru_run_exits_1_when_ha_cannot_start(host: Host, tmp_path: Path) -> None:
    cf, toml = files(tmp_path)
    control = tmp_path / "ctl.sock"
    got = host.run(str(BIN / "saru"), "run", "-c", str(cf), "--settings", str(toml), "--dataplane", "proxy",
                   "--control", str(control), check=False, timeout=60)
    assert got.returncode == 1, got.stderr
    assert "HA: cannot start" in got.stderr
    assert not control.exists()
