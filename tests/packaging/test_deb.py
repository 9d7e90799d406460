"""The Debian package built by ``make deb`` (debhelper + dh-virtualenv): lintian finds no error and no
warning, and the package holds what docs/install.md says it installs, at Debian's places."""

from __future__ import annotations

import gzip
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import require

pytestmark = pytest.mark.timeout(900)

ROOT = Path(__file__).resolve().parents[2]

EXPECTED = {
    "./usr/bin/saru": "../lib/saru/venv/bin/saru",
    "./usr/sbin/saru-ldirectord": "../lib/saru/venv/bin/saru-ldirectord",
    "./usr/lib/saru/venv/bin/saru": None,
    "./usr/lib/saru/venv/bin/saru-ldirectord": None,
    "./lib/systemd/system/saru.service": None,
    "./lib/systemd/system/saru@.service": None,
    "./lib/systemd/system/saru-ldirectord.service": None,
    "./usr/lib/ocf/resource.d/saru/director": None,
    "./usr/lib/ocf/resource.d/saru/VIPcheck": None,
    "./usr/share/man/man8/saru.8.gz": None,
    "./usr/share/man/man8/saru-ldirectord.8.gz": None,
    "./usr/share/man/man5/saru.toml.5.gz": None,
    "./usr/share/bash-completion/completions/saru": None,
    "./usr/share/bash-completion/completions/saru-ldirectord": "saru",
    "./etc/logrotate.d/saru": None,
    "./etc/saru/saru.toml": None,
    "./etc/saru/ldirectord.cf": None,
    "./usr/lib/sysusers.d/saru.conf": None,
    "./usr/lib/tmpfiles.d/saru.conf": None,
    "./usr/lib/firewalld/services/saru.xml": None,
    "./usr/share/doc/saru/install.md": None,
    "./usr/share/doc/saru/examples/guide.cf": None,
    "./usr/share/doc/saru/examples/saru.toml": None,
    "./usr/share/doc/saru/copyright": None,
}


def contents(deb: Path) -> dict[str, tuple[str, str | None]]:
    """path → (mode string, symlink target or None), from ``dpkg-deb -c``."""
    out = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True).stdout
    listing: dict[str, tuple[str, str | None]] = {}
    for line in out.splitlines():
        fields = line.split(None, 5)
        path, _, target = fields[5].partition(" -> ")
        listing[path] = (fields[0], target or None)
    return listing


def test_lintian_finds_no_error_or_warning(deb: Path) -> None:
    require(shutil.which("lintian") is not None, "lintian is not installed")
    proc = subprocess.run(["lintian", "--no-tag-display-limit", str(deb)], capture_output=True, text=True,
                          timeout=600)
    tags = [line for line in proc.stdout.splitlines() if line[:2] in ("E:", "W:")]
    assert not tags, "\n".join(tags)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_package_holds_the_files_at_their_places(deb: Path) -> None:
    listing = contents(deb)
    for path, target in EXPECTED.items():
        assert path in listing, f"{path} is not in {deb.name}"
        _, link = listing[path]
        assert link == target, f"{path}: -> {link}, expected -> {target}"
    for agent in ("director", "VIPcheck"):
        assert listing[f"./usr/lib/ocf/resource.d/saru/{agent}"][0] == "-rwxr-xr-x"
    for unit in ("saru.service", "saru@.service", "saru-ldirectord.service"):
        assert listing[f"./lib/systemd/system/{unit}"][0] == "-rw-r--r--"
    # a venv from Debian's python only: no other interpreter, no byte code (postinst compiles), no pip
    assert not [p for p in listing if "__pycache__" in p or p.endswith(".pyc")]
    assert not [p for p in listing if "/site-packages/pip/" in p]
    venv_python = listing["./usr/lib/saru/venv/bin/python3"][1]
    assert venv_python is not None and venv_python.endswith("/bin/python3"), venv_python


def test_the_shipped_files_are_the_sources(deb: Path, tmp_path: Path) -> None:
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp_path)], check=True, timeout=120)
    pairs = {
        "lib/systemd/system/saru.service": "packaging/systemd/saru.service",
        "usr/lib/ocf/resource.d/saru/director": "ocf/saru/director",
        "usr/share/bash-completion/completions/saru": "completion/saru.bash",
        "usr/lib/firewalld/services/saru.xml": "packaging/firewalld/saru.xml",
        "etc/saru/saru.toml": "packaging/etc/saru.toml",
        "etc/saru/ldirectord.cf": "packaging/etc/ldirectord.cf",
    }
    for installed, source in pairs.items():
        assert (tmp_path / installed).read_bytes() == (ROOT / source).read_bytes(), installed
    for page in ("man8/saru.8", "man8/saru-ldirectord.8", "man5/saru.toml.5"):
        shipped = gzip.decompress((tmp_path / "usr/share/man" / f"{page}.gz").read_bytes())
        assert shipped == (ROOT / "man" / Path(page).name).read_bytes(), page


def test_control_conffiles_and_maintainer_scripts(deb: Path, tmp_path: Path) -> None:
    subprocess.run(["dpkg-deb", "-e", str(deb), str(tmp_path)], check=True, timeout=60)
    control = (tmp_path / "control").read_text()
    assert "Depends: python3 (>= 3.11), python3 (<< 3.12)" in control
    assert (tmp_path / "conffiles").read_text().split() == [
        "/etc/logrotate.d/saru", "/etc/saru/ldirectord.cf", "/etc/saru/saru.toml"]
    postinst = (tmp_path / "postinst").read_text()
    assert "systemd-sysusers" in postinst and "saru.conf" in postinst
    assert "compileall" in postinst
    # not enabled at installation: the administrator enables the unit once saru.toml describes the site
    # (dh_installsystemd --no-enable: enabled again on upgrade only where the administrator had enabled it)
    assert "deb-systemd-helper debian-installed 'saru.service'" in postinst
    postrm = (tmp_path / "postrm").read_text()
    assert "userdel" not in postrm and "deluser" not in postrm
