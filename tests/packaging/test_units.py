"""The systemd units of packaging/systemd/ pass ``systemd-analyze verify`` and keep the exposure score
docs/install.md gives (``systemd-analyze security --offline=true``), and the three units differ only
where they must (the file they run, their names) — so that a hardening line added to one is not
forgotten in the others.

Here, on the test machine, the units' ``/usr/bin/saru`` is replaced by the saru under test (verify
checks that every Exec* program exists); inside the installed Debian package they are verified as
shipped (tests/packaging/test_systemd.py).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import require

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "packaging" / "systemd"
#: the highest exposure docs/install.md promises (systemd's scale: 0 best … 10 worst)
MAX_EXPOSURE = 2.0
CONFIG = {"saru.service": "/etc/saru/saru.toml", "saru@.service": "/etc/saru/%i.toml",
          "saru-ldirectord.service": "/etc/ha.d/ldirectord.cf"}


def installed_saru() -> str:
    saru = Path(sys.executable).parent / "saru"
    found = str(saru) if saru.exists() else shutil.which("saru")
    require(found is not None, "the saru command is not installed (make venv)")
    assert found is not None
    return found


def local_copies(tmp_path: Path) -> list[Path]:
    """The units with /usr/bin/saru pointing at the saru under test; saru@.service as an instance."""
    saru = installed_saru()
    copies = []
    for unit in sorted(UNITS.glob("*.service")):
        name = "saru@verify.service" if unit.name == "saru@.service" else unit.name
        target = tmp_path / name
        target.write_text(unit.read_text().replace("/usr/bin/saru", saru))
        copies.append(target)
    return copies


@pytest.fixture
def analyze() -> str:
    tool = shutil.which("systemd-analyze")
    require(tool is not None, "systemd-analyze (Debian package systemd) is not installed")
    assert tool is not None
    return tool


def test_the_units_are_the_ones_expected() -> None:
    assert sorted(p.name for p in UNITS.glob("*.service")) == sorted(CONFIG)


def test_systemd_analyze_verify(analyze: str, tmp_path: Path) -> None:
    proc = subprocess.run([analyze, "verify", "--man=no", *map(str, local_copies(tmp_path))],
                          capture_output=True, text=True, timeout=60)
    # verify also loads the machine's other units; only what it says about ours counts
    ours = [line for line in (proc.stdout + proc.stderr).splitlines()
            if any(copy.name in line for copy in local_copies(tmp_path))]
    assert proc.returncode == 0 and not ours, "\n".join(ours) or proc.stderr


def test_security_exposure(analyze: str, tmp_path: Path) -> None:
    for copy in local_copies(tmp_path):
        proc = subprocess.run([analyze, "security", "--offline=true", "--no-pager", str(copy)],
                              capture_output=True, text=True, timeout=60)
        match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout)
        assert match, proc.stdout[-2000:] + proc.stderr
        assert float(match.group(1)) <= MAX_EXPOSURE, f"{copy.name}: {match.group(0)}"


def normalised(unit: Path) -> list[str]:
    """The unit's [Service] and [Install] lines with its config path and names replaced."""
    text = unit.read_text().replace(CONFIG[unit.name], "CONFIG")
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    start = lines.index("[Service]")
    return [re.sub(r"^SyslogIdentifier=.*", "SyslogIdentifier=NAME", line) for line in lines[start:]]


def test_the_units_differ_only_in_what_they_run() -> None:
    reference = normalised(UNITS / "saru.service")
    for name in CONFIG:
        assert normalised(UNITS / name) == reference, name


@pytest.mark.parametrize("line", [
    "Type=notify", "User=saru", "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes",
    "PrivateTmp=yes", "Restart=on-failure", "RuntimeDirectory=saru", "StateDirectory=saru", "LogsDirectory=saru",
    "AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE",
    "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE",
    "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK AF_PACKET",
    "SystemCallFilter=@system-service", "ExecStartPre=/usr/bin/saru check-config -c CONFIG",
    "ExecReload=/usr/bin/saru reload -c CONFIG", "Environment=SARU_RUNTIME_DIR=/run/saru",
])
def test_the_unit_says(line: str) -> None:
    assert line in normalised(UNITS / "saru.service")
