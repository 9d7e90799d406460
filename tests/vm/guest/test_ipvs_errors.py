"""IPVS has no transactions: a batch that fails part-way is rolled back and reported."""

from __future__ import annotations

import pytest

from saru.dataplane.base import DataplaneError
from saru.dataplane.ipvs import IpvsDataplane
from saru.diff import diff
from saru.model import (
    AddDest,
    AddService,
    DelDest,
    DelService,
    Dest,
    EditDest,
    EditService,
    Service,
    ServiceKey,
    ServiceSettings,
    Table,
)
from tests.vm.guest.conftest import saved_rules, thresholds

A = ServiceKey("tcp", "10.0.0.1", 80)
B = ServiceKey("udp", "10.0.0.1", 53)
C = ServiceKey("tcp", "2001:db8::1", 80, None, 6)


def existing() -> Table:
    return Table.of([
        Service(B, ServiceSettings("wrr", 300, "255.255.255.0"), {
            ("10.0.0.2", 53): Dest("10.0.0.2", 53, "masq", 2, 40, 4),
            ("10.0.0.3", 53): Dest("10.0.0.3", 53, "masq", 1),
        }),
        Service(C, ServiceSettings("rr"), {("2001:db8::2", 80): Dest("2001:db8::2", 80, "gate", 1)}),
    ])


async def test_failure_part_way_rolls_the_batch_back(dataplane: IpvsDataplane) -> None:
    await dataplane.apply(diff(Table(), existing()))
    rules, limits = saved_rules(), thresholds()
    ops = [
        AddService(A, ServiceSettings("wlc")),
        AddDest(A, Dest("10.0.0.9", 80, "masq", 1)),
        EditService(B, ServiceSettings("rr", None, None, None, True)),
        EditDest(B, Dest("10.0.0.2", 53, "gate", 7)),
        DelDest(B, "10.0.0.3", 53),
        DelService(C),
        AddDest(B, Dest("10.0.0.2", 53, "masq", 1)),  # already exists: the kernel says EEXIST
        AddDest(A, Dest("10.0.0.10", 80, "masq", 1)),  # sent in the same window: undone too
    ]
    with pytest.raises(DataplaneError) as caught:
        await dataplane.apply(ops)
    message = str(caught.value)
    assert "-a -u 10.0.0.1:53 -r 10.0.0.2:53" in message
    assert "already exists" in message and "rolled back" in message
    assert saved_rules() == rules
    assert thresholds() == limits
    assert await dataplane.read() == existing()


async def test_error_on_the_first_op_changes_nothing(dataplane: IpvsDataplane) -> None:
    await dataplane.apply(diff(Table(), existing()))
    rules = saved_rules()
    with pytest.raises(DataplaneError, match=r"no such service|not found"):
        await dataplane.apply([EditDest(A, Dest("10.0.0.9", 80, "masq", 1)), DelService(B)])
    assert saved_rules() == rules


async def test_unknown_scheduler_is_a_dataplane_error(dataplane: IpvsDataplane) -> None:
    with pytest.raises(DataplaneError, match="errno 2"):
        await dataplane.apply([AddService(A, ServiceSettings("nosuch"))])
    assert saved_rules() == set()


async def test_not_started_is_a_dataplane_error() -> None:
    with pytest.raises(DataplaneError, match="not started"):
        await IpvsDataplane().read()
