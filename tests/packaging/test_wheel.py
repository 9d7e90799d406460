"""``python -m build`` makes an sdist and, from it, a wheel that carries the OCF agents, the systemd units,
the man pages, the bash completion, the examples, the logrotate/firewalld files and the dashboard's page;
``pip install`` of that wheel into a fresh virtualenv gives the same commands: ``saru check-config`` of the
shipped example, ``saru demo --help``, ``saru-ldirectord --help``, and ``python -m saru.datafiles`` finds
every file.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from saru.datafiles import SOURCES

pytestmark = pytest.mark.timeout(600)

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ("index.html", "app.js", "style.css")


def expected_data() -> dict[str, list[str]]:
    """kind → file names, from the source tree (what the wheel must carry)."""
    return {kind: sorted(p.name for p in (ROOT / source).iterdir() if p.is_file() and not p.name.startswith("."))
            for kind, source in SOURCES.items()}


def test_the_wheel_carries_every_data_file(wheel_and_sdist: tuple[Path, Path]) -> None:
    wheel, sdist = wheel_and_sdist
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        modes = {info.filename: info.external_attr >> 16 for info in zf.infolist()}
    for kind, files in expected_data().items():
        assert files, kind
        for name in files:
            assert f"saru/data/{kind}/{name}" in names, f"{kind}/{name} missing from {wheel.name}"
    for name in DASHBOARD:  # the dashboard's page (GET /) is package data of saru.api
        assert f"saru/api/static/{name}" in names, f"saru/api/static/{name} missing from {wheel.name}"
    for agent in expected_data()["ocf"]:
        assert modes[f"saru/data/ocf/{agent}"] & 0o111, f"OCF agent {agent} is not executable in the wheel"
    # the sdist holds the sources of those copies (the wheel was built from it)
    with tarfile.open(sdist) as tf:
        members = {m.name.split("/", 1)[1] for m in tf.getmembers() if "/" in m.name}
    for kind, source in SOURCES.items():
        for name in expected_data()[kind]:
            assert f"{source}/{name}" in members, f"{source}/{name} missing from {sdist.name}"
    for name in DASHBOARD:
        assert f"saru/api/static/{name}" in members, f"saru/api/static/{name} missing from {sdist.name}"


def test_pip_install_into_a_fresh_venv_gives_the_commands(
        wheel_and_sdist: tuple[Path, Path], tmp_path: Path) -> None:
    wheel, _ = wheel_and_sdist
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    install = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)],
                             capture_output=True, text=True, timeout=400, env=env, cwd=tmp_path)
    assert install.returncode == 0, install.stderr[-3000:]
    bin_ = venv / "bin"

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        # cwd outside the checkout: the installed package must be the one imported
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)

    where = run(str(bin_ / "python"), "-c", "import saru, sys; print(saru.__file__)")
    assert where.stdout.startswith(str(venv)), where.stdout + where.stderr

    listing = run(str(bin_ / "python"), "-m", "saru.datafiles")
    assert listing.returncode == 0, listing.stderr
    dirs = dict(line.split("\t") for line in listing.stdout.splitlines())
    assert sorted(dirs) == sorted(SOURCES)
    for kind, files in expected_data().items():
        directory = Path(dirs[kind])
        assert directory.is_relative_to(venv), directory
        assert sorted(p.name for p in directory.iterdir()) == files
    page = run(str(bin_ / "python"), "-c", "from saru.api.dashboard import load_assets; print(len(load_assets()))")
    assert page.stdout.strip() == "4", page.stdout + page.stderr  # the dashboard's files, installed
    for agent in expected_data()["ocf"]:
        assert os.access(Path(dirs["ocf"]) / agent, os.X_OK), agent
    one = run(str(bin_ / "python"), "-m", "saru.datafiles", "systemd")
    assert Path(one.stdout.strip()) == Path(dirs["systemd"])

    example = Path(dirs["examples"]) / "saru.toml"
    checked = run(str(bin_ / "saru"), "check-config", "--dataplane", "proxy", str(example))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "OK" in checked.stdout

    demo = run(str(bin_ / "saru"), "demo", "--help")
    assert demo.returncode == 0 and "usage: saru demo" in demo.stdout, demo.stdout + demo.stderr
    ld = run(str(bin_ / "saru-ldirectord"), "--help")
    assert ld.returncode == 0, ld.stdout + ld.stderr
