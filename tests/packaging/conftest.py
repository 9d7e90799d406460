"""Fixtures of the packaging tests: the wheel and the .deb are built once per test session (the build is
the product under test, so it runs in the test: `python -m build`, `packaging/build-deb.sh` = `make
deb`); the Debian root comes from the on-disk cache (tests/packaging/build.py).

``machine``: one booted container for the whole session, with the .deb installed, shared by
test_systemd.py, test_fdstore.py and test_bgp.py (a boot and an install cost 60 to 90 s each). The
modules do not depend on each other's order: each writes the configuration it runs, uses its own
ports and units, leaves saru.service stopped, and the one test that removes the package installs it
again (``install``).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import require
from tests.packaging.build import TIMINGS, BuildError, build_deb, build_wheel, debian_root_tarball, extract
from tests.packaging.container import BootError, Container, nspawn_usable


@pytest.fixture(scope="session")
def wheel_and_sdist(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    try:
        import build  # noqa: F401  (the PyPA build front end, a test extra)
    except ImportError:
        require(False, "the 'build' package is not installed (pip install -e '.[test]')")
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="session")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    for tool in ("dpkg-buildpackage", "dh", "dh_virtualenv"):
        require(shutil.which(tool) is not None,
                f"{tool} is not installed (make deb installs debhelper, dh-virtualenv, dpkg-dev)")
    require(os.access("/usr/bin/python3", os.X_OK), "Debian's /usr/bin/python3 is not installed")
    try:
        return build_deb(tmp_path_factory.mktemp("deb"))
    except BuildError as exc:
        pytest.fail(f"make deb failed: {exc}")


def install(container: Container, deb: Path) -> str:
    """``apt-get install ./saru_….deb`` inside (the .deb is in the root's /var/cache); its output."""
    proc = container.run("env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-q",
                         "--no-install-recommends", f"/var/cache/{deb.name}", timeout=300)
    assert "Setting up saru" in proc.stdout, proc.stdout
    return proc.stdout


@pytest.fixture(scope="session")
def machine(deb: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Container]:
    """The booted container with the package installed (one per session, see the module's docstring)."""
    ok, why = nspawn_usable()
    require(ok, why)
    try:
        tarball, _ = debian_root_tarball()
    except BuildError as exc:
        require(False, f"cannot make a Debian root with mmdebstrap: {exc}")
        raise
    workdir = tmp_path_factory.mktemp("nspawn")
    root = workdir / "root"
    started = time.monotonic()
    extract(tarball, root)
    TIMINGS["root unpacked"] = time.monotonic() - started
    shutil.copy(deb, root / "var" / "cache" / deb.name)
    # bird2's own service (a host-wide BIRD as root on port 179) stays off: the tests run their own
    (root / "etc" / "systemd" / "system" / "bird.service").symlink_to("/dev/null")
    container = Container(root, f"saru-t{int(time.time()) % 100000}", workdir / "console.log")
    try:
        try:
            TIMINGS["boot (systemd as PID 1 up)"] = container.boot()
        except BootError as exc:
            require(False, f"systemd does not boot under systemd-nspawn here: {exc}")
        started = time.monotonic()
        install(container, deb)
        TIMINGS["apt-get install ./saru.deb"] = time.monotonic() - started
        yield container
    finally:
        container.stop()
        shutil.rmtree(root, ignore_errors=True)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """How long the packaging steps took (docs/testing.md quotes these)."""
    if TIMINGS:
        terminalreporter.write_line("packaging: " + ", ".join(f"{step} {secs:.1f}s" for step, secs in TIMINGS.items()))
