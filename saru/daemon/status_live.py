"""The status document's virtuals kept up to date between requests, instead of made anew for each.

``virtuals_status`` (``saru.daemon.status``) makes a dictionary for each of 10,000 reals on every
``status`` request, though a few hundred of them changed since the last. ``LiveVirtuals`` keeps each
real's part and makes it again (with ``status.real_status``, the same function) only when:

* a check result touched it (``RealStats.changes``: the monitor reports every result to both);
* it got a transition (``Transitions.changed``: up, down, the operator's actions);
* its operator override changed;
* its virtual's service in the table, or its destination's counters, changed (one identity test per
  virtual on the proxy plane, else a comparison; the counters' (active, inactive, total) per real).

A new config, another ``rewrite`` or ``RealStats.retain`` starts over. Each virtual's own fields
(in the table, fallback active, connections) are made for every request. The parts of unchanged
reals are the same objects from one request to the next: nobody may change them (the document is
encoded, never edited). tests/unit/test_status_live.py holds the result to ``virtuals_status``'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from saru.daemon.realstats import RealStats
from saru.daemon.status import NO_STATS, RealStatus, VirtualStatus, real_status, virtual_status
from saru.daemon.transitions import Transitions
from saru.dataplane.base import ServiceStats
from saru.model import Config, Override, RealRef, Service, ServiceKey, Table, VirtualConfig
from saru.monitor import RealHealth
from saru.planner import dest_port, fallback_active

Counters = list[tuple[int, int, int]]


def counters_of(keys: list[tuple[str, int]], service_stats: ServiceStats) -> Counters:
    found: Counters = []
    dests = service_stats.dests
    for key in keys:
        d = dests.get(key)
        found.append((d.active_connections, d.inactive_connections, d.connections) if d else (0, 0, 0))
    return found


@dataclass
class _Virtual:
    config: VirtualConfig
    key: ServiceKey
    refs: list[RealRef]
    dest_keys: list[tuple[str, int]]
    service: Service | None
    counters: Counters
    reals: list[RealStatus]


class LiveVirtuals:
    """``virtuals_status``'s answer, kept (see the module docstring)."""

    def __init__(self, realstats: RealStats, transitions: Transitions | None) -> None:
        self._realstats = realstats
        self._results = realstats.changes()
        self._transitions = transitions
        self._config: Config | None = None
        self._rewrite = False
        self._generation = -1
        self._overrides: Mapping[RealRef, Override] = {}
        self._virtuals: list[_Virtual] = []
        self._where: dict[RealRef, list[tuple[int, int]]] = {}
        self.redone = 0  # reals made again by the last update (for the tests)

    def update(self, config: Config, snapshot: Mapping[RealRef, RealHealth], table: Table,
               stats: Mapping[ServiceKey, ServiceStats], rewrite: bool,
               overrides: Mapping[RealRef, Override]) -> list[VirtualStatus]:
        """``virtuals_status(config, snapshot, table, stats, rewrite, overrides, transitions)``."""
        dirty: set[RealRef] = {rec.ref for rec in self._results}
        self._results.clear()
        if self._transitions is not None:
            dirty |= self._transitions.changed
            self._transitions.changed.clear()
        if config is not self._config or rewrite != self._rewrite or self._realstats.generation != self._generation:
            self._start(config, table, stats, rewrite)
            self._overrides = dict(overrides)
            self.redone = -1
            return self._redo_all(config, snapshot, table, stats, rewrite)
        if overrides != self._overrides:
            dirty.update(ref for ref in set(overrides) | set(self._overrides)
                         if overrides.get(ref) != self._overrides.get(ref))
            self._overrides = dict(overrides)
        redo_virtuals: set[int] = set()
        for i, v in enumerate(self._virtuals):
            service = table.services.get(v.key)
            if service is not v.service and service != v.service:
                v.service = service
                redo_virtuals.add(i)
            counters = counters_of(v.dest_keys, stats.get(v.key, NO_STATS))
            if counters != v.counters:
                v.counters = counters
                redo_virtuals.add(i)
        self.redone = 0
        for i in redo_virtuals:
            v = self._virtuals[i]
            for j in range(len(v.refs)):
                self._redo(v, j, snapshot, stats)
        for ref in dirty:
            for i, j in self._where.get(ref, ()):
                if i not in redo_virtuals:
                    self._redo(self._virtuals[i], j, snapshot, stats)
        return self._document(config, table, stats, rewrite)

    def _document(self, config: Config, table: Table, stats: Mapping[ServiceKey, ServiceStats],
                  rewrite: bool) -> list[VirtualStatus]:
        fallbacks = fallback_active(config, table, rewrite)
        return [virtual_status(v.config, v.key, v.service, stats.get(v.key, NO_STATS), fallbacks.get(v.key, False),
                               list(v.reals)) for v in self._virtuals]  # (lists of their own: kept ones change)

    def _start(self, config: Config, table: Table, stats: Mapping[ServiceKey, ServiceStats], rewrite: bool) -> None:
        self._config, self._rewrite, self._generation = config, rewrite, self._realstats.generation
        self._virtuals, self._where = [], {}
        for i, v in enumerate(config.virtuals):
            vkey = v.key
            refs = [RealRef(vkey, r.address, r.port) for r in v.reals]
            keys = [(r.address, dest_port(v, r.forward, r.port, rewrite)) for r in v.reals]
            for j, ref in enumerate(refs):
                self._where.setdefault(ref, []).append((i, j))
            self._virtuals.append(_Virtual(v, vkey, refs, keys, table.services.get(vkey),
                                           counters_of(keys, stats.get(vkey, NO_STATS)), []))

    def _redo_all(self, config: Config, snapshot: Mapping[RealRef, RealHealth], table: Table,
                  stats: Mapping[ServiceKey, ServiceStats], rewrite: bool) -> list[VirtualStatus]:
        for v in self._virtuals:
            v.reals = [{} for _ in v.refs]  # type: ignore[typeddict-item]  # filled just below
            for j in range(len(v.refs)):
                self._redo(v, j, snapshot, stats)
        return self._document(config, table, stats, rewrite)

    def _redo(self, v: _Virtual, j: int, snapshot: Mapping[RealRef, RealHealth],
              stats: Mapping[ServiceKey, ServiceStats]) -> None:
        ref, key = v.refs[j], v.dest_keys[j]
        v.reals[j] = real_status(v.config, v.config.reals[j], ref, snapshot.get(ref),
                                 v.service.dests.get(key) if v.service is not None else None,
                                 stats.get(v.key, NO_STATS).dests.get(key),
                                 self._overrides.get(ref) if self._overrides else None, self._transitions)
        self.redone += 1
