"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from tests.helpers import HungServer, Nginx, start_nginx

# The suite's daemons run as whoever runs the tests (root in CI) and their scripts write to pytest's
# tmp dirs (root's, mode 0700): no drop, commands as root. tests/integration/test_privileges.py
# runs daemons without these (saru.daemon.privileges).
os.environ.setdefault("SARU_DROP_PRIVILEGES", "0")
os.environ.setdefault("SARU_COMMAND_USER", "root")

# Property tests outside tests/fuzz (which sets its own budget) keep Hypothesis's example counts but
# not its 200 ms per-example deadline: on a loaded 2-core CI machine a pure example can take longer,
# and a deadline is a timed assertion, which the suite does not make.
settings.register_profile("saru", deadline=None, derandomize=True, database=None)
settings.load_profile("saru")


@pytest.fixture(autouse=True, scope="session")
def _state_dir_of_the_test_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every daemon the suite starts keeps its state (an operator's drain/disable) under the test run's
    temporary directory, never in the machine's /var/lib/saru; a test may still set its own."""
    previous = os.environ.get("SARU_STATE_DIR")
    os.environ["SARU_STATE_DIR"] = str(tmp_path_factory.mktemp("saru-state"))
    yield
    if previous is None:
        os.environ.pop("SARU_STATE_DIR", None)
    else:
        os.environ["SARU_STATE_DIR"] = previous


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[Callable[..., Nginx]]:
    """Factory: ``nginx(name="rs1", files={"/check.html": "up"})`` starts a real nginx on loopback."""
    started: list[Nginx] = []

    def factory(name: str = "rs", **kwargs: Any) -> Nginx:
        server = start_nginx(tmp_path / f"nginx-{name}-{len(started)}", name=name, **kwargs)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


@pytest.fixture
def hung_server() -> Iterator[HungServer]:
    """A server that accepts TCP connections and never answers."""
    server = HungServer()
    yield server
    server.close()
