"""Fixtures of the kernel tier's privilege tests (a root daemon that drops to a user): a throwaway system
user, and a working directory that user can read (test_privileges_nft.py, test_privileges_bgp.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from saru.subproc import RunAs
from tests.helpers import shared_workdir, system_user


@pytest.fixture
def user() -> Iterator[RunAs]:
    with system_user() as made:
        yield made


@pytest.fixture
def workdir() -> Iterator[Path]:
    with shared_workdir() as path:
        yield path
