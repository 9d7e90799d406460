"""The ping score against real hosts: an upstream's link goes down and comes back.

Three hosts on one bridge: the director ``a`` (where ``PingScore`` runs, on an ``NsLoop`` in its
namespace) and two upstreams ``u`` and ``w``. ``u``'s bridge port is set down and up again (its
addresses stay, only the wire is cut), and the callback values and round counts are checked against
``attempts``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from saru.ha.ping import PingError, PingScore
from saru.model import PingSettings
from tests.helpers import require
from tests.lab import NsLoop, Segment, wait_for

U4, U6, W6 = "10.97.2.2", "fd00:97:2::2", "fd00:97:2::3"


@pytest.fixture(scope="module")
def lan() -> Iterator[Segment]:
    ok, why = Segment.available()
    require(ok, why)
    with Segment({"a": ["10.97.2.1/24", "fd00:97:2::1/64"], "u": [f"{U4}/24", f"{U6}/64"],
                  "w": ["10.97.2.3/24", f"{W6}/64"]}, tag="p") as segment:
        yield segment


@pytest.fixture(scope="module")
def director(lan: Segment) -> Iterator[NsLoop]:
    loop = NsLoop(lan["a"])
    try:
        yield loop
    finally:
        loop.close()


def set_port(lan: Segment, host: str, state: str) -> None:
    """Cut (``down``) or restore (``up``) ``host``'s cable: its port on the bridge."""
    port = f"p{list(lan.hosts).index(host) + 1}"  # Segment numbers the bridge ports in host order
    lan["br"].ip("link", "set", port, state)


class Recorder:
    """``on_change`` values, with the round count at which each arrived."""

    def __init__(self) -> None:
        self.score: PingScore | None = None
        self.values: list[int] = []
        self.at_round: list[int] = []
        self.lock = threading.Lock()

    def __call__(self, penalty: int) -> None:
        with self.lock:
            self.values.append(penalty)
            self.at_round.append(self.score.rounds if self.score else -1)


def run_cycle(lan: Segment, director: NsLoop, hosts: tuple[str, ...], lost: str, multiplier: int) -> None:
    settings = PingSettings(hosts=hosts, multiplier=multiplier, interval=0.05, timeout=0.05, attempts=3)
    rec = Recorder()
    score = PingScore(settings, rec)
    rec.score = score
    director.run(score.start())
    try:
        director.run(score.wait_round())
        director.run(score.wait_round())
        assert score.penalty == 0 and score.unreachable() == [] and rec.values == []

        set_port(lan, "u", "down")
        cut = score.rounds
        wait_for(lambda: rec.values == [multiplier], 3, what=f"penalty {multiplier} after the cut")
        assert score.unreachable() == [lost] and score.penalty == multiplier
        # the round under way when the cable was cut may still have had its reply
        assert settings.attempts <= rec.at_round[0] - cut <= settings.attempts + 1, (cut, rec.at_round)

        set_port(lan, "u", "up")
        back = score.rounds
        wait_for(lambda: rec.values == [multiplier, 0], 5, what="penalty 0 after the repair")
        assert score.unreachable() == [] and score.penalty == 0
        assert rec.at_round[1] - back <= 3 + 1  # one reply suffices (neighbour resolution may cost a round)
    finally:
        set_port(lan, "u", "up")
        director.run(score.stop())


def test_ipv4_upstream_lost_and_back(lan: Segment, director: NsLoop) -> None:
    run_cycle(lan, director, (U4,), U4, 50)


def test_ipv6_upstream_lost_and_back(lan: Segment, director: NsLoop) -> None:
    run_cycle(lan, director, (U6, W6), U6, 30)


def test_unreachable_from_the_start_counts_after_attempts(lan: Segment, director: NsLoop) -> None:
    rec = Recorder()
    settings = PingSettings(hosts=("10.97.2.99", W6), multiplier=20, interval=0.05, timeout=0.05, attempts=2)
    score = PingScore(settings, rec)
    rec.score = score
    director.run(score.start())
    try:
        wait_for(lambda: rec.values == [20], 3, what="penalty for the absent host")
        assert rec.at_round == [2] and score.unreachable() == ["10.97.2.99"]
    finally:
        director.run(score.stop())


def test_bad_host_is_a_clear_error() -> None:
    with pytest.raises(PingError, match="not an IP address"):
        PingScore(PingSettings(hosts=("upstream.example",)), lambda _p: None)
