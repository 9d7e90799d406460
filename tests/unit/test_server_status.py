"""A real's status in HAProxy's words (``saru.daemon.status.server_status``, pure)."""

from __future__ import annotations

from saru.daemon.status import SERVER_STATUSES, server_status
from saru.model import Dest, Override
from saru.monitor import RealHealth


def health(up: bool | None, maintenance: bool = False) -> RealHealth:
    return RealHealth(up=up, last_result=None, last_checked=None, failures=0, successes=0,
                      maintenance=maintenance, checktype="negotiate")


DEST = Dest("10.0.0.2", 80, "masq", 3)
QUIESCED = Dest("10.0.0.2", 80, "masq", 0)


def test_up_down_drain_maint() -> None:
    assert server_status(health(True), None, DEST) == "UP"
    assert server_status(health(False), None, None) == "DOWN"
    assert server_status(health(False), None, QUIESCED) == "DOWN"  # quiescent: still DOWN
    assert server_status(health(True), Override("drain"), QUIESCED) == "DRAIN"
    assert server_status(health(True), Override("weight", weight=0), QUIESCED) == "DRAIN"
    assert server_status(health(True), None, QUIESCED) == "DRAIN"  # configured weight 0
    assert server_status(health(True), Override("disable"), None) == "MAINT"
    assert server_status(health(False, maintenance=True), None, None) == "MAINT"
    assert server_status(health(False), Override("disable"), None) == "MAINT"
    assert server_status(health(True), Override("weight", weight=4), Dest("10.0.0.2", 80, "masq", 4)) == "UP"


def test_not_checked_yet_is_judged_by_the_table() -> None:
    assert server_status(None, None, None) == "DOWN"
    assert server_status(health(None), None, DEST) == "UP"
    assert server_status(health(None), None, QUIESCED) == "DRAIN"
    assert {server_status(health(up), o, d) for up in (True, False, None)
            for o in (None, Override("drain"), Override("disable")) for d in (None, DEST)} <= set(SERVER_STATUSES)
