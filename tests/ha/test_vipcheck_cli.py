"""``saru vipcheck``: the command-line VIPcheck, run in a namespace against a host that holds the address."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import require
from tests.lab import Segment

SARU = str(Path(sys.executable).parent / "saru")
HELD, FREE = "10.96.4.50", "10.96.4.51"


@pytest.fixture(scope="module")
def lan() -> Iterator[Segment]:
    ok, why = Segment.available()
    require(ok, why)
    with Segment({"a": ["10.96.4.1/24"], "b": ["10.96.4.2/24", f"{HELD}/24", "fd00:96:4::50/64"]},
                 tag="v") as segment:
        yield segment


def test_answered_address_names_the_mac(lan: Segment) -> None:
    got = lan["a"].run(SARU, "vipcheck", "-i", "eth0", HELD, "-t", "0.3", check=False)
    assert got.returncode == 1, got.stderr
    assert f"{HELD} answered by {lan['b'].mac()}" in got.stdout


def test_free_address_exits_0(lan: Segment) -> None:
    got = lan["a"].run(SARU, "vipcheck", "-i", "eth0", FREE, "-t", "0.2", "--json", check=False)
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout) == {"address": FREE, "interface": "eth0", "free": True, "answers": []}


def test_ipv6_answer(lan: Segment) -> None:
    got = lan["a"].run(SARU, "vipcheck", "-i", "eth0", "fd00:96:4::50", "--json", check=False)
    assert got.returncode == 1, got.stderr
    assert json.loads(got.stdout)["answers"][0]["mac"] == lan["b"].mac()


@pytest.mark.parametrize("argv", [["-i", "eth0", "not-an-ip"], ["-i", "nosuch0", FREE], ["-i", "lo", FREE]])
def test_bad_arguments_exit_2(lan: Segment, argv: list[str]) -> None:
    got = lan["a"].run(SARU, "vipcheck", *argv, check=False)
    assert got.returncode == 2
    assert got.stderr.startswith("saru vipcheck: ")
