"""The metrics snapshot kept up to date between scrapes, instead of built anew for each one.

``build`` (``saru.daemon.metrics_snapshot``) makes a row for each of 10,000 reals on every scrape,
though from one scrape to the next a few hundred of them changed. ``LiveServers`` keeps the rows and
redoes only those whose inputs changed since the last ``update``:

* a real whose numbers a check result moved (``RealStats.moves``: most results of a real that stays
  up move none of them, only its check duration, which is no part of a row);
* every real of a virtual whose service in the data plane's table changed (a plane that hands back
  the same ``Service`` object while it is unchanged, as the proxy does, costs one identity test per
  virtual; otherwise the services are compared);
* every real of a virtual whose connection counters changed, when the counters are a new reading
  (the service layer reads them at most once every ``COUNTERS_MAX_AGE`` seconds; the same mapping
  again costs nothing, and so does a virtual whose ``ServiceStats`` is the same object: the proxy
  hands back the same one while none of its counters moved);
* a real whose operator override changed.

A new config (reload), another ``rewrite`` or a ``RealStats.retain`` (records dropped) starts over
with ``build``'s own functions. A row that is redone but comes out equal keeps its old object, so a
reader can find what changed by identity; the rows an update replaced are also listed
(``moved``, the snapshot's ``servers_moved``), so the exporter (``saru.api.metrics.Exporter``) need
not compare 10,000 rows to find them. The check durations are a column beside the rows
(``check_durations``), taken from ``RealStats.durations`` in one step by the rows' slots
(``operator.itemgetter``: ~50 µs for 10,000 reals), so no row is made for a check that only took
another number of milliseconds. The node_ipvs backends are kept like the rows, per service of the
table, and their tuple is the same object while no backend changed (the exporter then skips them at
once). Either way the rows and durations are exactly ``build``'s (tests/unit/test_metrics_live.py
holds the two to it over sequences of changes).
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from saru.daemon.metrics_snapshot import (
    NO_COUNTERS,
    BackendMetrics,
    IpvsView,
    Moved,
    ServerMetrics,
    ipvs_totals,
    real_row,
    service_backends,
    virtual_rows,
)
from saru.daemon.realstats import RealRecord, RealStats
from saru.dataplane.base import DestStats, ServiceStats
from saru.model import Config, Override, RealRef, Service, ServiceKey, Table, VirtualConfig
from saru.planner import dest_port

Conns = list[tuple[int, int]]
_SOURCES = itertools.count(1)  # names each LiveServers (Moved.source)


def conns_of(keys: list[tuple[str, int]], service_stats: ServiceStats | None) -> Conns:
    """(active, inactive) of each destination key."""
    if service_stats is None:
        return [(0, 0)] * len(keys)
    return [(c.active_connections, c.inactive_connections)
            for c in map(service_stats.dests.get, keys, itertools.repeat(NO_COUNTERS))]


def slot_of(row: ServerMetrics, rec: RealRecord | None) -> int:
    """Where ``RealStats.durations`` holds the duration a row shows (0: None, it shows no check)."""
    return rec.slot if rec is not None and row.check_class is not None else 0


def gather(slots: Sequence[int]) -> Callable[[Sequence[float | None]], tuple[float | None, ...]]:
    """A function taking the items at ``slots`` of a sequence, as a tuple, in one step."""
    if len(slots) > 1:
        return operator.itemgetter(*slots)
    return lambda items: tuple(items[s] for s in slots)


@dataclass
class _Virtual:
    """One virtual's part of the rows."""

    config: VirtualConfig
    key: ServiceKey  # one object for every row of the virtual
    start: int  # its first row
    dest_keys: list[tuple[str, int]]  # each real's destination key in the table, in row order
    service: Service | None  # as in the table the rows were made from
    counters: ServiceStats | None  # the plane's reading the rows' connections come from
    conns: Conns  # each real's (active, inactive) the rows show
    up: int = 0  # its reals UP


@dataclass
class _Backends:
    service: Service
    counters: ServiceStats | None
    conns: Conns
    rows: list[BackendMetrics] = field(default_factory=list)


class LiveServers:
    """The rows of every real (``servers``), each virtual's reals UP (``active``) and the node_ipvs
    view, kept up to date by ``update`` (see the module docstring)."""

    def __init__(self, realstats: RealStats) -> None:
        self._realstats = realstats
        self._changed = realstats.moves()
        self._config: Config | None = None
        self._rewrite = False
        self._generation = -1
        self._overrides: Mapping[RealRef, Override] = {}
        self._stats: Mapping[ServiceKey, ServiceStats] = {}
        self._rows: list[ServerMetrics] = []
        #: the rows as a tuple, the same object while no row changed (a new 10,000-row tuple per scrape,
        #: and the old one freed, touched every row, far from the caches in a daemon busy with checks)
        self._servers: tuple[ServerMetrics, ...] | None = None
        self._active: tuple[tuple[ServiceKey, int], ...] | None = None  # (likewise, while no count changed)
        self._virtuals: list[_Virtual] = []
        self._virtual_of: list[int] = []  # row -> its virtual
        self._rows_of: dict[RealRef, list[int]] = {}
        self._by_record: dict[RealRecord, list[int]] = {}
        self._backends: dict[ServiceKey, _Backends] = {}
        self._ipvs: IpvsView | None = None
        self._ipvs_backends: tuple[BackendMetrics, ...] | None = None
        self._readings: list[ServiceStats] = []  # the counters the totals were taken from
        self.redone = 0  # rows redone by the last update (for the benchmark and the tests)
        self._source = next(_SOURCES)
        self._sequence = 0  # updates
        self._moved: list[int] | None = None  # rows replaced by the last update (None: all made anew)
        self._slots: list[int] = []  # each row's slot in RealStats.durations (0: it shows no check)
        self._gather: Callable[[Sequence[float | None]], tuple[float | None, ...]] | None = None  # of the slots

    @property
    def servers(self) -> tuple[ServerMetrics, ...]:
        if self._servers is None:
            self._servers = tuple(self._rows)
        return self._servers

    @property
    def check_durations(self) -> tuple[float | None, ...]:
        """Each row's last check duration (None: the row shows no check), as the records hold it now."""
        if self._gather is None:
            self._gather = gather(self._slots)
        return self._gather(self._realstats.durations)

    @property
    def active(self) -> tuple[tuple[ServiceKey, int], ...]:
        if self._active is None:
            self._active = tuple((v.key, v.up) for v in self._virtuals)
        return self._active

    @property
    def moved(self) -> Moved | None:
        """The rows the last update replaced (None: it made them all anew)."""
        if self._moved is None:
            return None
        return Moved(self._source, self._sequence, tuple(self._moved))

    def update(self, config: Config, table: Table, stats: Mapping[ServiceKey, ServiceStats], rewrite: bool,
               overrides: Mapping[RealRef, Override]) -> None:
        """Bring the rows to ``build``'s for these inputs."""
        realstats = self._realstats
        self._sequence += 1
        if config is not self._config or rewrite != self._rewrite or realstats.generation != self._generation:
            self._changed.clear()
            self._start(config, table, stats, rewrite, overrides)
            return
        changed = list(self._changed)
        self._changed.clear()
        redo_virtuals: set[int] = set()
        redo_rows: dict[int, RealRecord | None] = {}  # (its record when a result touched it)
        fresh = stats is not self._stats
        for i, v in enumerate(self._virtuals):
            service = table.services.get(v.key)
            if service is not v.service and service != v.service:
                v.service = service
                redo_virtuals.add(i)
            if fresh and (counters := stats.get(v.key)) is not v.counters:
                v.counters = counters
                conns = conns_of(v.dest_keys, counters)
                if conns != v.conns:
                    v.conns = conns
                    redo_virtuals.add(i)
        self._stats = stats
        if overrides != self._overrides:
            for ref in set(overrides) | set(self._overrides):
                if overrides.get(ref) != self._overrides.get(ref):
                    redo_rows.update(dict.fromkeys(self._rows_of.get(ref, ())))
            self._overrides = dict(overrides)
        for rec in changed:
            rows = self._by_record.get(rec)
            if rows is None:  # its first result since the rows were made
                rows = self._by_record[rec] = self._rows_of.get(rec.ref, [])
            for row in rows:
                redo_rows[row] = rec
        self.redone = 0
        self._moved = []
        for i in redo_virtuals:
            self._redo_virtual(i)
        for row, record in redo_rows.items():
            if self._virtual_of[row] not in redo_virtuals:
                self._redo_row(row, record)
        self._update_backends(table, stats)

    def ipvs(self) -> IpvsView:
        """node_exporter's IPVS view of the table and counters ``update`` was given last (the backends
        the same tuple while none changed)."""
        if self._ipvs is None:
            backends = self._ipvs_backends
            if backends is None:
                backends = self._ipvs_backends = tuple(b for part in self._backends.values() for b in part.rows)
            self._ipvs = IpvsView(ipvs_totals(self._stats), backends)
        return self._ipvs

    # -- internals --------------------------------------------------------------------------------

    def _start(self, config: Config, table: Table, stats: Mapping[ServiceKey, ServiceStats], rewrite: bool,
               overrides: Mapping[RealRef, Override]) -> None:
        self._config, self._rewrite, self._generation = config, rewrite, self._realstats.generation
        self._overrides, self._stats = dict(overrides), stats
        self._rows, self._virtuals, self._virtual_of, self._rows_of = [], [], [], {}
        self._servers = self._active = None
        self._by_record, self._slots, self._gather = {}, [], None
        for i, v in enumerate(config.virtuals):
            vkey = v.key
            service, service_stats = table.services.get(vkey), stats.get(vkey)
            dest_keys = [(r.address, dest_port(v, r.forward, r.port, rewrite)) for r in v.reals]
            part = _Virtual(v, vkey, len(self._rows), dest_keys, service, service_stats,
                            conns_of(dest_keys, service_stats))
            rows = virtual_rows(v, vkey, service, service_stats, self._realstats, rewrite, overrides)
            part.up = sum(row.state == "UP" for row in rows)
            records = self._realstats.for_service(vkey)
            for j, r in enumerate(v.reals):
                self._rows_of.setdefault(RealRef(vkey, r.address, r.port), []).append(part.start + j)
            self._slots.extend(slot_of(row, records.get((r.address, r.port)))
                               for r, row in zip(v.reals, rows, strict=True))
            self._rows.extend(rows)
            self._virtual_of.extend([i] * len(rows))
            self._virtuals.append(part)
        for ref, indices in self._rows_of.items():
            rec = self._realstats.for_service(ref.service).get((ref.address, ref.port))
            if rec is not None:
                self._by_record[rec] = indices
        self.redone = len(self._rows)
        self._moved = None
        self._backends = {}
        self._ipvs = self._ipvs_backends = None
        self._update_backends(table, stats)

    def _keep(self, row: int, new: ServerMetrics, rec: RealRecord | None) -> None:
        """Row ``row`` is ``new`` (made from ``rec``), kept as the old object when equal to it."""
        slot = slot_of(new, rec)
        if slot != self._slots[row]:
            self._slots[row] = slot
            self._gather = None
        old = self._rows[row]
        if new != old:
            self._rows[row] = new
            self._servers = None
            self.redone += 1
            if self._moved is not None:
                self._moved.append(row)
            if (new.state == "UP") is not (old.state == "UP"):
                self._virtuals[self._virtual_of[row]].up += 1 if new.state == "UP" else -1
                self._active = None

    def _redo_virtual(self, i: int) -> None:
        v = self._virtuals[i]
        rows = virtual_rows(v.config, v.key, v.service, self._stats.get(v.key), self._realstats, self._rewrite,
                            self._overrides)
        records = self._realstats.for_service(v.key)
        for j, (real, new) in enumerate(zip(v.config.reals, rows, strict=True)):
            self._keep(v.start + j, new, records.get((real.address, real.port)))

    def _redo_row(self, row: int, rec: RealRecord | None) -> None:
        v = self._virtuals[self._virtual_of[row]]
        j = row - v.start
        real, key = v.config.reals[j], v.dest_keys[j]
        active, inactive = v.conns[j]
        if rec is None:
            rec = self._realstats.for_service(v.key).get((real.address, real.port))
        self._keep(row, real_row(
            v.key, v.config.checktype, real, v.service.dests.get(key) if v.service is not None else None,
            DestStats(active, inactive) if active or inactive else NO_COUNTERS, rec,
            self._overrides.get(RealRef(v.key, real.address, real.port)) if self._overrides else None,
            self._realstats.started), rec)

    def _update_backends(self, table: Table, stats: Mapping[ServiceKey, ServiceStats]) -> None:
        """The node_ipvs backends of each service of the table, redone where the service or its
        counters changed (equal rows keep their objects); the view made again only when its backends
        or its totals (a counters reading that is not the same object) may have changed."""
        kept: dict[ServiceKey, _Backends] = {}
        rows_changed = len(table.services) != len(self._backends)
        for key, service in table.services.items():
            part, counters = self._backends.get(key), stats.get(key)
            same_service = part is not None and (service is part.service or service == part.service)
            if part is not None and same_service and counters is part.counters:
                kept[key] = part
                continue
            conns = conns_of(list(service.dests), counters)
            if part is None or not same_service or conns != part.conns:
                rows = service_backends(key, service, counters)
                if part is not None and len(part.rows) == len(rows):
                    rows = [old if old == new else new for old, new in zip(part.rows, rows, strict=True)]
                part = _Backends(service, counters, conns, rows)
                rows_changed = True
            part.counters = counters
            kept[key] = part
        if rows_changed or list(kept) != list(self._backends):
            self._ipvs = self._ipvs_backends = None
        readings = list(stats.values())
        if len(readings) != len(self._readings) or not all(map(operator.is_, readings, self._readings)):
            self._ipvs = None  # (the totals)
        self._readings = readings
        self._backends = kept
