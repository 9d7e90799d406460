"""Incremental reconciliation (saru.daemon.reconciler): a reconciliation asked for by health verdicts
alone re-plans only the virtuals whose reals changed, and must do exactly what planning the whole
table would — same ops, same table, same panics — after every step of random verdict sequences
(verdicts, failure times, maintenance, panics, fallbacks, quiescent virtuals, the operator's
overrides); anything else (a new config, other overrides, the gate, a failed apply) plans it all,
even when a caller asked for an incremental one."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from saru.daemon.hooks import HookRunner
from saru.daemon.journal import Journal
from saru.daemon.reconciler import Basis, Reconciler, changed_verdicts, changed_virtuals
from saru.daemon.state import Life, Loaded
from saru.dataplane.base import DataplaneError
from saru.model import Override, RealRef, ServiceKey
from saru.planner import real_ref
from tests.unit.doubles import MemoryPlane, config

CF = """\
checkinterval=5
checktimeout=2
virtual=10.0.0.1:80
\treal=10.1.0.1:80 masq 2
\treal=10.1.0.2:80 masq 1
\treal=10.1.0.3:80 masq 1
\treal=10.1.0.4:80 masq 3
\tfallback=127.0.0.1:80
\tquiescent=no
virtual=10.0.0.2:80
\treal=10.1.1.1:80 masq 1
\treal=10.1.1.2:80 masq 1
\treal=10.1.1.3:80 masq 1
\tquiescent=yes
virtual=10.0.0.3:80
\treal=10.1.2.1:80 masq 1
\treal=10.1.2.2:80 masq 1
\tfallback=127.0.0.1:80
\tquiescent=no
virtual=10.0.0.4:80
\treal=10.1.3.1:80 masq 1
\treal=10.1.3.2:80 masq 1
\treal=10.1.3.3:80 masq 1
\tquiescent=no
"""
CONFIG = config(CF)
REFS = [real_ref(v, r) for v in CONFIG.virtuals for r in v.reals]

# one step: some reals get a verdict (True up, False failed by its checks, "maint" down by
# maintenance, None not yet known), time moves on, and now and then something other than health
Verdict = bool | str | None
Step = tuple[dict[int, Verdict], float, str | None]
steps = st.lists(st.tuples(
    st.dictionaries(st.integers(0, len(REFS) - 1), st.sampled_from([True, False, "maint", None]), max_size=5),
    st.sampled_from([0.5, 3.0, 30.0]),
    st.sampled_from([None, None, None, None, "override", "gate", "fail"]),
), min_size=1, max_size=25)


class World:
    """What both reconcilers see: the verdicts, the failure times, the overrides, the gate."""

    def __init__(self) -> None:
        self.health: dict[RealRef, bool | None] = dict.fromkeys(REFS)
        self.failed: dict[RealRef, float] = {}
        self.overrides: dict[RealRef, Override] = {}
        self.gated = False
        self.now = 1000.0

    def apply(self, verdicts: dict[int, Verdict], elapsed: float) -> None:
        self.now += elapsed
        for index, verdict in verdicts.items():
            ref = REFS[index]
            self.health[ref] = verdict if isinstance(verdict, bool) or verdict is None else False
            if verdict is False:
                self.failed.setdefault(ref, self.now)
            else:
                self.failed.pop(ref, None)


def reconciler(world: World, threshold: int) -> tuple[Reconciler, MemoryPlane]:
    plane = MemoryPlane()
    loaded = Loaded("/etc/ha.d/test.cf", CONFIG)
    loaded.settings = replace(loaded.settings, director=replace(loaded.settings.director, panic_threshold=threshold))
    made = Reconciler(plane, lambda: dict(world.health), loaded, Life(), Journal(), HookRunner(),
                      gated=lambda: world.gated, overrides=lambda: dict(world.overrides),
                      failed=lambda: dict(world.failed))
    return made, plane


async def play(script: list[Step], threshold: int) -> tuple[int, int]:
    world = World()
    whole, whole_plane = reconciler(world, threshold)
    part, part_plane = reconciler(world, threshold)
    for verdicts, elapsed, other in script:
        world.apply(verdicts, elapsed)
        # the daemon asks for a whole plan after anything but verdicts (mark_dirty); the reconciler must
        # not need that: every step here asks for an incremental one and its safety nets must hold
        if other == "override":  # drain the first real of the first virtual, or take it back
            ref = REFS[0]
            if world.overrides:
                world.overrides.clear()
            else:
                world.overrides[ref] = Override("drain", None)
        elif other == "gate":
            world.gated = not world.gated
        elif other == "fail":  # the incremental side's apply fails once; the retry plans it all
            part_plane.fail = ["device busy"]
            with contextlib.suppress(DataplaneError):  # raised when there was something to apply
                await part.reconcile(incremental=True)
            part_plane.fail = []
        await whole.reconcile()
        await part.reconcile(incremental=True)
        assert part_plane.table == whole_plane.table, (verdicts, other)
        assert part.panic == whole.panic
        if other is None and part_plane.applied and whole_plane.applied:
            assert part_plane.applied[-1] == whole_plane.applied[-1]
    return part.incremental_runs, len(script)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(script=steps, threshold=st.sampled_from([0, 50, 60]))
def test_incremental_reconciliation_does_what_the_whole_plan_does(script: list[Step], threshold: int) -> None:
    asyncio.run(play(script, threshold))


def test_incremental_runs_are_taken_and_counted() -> None:
    """A sequence of verdicts alone after the first (whole) reconciliation: each one incremental."""
    script: list[Step] = [({0: True, 1: True}, 1.0, None), ({2: True}, 1.0, None), ({0: False}, 1.0, None)]
    runs, total = asyncio.run(play(script, 50))
    assert (runs, total) == (2, 3)  # the first has no basis: it plans the whole table


def test_changed_virtuals_names_the_virtuals_of_changed_reals_and_of_table_presence() -> None:
    v1, v2 = CONFIG.virtuals[0].key, CONFIG.virtuals[1].key
    a, b = REFS[0], REFS[4]
    basis = Basis(CONFIG, {a: True, b: None}, {}, {}, frozenset({v1}))
    assert changed_virtuals(basis, {a: True, b: None}, {}, frozenset({v1})) == set()
    assert changed_virtuals(basis, {a: False, b: None}, {a: 5.0}, frozenset({v1})) == {v1}
    assert changed_virtuals(basis, {a: True, b: None}, {b: 5.0}, frozenset({v1})) == {v2}  # failure time only
    assert changed_virtuals(basis, {a: True, b: None}, {}, frozenset({v1, v2})) == {v2}  # entered the table
    foreign = ServiceKey("tcp", "10.9.9.9", 25)
    assert changed_virtuals(basis, {a: True}, {}, frozenset({v1, foreign})) == {v2, foreign}


@given(st.dictionaries(st.integers(0, len(REFS) - 1), st.sampled_from([True, False, None])),
       st.dictionaries(st.integers(0, len(REFS) - 1), st.sampled_from([True, False, None])))
@settings(max_examples=100, deadline=None, derandomize=True)
def test_changed_verdicts_in_order_or_not(old: dict[int, bool | None], new: dict[int, bool | None]) -> None:
    """The in-order walk (the monitor's dicts) and the lookups (anything else) agree."""
    before = {ref: old.get(i) for i, ref in enumerate(REFS)}
    health = {ref: new.get(i) for i, ref in enumerate(REFS)}
    expected = {ref.service for ref in REFS if before[ref] != health[ref]}
    assert changed_verdicts(before, health) == expected
    assert changed_verdicts(before, dict(reversed(health.items()))) == expected
    assert changed_verdicts(before, {ref: up for ref, up in health.items() if ref != REFS[0]}) == (
        expected | {REFS[0].service})
