"""Fixtures shared by the whole suite."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import HungServer, Nginx, start_nginx


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
