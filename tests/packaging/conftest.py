"""Fixtures of the packaging tests: the wheel and the .deb are built once per test session (the build is
the product under test, so it runs in the test: `python -m build`, `packaging/build-deb.sh` = `make
deb`); the Debian root comes from the on-disk cache (tests/packaging/build.py)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.helpers import require
from tests.packaging.build import TIMINGS, BuildError, build_deb, build_wheel


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


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """How long the packaging steps took (docs/testing.md quotes these)."""
    if TIMINGS:
        terminalreporter.write_line("packaging: " + ", ".join(f"{step} {secs:.1f}s" for step, secs in TIMINGS.items()))
