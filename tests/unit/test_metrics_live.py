"""The metrics' live rows (``saru.daemon.metrics_live.LiveServers``) and the exporter that writes only
what changed (``saru.api.metrics.Exporter``: its blocks' text, and the gzip answer made of them)
against a snapshot built anew (``build``) and written whole by prometheus-client (``render``), over
sequences of changes drawn by Hypothesis: check results (passing, failing, maintenance, flapping
verdicts), the table (reals in and out, weights), the plane's counters (a new reading or the same one
again), operator overrides, time passing, reloads (reals gone, new ones, another checktype). After
every step the two must be equal, byte for byte."""

from __future__ import annotations

import dataclasses
import gc
import gzip
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from saru.api import metrics
from saru.api.blocks import Gzipped
from saru.api.metrics import Exporter, render
from saru.config.ldirectord import parse_text
from saru.daemon import heap, metrics_live
from saru.daemon.histogram import Histogram
from saru.daemon.metrics_live import LiveServers
from saru.daemon.metrics_snapshot import MetricsSnapshot, build
from saru.daemon.realstats import RealStats
from saru.dataplane.base import DestStats, ServiceStats
from saru.model import CheckResult, CheckSpec, Config, Override, RealRef, Table
from saru.monitor import MAINTENANCE_MESSAGE
from saru.planner import desired_table, real_ref
from tests.unit.test_metrics_render import CONFIG as RENDER_CONFIG

#: test_metrics_render's config, with a real in two virtuals and the firewall mark's checktype to change
CONFIG = RENDER_CONFIG.replace("\treal=10.0.0.9:0 gate 2\n\tchecktype=off\n",
                               "\treal=10.0.0.9:0 gate 2\n\treal=10.0.0.2:80 gate 1\n\tchecktype={checktype}\n")
assert CONFIG != RENDER_CONFIG
#: a reload: a real gone, one new, another checktype for the firewall mark
RELOADED = CONFIG.replace("\treal=10.0.0.3:80 masq 1\n", "\treal=10.0.0.5:8080 masq 2\n")

RESULTS = (
    CheckResult(ok=True, message="HTTP 200 OK", latency=0.012, layer="L7"),
    CheckResult(ok=False, message="HTTP 503", latency=0.5, layer="L7", failure="status"),
    CheckResult(ok=False, message="connection refused", latency=0.001, layer="L4", failure="connect"),
    CheckResult(ok=False, message="timed out", latency=5.0, layer="L4", failure="timeout"),
    CheckResult(ok=True, message="connected", latency=0.0004, layer="L4"),
    CheckResult(ok=False, message=MAINTENANCE_MESSAGE),
    CheckResult(ok=True, message="HTTP 200 OK", latency=0.0031, layer="L7"),  # as the first, in other ms
)
SPEC = CheckSpec("connect", "none", "tcp", "10.0.0.2", 80)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class World:
    """A config, its table, the plane's counters, overrides and the real statistics, changed step by
    step; ``both()`` is the snapshot from the live rows and the one built anew."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.realstats = RealStats(self.clock)
        self.live = LiveServers(self.realstats)
        self.config = self.load(CONFIG.format(checktype="off"))
        self.health: dict[RealRef, bool] = {}
        self.table: Table = desired_table(self.config, self.health)
        self.stats: dict = {}
        self.overrides: dict[RealRef, Override] = {}
        self.durations = Histogram()

    @staticmethod
    def load(text: str) -> Config:
        return parse_text(text, "test.cf")

    def refs(self) -> list[RealRef]:
        return [real_ref(v, r) for v in self.config.virtuals for r in v.reals]

    def step(self, kind: int, pick: int, value: int) -> None:
        refs = self.refs()
        ref = refs[pick % len(refs)]
        if kind == 0:  # a result and the verdict after it
            self.realstats.record(ref, SPEC, RESULTS[value % len(RESULTS)], (None, True, False)[value % 3])
        elif kind == 1:  # the table follows the verdicts (a real leaves, comes back)
            self.health[ref] = bool(value % 2)
            self.table = desired_table(self.config, self.health, overrides=self.overrides)
        elif kind == 2:  # a new reading of the counters
            services = enumerate(self.table.services.items())
            self.stats = {key: ServiceStats(connections=value * 3 + i, bytes_in=value, dests={
                dkey: DestStats(active_connections=(value + j) % 4, inactive_connections=value % 3)
                for j, dkey in enumerate(service.dests)}) for i, (key, service) in services}
        elif kind == 3:  # an operator's override, or none
            states = ("drain", "disable", "weight", None)
            state = states[value % 4]
            if state is None:
                self.overrides.pop(ref, None)
            else:
                self.overrides[ref] = Override(state, value if state == "weight" else None, since=float(value))
        elif kind == 4:  # time passes
            self.clock.now += value / 3
        elif kind == 5:  # a reload: another config (the daemon then drops the statistics of reals gone)
            self.config = self.load((RELOADED if value % 2 else CONFIG).format(
                checktype=("off", "on", "connect")[value % 3]))
            self.overrides = {r: o for r, o in self.overrides.items() if r in set(self.refs())}
            self.realstats.retain(set(self.refs()))
            self.table = desired_table(self.config, self.health, overrides=self.overrides)
        elif kind == 6:  # the same table again as new objects (a plane that reads its table anew)
            self.table = Table(dict(self.table.services.items()))
        else:  # a new reading in which one service's counters moved, the others' are the same objects
            self.stats = dict(self.stats)  # (as the proxy gives them)
            if self.stats:
                key = list(self.stats)[pick % len(self.stats)]
                old = self.stats[key]
                self.stats[key] = ServiceStats(connections=old.connections + 1, dests={
                    dkey: DestStats(active_connections=value % 5) for dkey in old.dests})

    def snapshot(self, kept: LiveServers | None) -> MetricsSnapshot:
        return build(version="1", dataplane="proxy", config=self.config, table=self.table, stats=self.stats,
                     realstats=self.realstats, rewrite=True, ha=None, reloads_ok=1, reloads_failed=0,
                     last_reload_success=5.0, apply_durations=self.durations.snapshot(),
                     overrides=self.overrides, kept=kept)


STEPS = st.lists(st.tuples(st.integers(0, 7), st.integers(0, 20), st.integers(0, 30)), min_size=1, max_size=40)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(STEPS, min_size=1, max_size=6))
def test_live_rows_and_the_exporter_equal_a_full_rebuild_after_every_change(scrapes: list) -> None:
    world = World()
    exporter, gzipped = Exporter(), Gzipped()
    with mock.patch.object(metrics, "CHUNK", 3):  # blocks of 3 rows: a few reals in several blocks
        check_scrapes(world, exporter, gzipped, scrapes)


def check_scrapes(world: World, exporter: Exporter, gzipped: Gzipped, scrapes: list) -> None:
    for steps in scrapes:
        for kind, pick, value in steps:
            world.step(kind, pick, value)
        full = world.snapshot(None)
        live = world.snapshot(world.live)
        assert live.servers == full.servers
        assert live.check_durations == full.check_durations
        assert live.active_servers == full.active_servers
        assert live.ipvs == full.ipvs
        if len(steps) % 2:  # the new lines written in slices first, as the handler does (slices of one)
            with mock.patch.object(metrics, "SLICES_ABOVE", 0), mock.patch.object(metrics, "SLICE", 1):
                list(exporter.slices(live))
        blocks = exporter.blocks(live)
        text = render(full)
        assert b"".join(b.text for b in blocks) == text
        assert gzip.decompress(gzipped.answer(blocks)) == text  # as /metrics sends it to Prometheus


def test_only_what_changed_is_redone_and_equal_rows_keep_their_objects() -> None:
    world = World()
    first = world.snapshot(world.live)
    assert world.live.redone == len(first.servers)
    again = world.snapshot(world.live)
    assert world.live.redone == 0 and again.servers is first.servers  # (the same tuple while no row changed)
    ref = world.refs()[1]
    world.realstats.record(ref, SPEC, RESULTS[2], False)
    changed = world.snapshot(world.live)
    assert world.live.redone == 1
    moved = [i for i, (a, b) in enumerate(zip(again.servers, changed.servers, strict=True)) if a is not b]
    assert [(changed.servers[i].address, changed.servers[i].state) for i in moved] == [("10.0.0.3", "DOWN")]
    assert changed.servers == world.snapshot(None).servers
    world.table = dataclasses.replace(world.table)  # equal services, other table object: nothing to redo
    world.snapshot(world.live)
    assert world.live.redone == 0
    world.realstats.record(ref, SPEC, RESULTS[0], True)  # up again: L7OK in 12 ms
    world.snapshot(world.live)
    world.realstats.record(ref, SPEC, dataclasses.replace(RESULTS[0], latency=0.0121), True)  # the same class,
    world.snapshot(world.live)  # verdict and duration in milliseconds, no failure: nothing moved
    assert world.live.redone == 0
    world.realstats.record(ref, SPEC, dataclasses.replace(RESULTS[0], latency=0.0136), True)
    live, full = world.snapshot(world.live), world.snapshot(None)  # another duration: in the column beside
    assert live.servers == full.servers and world.live.redone == 0  # the rows, no row made again
    assert live.check_durations == full.check_durations
    assert live.check_durations[world.refs().index(ref)] == 0.014


def test_the_durations_column_is_gathered_by_slot_for_any_number_of_rows() -> None:
    durations = [None, 0.5, 0.25, 0.125]
    assert metrics_live.gather([])(durations) == ()
    assert metrics_live.gather([2])(durations) == (0.25,)
    assert metrics_live.gather([3, 0, 1, 3])(durations) == (0.125, None, 0.5, 0.125)


def test_a_reload_gives_the_records_kept_new_slots_and_their_durations() -> None:
    realstats = RealStats(Clock())
    refs = World().refs()
    for n, ref in enumerate(refs):
        realstats.record(ref, SPEC, dataclasses.replace(RESULTS[0], latency=n / 1000), True)
    assert realstats.durations == [None, *(n / 1000 for n in range(len(refs)))]
    realstats.retain(set(refs[2:]))
    assert sorted(realstats.durations[1:]) == [n / 1000 for n in range(2, len(refs))]
    for n, ref in enumerate(refs[2:], start=2):  # each kept real's slot holds its own duration
        rec = realstats.for_service(ref.service)[(ref.address, ref.port)]
        assert realstats.durations[rec.slot] == n / 1000


def test_an_ages_template_is_the_prefixes_each_followed_by_the_mark() -> None:
    assert metrics._template([b"a ", b"b "]).replace(metrics.MARK, b"7\n") == b"a 7\nb 7\n"
    assert metrics._template([b"a\x00 ", b"b "]) == b""  # a prefix holding the mark: joined instead


def test_a_check_duration_is_kept_in_milliseconds_as_haproxys() -> None:
    realstats = RealStats(Clock())
    ref, other = World().refs()[:2]
    realstats.record(ref, SPEC, dataclasses.replace(RESULTS[0], latency=0.0123456), True)
    realstats.record(other, SPEC, dataclasses.replace(RESULTS[0], latency=0.0118), True)
    rec, rec_other = (realstats.for_service(r.service)[(r.address, r.port)] for r in (ref, other))
    assert realstats.durations[rec.slot] == 0.012
    assert realstats.durations[rec_other.slot] is realstats.durations[rec.slot]  # one object per ms value


def test_the_daemon_raises_the_collectors_first_threshold() -> None:
    before = gc.get_threshold()
    try:
        heap.tune()
        assert gc.get_threshold() == (heap.YOUNG_THRESHOLD, *before[1:])
    finally:
        gc.set_threshold(*before)
