"""diff/apply_ops: minimal ops, ownership, and convergence (property-based)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from saru.diff import OpError, apply_ops, diff
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

K1 = ServiceKey("tcp", "192.168.5.55", 80)
K2 = ServiceKey("udp", "192.168.5.55", 53)
FOREIGN = ServiceKey("tcp", "10.9.9.9", 25)


def svc(key, *dests, sched="rr"):
    return Service(key, ServiceSettings(scheduler=sched), {d.key: d for d in dests})


def test_no_change_no_ops():
    t = Table.of([svc(K1, Dest("10.0.0.1", 80))])
    assert diff(t, t) == []


def test_minimal_ops_for_a_weight_change_and_a_removal():
    a = Table.of([svc(K1, Dest("10.0.0.1", 80, weight=3), Dest("10.0.0.2", 80))])
    b = Table.of([svc(K1, Dest("10.0.0.1", 80, weight=7))])
    assert diff(a, b) == [EditDest(K1, Dest("10.0.0.1", 80, weight=7)), DelDest(K1, "10.0.0.2", 80)]


def test_additions_come_before_removals():
    a = Table.of([svc(K1, Dest("127.0.0.1", 80))])
    b = Table.of([svc(K1, Dest("10.0.0.1", 80))])
    ops = diff(a, b)
    assert [type(o) for o in ops] == [AddDest, DelDest]


def test_foreign_services_are_never_touched():
    a = Table.of([svc(K1), svc(FOREIGN, Dest("10.9.9.10", 25))])
    b = Table.of([])
    assert diff(a, b, owned={K1}) == [DelService(K1)]


def test_scheduler_change_is_an_edit():
    a = Table.of([svc(K1, sched="wlc")])
    b = Table.of([svc(K1, sched="rr")])
    assert diff(a, b) == [EditService(K1, ServiceSettings(scheduler="rr"))]


def test_apply_rejects_inconsistent_ops_and_keeps_the_table():
    t = Table.of([svc(K1, Dest("10.0.0.1", 80))])
    with pytest.raises(OpError):
        apply_ops(t, [AddDest(K1, Dest("10.0.0.2", 80)), AddService(K1, ServiceSettings())])
    assert set(t.services[K1].dests) == {("10.0.0.1", 80)}


# ---- property: applying diff(a, b) to a gives b -----------------------------------------------

keys = st.sampled_from([K1, K2, ServiceKey("fwm", "", 0, 5), ServiceKey("tcp", "::1", 80, family=6)])
dests = st.builds(
    Dest,
    address=st.sampled_from(["10.0.0.1", "10.0.0.2", "10.0.0.3", "::2"]),
    port=st.sampled_from([0, 80, 8080]),
    forward=st.sampled_from(["gate", "masq", "ipip"]),
    weight=st.integers(0, 5),
    upper_threshold=st.integers(0, 2),
    lower_threshold=st.integers(0, 2),
)
settings_st = st.builds(
    ServiceSettings,
    scheduler=st.sampled_from(["rr", "wrr", "mh"]),
    persistent=st.none() | st.integers(1, 600),
)
services = st.builds(
    lambda key, s, ds: Service(key, s, {d.key: d for d in ds}),
    keys, settings_st, st.lists(dests, max_size=5),
)
tables = st.lists(services, max_size=4).map(Table.of)


@settings(max_examples=300, deadline=None)
@given(tables, tables)
def test_diff_converges(a, b):
    assert apply_ops(a, diff(a, b)) == b


@settings(max_examples=200, deadline=None)
@given(tables, tables)
def test_diff_is_minimal_and_idempotent(a, b):
    ops = diff(a, b)
    after = apply_ops(a, ops)
    assert diff(after, b) == []
    # no op touches a dest that is equal on both sides
    for op in ops:
        if isinstance(op, EditDest):
            assert a.services[op.service].dests[op.dest.key] != op.dest


@settings(max_examples=200, deadline=None)
@given(tables, tables)
def test_unowned_services_survive(a, b):
    owned = set(b.services)
    result = apply_ops(a, diff(a, b, owned=owned))
    for key, service in a.services.items():
        if key not in owned:
            assert result.services[key] == service


def test_apply_ops_is_linear_enough_for_ten_thousand_dests():
    """Structural check (not a timing): a 10,000-dest batch applies and yields every dest once."""
    ops = [AddService(K1, ServiceSettings())] + [
        AddDest(K1, Dest(f"10.1.{i // 256}.{i % 256}", 80)) for i in range(10000)]
    table = apply_ops(Table(), ops)
    assert len(table.services[K1].dests) == 10000
    edited = apply_ops(table, [EditDest(K1, Dest(f"10.1.{i // 256}.{i % 256}", 80, weight=0)) for i in range(10000)])
    assert {d.weight for d in edited.services[K1].dests.values()} == {0}
    assert {d.weight for d in table.services[K1].dests.values()} == {1}  # the input is untouched


def test_apply_ops_runs_of_destination_ops_check_each_op() -> None:
    """Runs of destination ops of one service take a fast path; it must refuse what the slow one does."""
    key = ServiceKey("tcp", "10.0.0.1", 80)
    a, b = Dest("10.0.0.2", 80, "masq"), Dest("10.0.0.3", 80, "masq")
    start = apply_ops(Table({}), [AddService(key, ServiceSettings("rr"))])
    with pytest.raises(OpError, match="already exists"):
        apply_ops(start, [AddDest(key, a), AddDest(key, b), AddDest(key, a)])
    with pytest.raises(OpError, match="no destination"):
        apply_ops(start, [AddDest(key, a), EditDest(key, b)])
    ops = [AddDest(key, a), DelService(key), AddService(key, ServiceSettings("wrr")), AddDest(key, b),
           EditDest(key, Dest("10.0.0.3", 80, "masq", 5))]
    assert apply_ops(start, ops).services[key].dests == {b.key: Dest("10.0.0.3", 80, "masq", 5)}
    assert start.services[key].dests == {}  # untouched
