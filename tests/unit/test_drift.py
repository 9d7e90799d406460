"""Drift detection logic: the pure comparison (saru.drift), the nft object check and GETGEN parsing
(saru.dataplane.nft.check), and the watcher's bookkeeping (saru.daemon.driftwatch) over a fake plane."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from saru.cli.main import main
from saru.daemon.driftwatch import DriftWatcher
from saru.dataplane.base import Capabilities, Dataplane, DataplaneError, Verification
from saru.dataplane.nft.check import next_generation, object_problems
from saru.dataplane.nft.check import parse_generation as _parse
from saru.dataplane.nft.names import TABLE
from saru.dataplane.nft.transaction import UNKNOWN, Objects
from saru.diff import apply_ops
from saru.drift import describe, drift, summary
from saru.events import Event, TableDrift
from saru.model import AddDest, AddService, DelDest, DelService, Dest, EditDest, Op, Service, ServiceKey, Table

K1 = ServiceKey("tcp", "10.0.0.1", 80)
K2 = ServiceKey("udp", "10.0.0.1", 53)
FOREIGN = ServiceKey("tcp", "10.9.9.9", 25)
R1, R2 = Dest("10.1.0.1", 80, "masq", 1), Dest("10.1.0.2", 80, "masq", 2)


def svc(key: ServiceKey, *dests: Dest) -> Service:
    return Service(key, dests={d.key: d for d in dests})


APPLIED = Table.of([svc(K1, R1, R2), svc(K2, Dest("10.1.0.1", 53, "masq", 1))])


# -- saru.drift --------------------------------------------------------------------------------------


def test_in_sync_is_no_drift() -> None:
    assert drift(APPLIED, APPLIED, {K1, K2}) == []


def test_flushed_kernel_gives_back_everything_applied() -> None:
    ops = drift(APPLIED, Table(), {K1, K2})
    assert apply_ops(Table(), ops) == APPLIED
    assert describe(ops, APPLIED, Table()) == ["virtual service tcp 10.0.0.1:80 missing (with 2 reals)",
                                               "virtual service udp 10.0.0.1:53 missing (with 1 real)"]


def test_each_kind_of_difference_is_said_once() -> None:
    kernel = Table.of([svc(K1, R1, Dest("10.1.0.2", 80, "masq", 0), Dest("10.1.0.3", 80, "masq", 1)),
                       svc(ServiceKey("tcp", "10.0.0.2", 80))])
    owned = {K1, K2, ServiceKey("tcp", "10.0.0.2", 80)}
    ops = drift(APPLIED, kernel, owned)
    assert apply_ops(kernel, ops) == APPLIED
    assert describe(ops, APPLIED, kernel) == [
        "real 10.1.0.2:80 of tcp 10.0.0.1:80 changed (weight 0 → 2)",
        "real 10.1.0.3:80 of tcp 10.0.0.1:80 not applied by Saru",
        "virtual service udp 10.0.0.1:53 missing (with 1 real)",
        "virtual service tcp 10.0.0.2:80 not applied by Saru",
    ]


def test_another_tools_services_are_not_drift() -> None:
    kernel = Table.of([*APPLIED.services.values(), svc(FOREIGN, Dest("10.9.9.10", 25))])
    assert drift(APPLIED, kernel, {K1, K2}) == []
    # applied (adopted) but not owned, then changed by its owner: not Saru's business either
    assert drift(kernel, APPLIED, {K1, K2}) == []


def test_missing_real_and_summary() -> None:
    kernel = Table.of([svc(K1, R1), APPLIED.services[K2]])
    ops = drift(APPLIED, kernel, {K1, K2})
    assert ops == [AddDest(K1, R2)]
    assert describe(ops, APPLIED, kernel) == ["real 10.1.0.2:80 of tcp 10.0.0.1:80 missing"]
    assert summary(["a", "b", "c", "d", "e", "f"], limit=4) == "a; b; c; d; and 2 more"
    assert summary(["a"]) == "a"


dests = st.builds(Dest, st.sampled_from(["10.1.0.1", "10.1.0.2", "10.1.0.3"]), st.sampled_from([80, 8080]),
                  st.sampled_from(["masq", "gate"]), st.integers(0, 3))
tables = st.builds(lambda ss: Table.of(ss), st.lists(
    st.builds(lambda key, ds: Service(key, dests={d.key: d for d in ds}),
              st.sampled_from([K1, K2, FOREIGN]), st.lists(dests, max_size=4)),
    max_size=3, unique_by=lambda s: s.key))


@settings(max_examples=300)
@given(tables, tables)
def test_repair_restores_what_was_applied_and_leaves_the_rest(applied: Table, kernel: Table) -> None:
    owned = {K1, K2}
    ops = drift(applied, kernel, owned)
    repaired = apply_ops(kernel, ops)
    for key in owned:
        assert repaired.services.get(key) == applied.services.get(key)
    assert repaired.services.get(FOREIGN) == kernel.services.get(FOREIGN)
    assert len(describe(ops, applied, kernel)) <= len(ops)
    assert (ops == []) == (describe(ops, applied, kernel) == [])


# -- saru.dataplane.nft.check ------------------------------------------------------------------------


def objects() -> Objects:
    o = Objects("inet")
    o.chain("nat_pre", "type nat hook prerouting priority dstnat; policy accept;")
    o.rule("nat_pre", "ip daddr 10.0.0.1 tcp dport 80 goto s_x")
    o.chain("s_x")
    o.rule("s_x", 'counter comment "svc"')
    o.rule("s_x", "drop")
    o.sets["m_x"] = "typeof numgen inc mod 2 : ip daddr;"
    o.elements["m_x"] = {"0": "0 : 10.1.0.1", "1": "1 : 10.1.0.2"}
    return o


def listing(rules: dict[str, int], elements: int | None = 2, chains: tuple[str, ...] = ("nat_pre", "s_x"),
            extra: tuple[str, ...] = ()) -> list[dict[str, object]]:
    items: list[dict[str, object]] = [{"metainfo": {}}, {"table": {"family": "inet", "name": TABLE}}]
    items += [{"chain": {"family": "inet", "table": TABLE, "name": c}} for c in (*chains, *extra)]
    items += [{"map": {"family": "inet", "table": TABLE, "name": "m_x"}}]
    for chain, n in rules.items():
        items += [{"rule": {"family": "inet", "table": TABLE, "chain": chain}}] * n
    docs: list[dict[str, object]] = [{"nftables": items}]
    if elements is not None:
        full = {"family": "inet", "table": TABLE, "name": "m_x"}
        if elements:
            full["elem"] = [[i, "10.1.0.1"] for i in range(elements)]
        docs.append({"nftables": [{"map": full}]})
    return docs


def test_objects_in_line() -> None:
    assert object_problems({"inet": objects()}, {"inet": True}, listing({"nat_pre": 1, "s_x": 2}), ["m_x"]) == []


def test_lost_rules_chains_elements_and_extras_are_named() -> None:
    expected, existed = {"inet": objects()}, {"inet": True}
    assert object_problems(expected, existed, listing({"nat_pre": 0, "s_x": 2}), ["m_x"]) == [
        f"table inet {TABLE}: chain nat_pre has 0 rule(s), Saru wrote 1"]
    assert object_problems(expected, existed, listing({"nat_pre": 1}, chains=("nat_pre",)), ["m_x"]) == [
        f"table inet {TABLE}: s_x missing"]
    assert object_problems(expected, existed, listing({"nat_pre": 1, "s_x": 2}, elements=0), ["m_x"]) == [
        f"table inet {TABLE}: map m_x has 0 element(s), Saru wrote 2"]
    assert object_problems(expected, existed, listing({"nat_pre": 1, "s_x": 2}, extra=("evil",)), ["m_x"]) == [
        f"table inet {TABLE}: evil not made by Saru"]
    assert object_problems(expected, existed, [{"nftables": []}]) == [f"table inet {TABLE} missing"]


def test_adopted_objects_count_by_name_only() -> None:
    o = objects()
    o.rules = {c: [UNKNOWN] for c in o.chains}
    o.sets = {"m_x": UNKNOWN}
    docs = listing({"nat_pre": 7, "s_x": 9}, elements=None)
    assert object_problems({"inet": o}, {"inet": True}, docs) == []


def test_generation_answer_parsing() -> None:
    header = struct.Struct("=IHHII")
    body = struct.pack("=BBH", 0, 0, 0) + struct.pack("=HH", 8, 1) + struct.pack("!I", 4242)
    body += struct.pack("=HH", 8, 2) + struct.pack("=I", 99)
    msg = header.pack(header.size + len(body), 10 << 8 | 15, 0, 7, 0) + body
    assert _parse(msg, 7) == 4242
    assert _parse(msg, 8) is None  # another request's answer
    err = header.pack(header.size + 4, 2, 0, 7, 0) + struct.pack("=i", -1)
    try:
        _parse(err, 7)
    except ValueError as exc:
        assert "errno 1" in str(exc)
    else:
        raise AssertionError("a netlink error must raise")
    assert next_generation(5) == 6 and next_generation(0xFFFFFFFF) == 1


# -- saru.daemon.driftwatch ---------------------------------------------------------------------------------


class FakePlane(Dataplane):
    """Pure stand-in: ``found`` is what verify answers; repair records its ops (or fails)."""

    capabilities = Capabilities("fake", frozenset({"masq"}), frozenset({"rr"}))

    def __init__(self) -> None:
        self.found: Verification | None = None
        self.repaired: list[list[Op]] = []
        self.fail: str = ""

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def read(self) -> Table:
        return Table()

    async def apply(self, ops: Sequence[Op]) -> None:
        raise AssertionError("the watcher repairs through repair()")

    async def verify(self) -> Verification | None:
        if self.fail == "verify":
            raise DataplaneError("cannot list")
        return self.found

    async def repair(self, ops: Sequence[Op]) -> None:
        if self.fail == "repair":
            raise DataplaneError("refused")
        self.repaired.append(list(ops))


async def test_watcher_reports_counts_repairs_and_asks_for_a_reconcile() -> None:
    plane, events, reconciles = FakePlane(), list[Event](), []
    watcher = DriftWatcher(plane, lambda: {K1, K2}, asyncio.Lock(), events.append, lambda: reconciles.append(1))
    plane.found = Verification(APPLIED, APPLIED, how="generation")
    assert await watcher.check("status") is None and watcher.count == 0 and not events
    kernel = Table.of([svc(K1, R1), APPLIED.services[K2], svc(FOREIGN)])
    plane.found = Verification(APPLIED, kernel, how="listing")
    event = await watcher.check("periodic check")
    assert isinstance(event, TableDrift) and events == [event] and reconciles == [1]
    assert plane.repaired == [[AddDest(K1, R2)]]
    assert event.message() == ("Table drift on the fake data plane (found by periodic check): real 10.1.0.2:80 "
                               "of tcp 10.0.0.1:80 missing; re-applied Saru's table")
    snap = watcher.snapshot()
    assert (snap["count"], snap["last_detail"], snap["last_check"]) == (1, event.detail, "listing")
    # objects damaged, table intact: repaired (rebuilt) with no ops
    plane.found = Verification(APPLIED, APPLIED, problems=("chain nat_pre has 0 rule(s), Saru wrote 1",))
    assert (await watcher.check("status")) is not None and plane.repaired[-1] == [] and watcher.count == 2


async def test_watcher_earlier_mismatch_is_reported_without_repair() -> None:
    plane, events = FakePlane(), list[Event]()
    watcher = DriftWatcher(plane, lambda: {K1}, asyncio.Lock(), events.append, lambda: None)
    plane.found = Verification(APPLIED, APPLIED, earlier=((APPLIED, Table()),))
    event = await watcher.check("status")
    assert event is not None and plane.repaired == []
    assert event.detail == "virtual service tcp 10.0.0.1:80 missing (with 2 reals) (repaired by a table update)"


async def test_watcher_failures_are_said_not_raised() -> None:
    plane, events = FakePlane(), list[Event]()
    watcher = DriftWatcher(plane, lambda: {K1}, asyncio.Lock(), events.append, lambda: None)
    plane.found = Verification(APPLIED, Table())
    plane.fail = "repair"
    event = await watcher.check("reload")
    assert event is not None and not event.repaired and "repair FAILED: refused" in event.message()
    assert watcher.snapshot()["last_error"] == "refused"
    assert await watcher.check("periodic check") is None and len(events) == 1  # the same failure: said once
    assert watcher.count == 1
    plane.fail = "verify"
    assert await watcher.check("status") is None
    assert watcher.snapshot()["check_error"] == "cannot list"
    plane.fail = ""
    plane.found = None
    assert await watcher.check("status") is None and watcher.snapshot()["check_error"] is None


def test_ops_kinds_used_above() -> None:
    # the describe() branches for deletions of whole services and edits are exercised above;
    # deleting a service that was never applied is the one op a flushed kernel cannot produce
    assert drift(Table(), Table.of([svc(K1)]), {K1}) == [DelService(K1)]
    assert drift(Table.of([svc(K1, R1)]), Table.of([svc(K1, R1, R2)]), {K1}) == [DelDest(K1, *R2.key)]
    assert drift(Table.of([svc(K1, R2)]), Table.of([svc(K1, Dest("10.1.0.2", 80, "masq", 5))]), {K1}) == [
        EditDest(K1, R2)]
    assert [type(op) for op in drift(Table.of([svc(K2)]), Table(), {K2})] == [AddService]


def test_bad_drift_interval_is_refused_before_anything_starts(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    for bad in ("-1", "nan", "1e9"):
        assert main(["run", "-c", str(tmp_path / "none.cf"), "--drift-interval", bad]) == 2
        assert "--drift-interval must be 0 (off) or a number of seconds" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


async def test_a_check_under_way_finishes_before_close_returns() -> None:
    plane, events = FakePlane(), list[Event]()
    lock = asyncio.Lock()
    watcher = DriftWatcher(plane, lambda: {K1}, lock, events.append, lambda: None)
    plane.found = Verification(APPLIED, Table())
    await lock.acquire()  # a reconcile is running: the check waits for it
    caller = asyncio.ensure_future(watcher.check("periodic check"))
    await asyncio.sleep(0)
    caller.cancel()  # the daemon stops the periodic task…
    closing = asyncio.ensure_future(watcher.close())
    await asyncio.sleep(0)
    assert not closing.done()  # …and waits for the check it had started
    lock.release()
    await closing
    assert caller.cancelled() and events == [] and plane.repaired == []  # closed first: nothing done
    assert await watcher.check("status") is None  # closed: no more checks
