"""The status document's live virtuals (``saru.daemon.status_live.LiveVirtuals``) against
``virtuals_status`` made anew, over sequences of changes drawn by Hypothesis, fed the way the
daemon feeds them: a check result changes the monitor's health and is recorded by ``RealStats``, a
transition goes to ``Transitions``, the table, the counters and the overrides change, reloads."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from saru.daemon.status import virtuals_status
from saru.daemon.status_live import LiveVirtuals
from saru.daemon.transitions import Transitions
from saru.events import RealDown, RealUp
from saru.model import Override, RealRef, Table
from saru.monitor import RealHealth
from tests.unit.test_metrics_live import RESULTS, SPEC, World


class StatusWorld(World):
    def __init__(self) -> None:
        super().__init__()
        self.transitions = Transitions()
        self.health: dict[RealRef, bool] = {}
        self.snapshot: dict[RealRef, RealHealth] = {}
        self.kept = LiveVirtuals(self.realstats, self.transitions)

    def status_step(self, kind: int, pick: int, value: int) -> None:
        refs = self.refs()
        ref = refs[pick % len(refs)]
        if kind == 0:  # a check result: the monitor's health, then its result listeners
            result = RESULTS[value % len(RESULTS)]
            up = (None, True, False)[value % 3]
            self.snapshot[ref] = RealHealth(up, result, 1000.0 + value, value % 3, 0, value % 5 == 0, "connect")
            self.realstats.record(ref, SPEC, result, up)
        elif kind == 7:  # a transition
            self.transitions.record((RealUp if value % 2 else RealDown)(real=ref, detail=f"because {value}"))
        else:
            self.step(kind, pick, value)

    def both(self) -> tuple[list, list]:
        overrides: dict[RealRef, Override] = self.overrides
        full = virtuals_status(self.config, self.snapshot, self.table, self.stats, True, overrides, self.transitions)
        kept = self.kept.update(self.config, self.snapshot, self.table, self.stats, True, overrides)
        return kept, full


STEPS = st.lists(st.tuples(st.integers(0, 7), st.integers(0, 20), st.integers(0, 30)), min_size=1, max_size=30)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(STEPS, min_size=1, max_size=6))
def test_kept_virtuals_equal_virtuals_status_after_every_change(requests: list) -> None:
    world = StatusWorld()
    for steps in requests:
        for kind, pick, value in steps:
            world.status_step(kind, pick, value)
        kept, full = world.both()
        assert kept == full


def test_only_what_changed_is_made_again() -> None:
    world = StatusWorld()
    world.both()
    kept, _ = world.both()
    assert world.kept.redone == 0
    world.status_step(0, 1, 2)
    kept2, full = world.both()
    assert world.kept.redone == 1 and kept2 == full
    changed = [(i, j) for i, v in enumerate(kept2) for j, r in enumerate(v["reals"]) if r is not kept[i]["reals"][j]]
    assert changed == [(0, 1)]
    world.table = Table(dict(world.table.services.items()))  # equal services, new table: nothing made again
    world.both()
    assert world.kept.redone == 0
