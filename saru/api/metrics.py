"""``GET /metrics``: the daemon's state in the Prometheus text format, written by prometheus-client.

The series are shaped on HAProxy's PROMEX (``saru_server_*``, ``saru_backend_*``) and on
keepalived-exporter (``saru_vrrp_*``), with ``proxy``/``server`` labels named by ``saru.api.names``;
on the nftables and proxy planes also node_exporter's IPVS collector's ``node_ipvs_*`` series
(on IPVS node_exporter reads the kernel's and they are not doubled). docs/metrics.md lists them all.

A snapshot (``MetricsSnapshot``, the service layer's ``metrics_snapshot()``) becomes ``Series``:
one metric family as columns (label values, values). ``SnapshotCollector`` is a prometheus-client
collector yielding them as metric families, in a ``CollectorRegistry`` of its own (nothing goes into
prometheus-client's global registry); ``render(snapshot)`` is that, pure.

``Exporter`` serves the scrapes: with 10,000 reals a scrape is some 230,000 lines, far too many for
prometheus-client to write each time within the 100 ms a scrape may cost, and most of them do not
change from one scrape to the next. It keeps every family's lines as prometheus-client wrote them,
with the values they show. A family whose label sets changed (a reload, a real checked for the first
time) is written again by prometheus-client; in a family whose label sets did not change, a line
whose value changed keeps prometheus-client's text up to the value, and gets the new value written
by prometheus-client's own number formatter (``floatToGoString``). A row family's lines are kept in
blocks of ``CHUNK`` rows (``saru.api.blocks.Block``), made again only when one of their lines changed,
so that a scrape accepting gzip (Prometheus's always do) compresses only those
(``saru.api.blocks.Gzipped``). The text is byte for byte ``render``'s (tests/unit/test_metrics_render.py
holds the two to it). The garbage collector is paused
while a scrape runs (``gc_paused``): the snapshot's objects, tens of thousands for 10,000 reals, are
freed when the scrape ends, instead of being promoted on the way and setting off a full collection of
the daemon's heap.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import itertools
import operator
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import CollectorRegistry
from prometheus_client.utils import floatToGoString

from saru.api.blocks import Block, Gzipped, send_blocks
from saru.api.names import proxy_name, server_name
from saru.checks.result_class import RESULT_CLASSES
from saru.daemon.heap import settle
from saru.daemon.metrics_snapshot import STATES, BackendMetrics, MetricsSnapshot, Moved, ServerMetrics
from saru.model import ServiceKey

#: the classic text format (version 0.0.4), which ``generate_latest`` writes
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: the check classes that have a series per real (UNK, "no check ran", has none: no series then)
CLASSES = tuple(c for c in RESULT_CLASSES if c != "UNK")
SERVER = ("proxy", "server")
VRRP = ("vrid", "interface")
#: node_exporter's IPVS backend labels, in its order
IPVS_BACKEND = ("local_address", "local_port", "remote_address", "remote_port", "proto", "local_mark")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Labels = tuple[str, ...]


class MetricsSource(Protocol):
    """What the handler needs of the service layer (``saru.daemon.DaemonService``)."""

    async def metrics_snapshot(self) -> MetricsSnapshot: ...


class Series(NamedTuple):
    """One gauge or counter family as columns: ``labels[i]`` has ``values[i]``."""

    kind: str  # "gauge" or "counter"
    name: str  # counters end in _total
    documentation: str
    labelnames: Labels
    labels: Sequence[Labels]
    values: Sequence[float]

    def family(self, rows: Iterable[int] | None = None) -> Metric:
        """The prometheus-client family (of the rows given, or all)."""
        maker = GaugeMetricFamily if self.kind == "gauge" else CounterMetricFamily
        family = maker(self.name, self.documentation, labels=self.labelnames)
        for i in range(len(self.values)) if rows is None else rows:
            family.add_metric(self.labels[i], self.values[i])
        return family


Row = TypeVar("Row", ServerMetrics, BackendMetrics)
Shown = float | str | None


Column = Callable[[Sequence[Row], float], list[Shown]]


class RowFamily(NamedTuple, Generic[Row]):
    """A family with a series per row (a real, a backend), or one per row and ``one_hot`` name (its
    0/1 series: 1 for the row's value); ``column`` is what rows show at a time (None: no series; a
    column at once, not a call per row: the exporter asks for 10,000 rows' ages on every scrape),
    ``timed`` whether a row's value changes with the time alone (the downtime of a real that is down),
    not only with its row; ``age_of`` the field (a time) whose whole seconds before the snapshot's
    ``now`` every row shows (the ages: the exporter keeps that column, and writes a block whose rows
    share one time as one value joined between their prefixes); ``beside`` the name of a column the
    snapshot holds beside the rows, which the family shows instead of a column of the rows (the check
    durations: ``MetricsSnapshot.check_durations``; ``column`` is then not called)."""

    kind: str
    name: str
    documentation: str
    labelnames: Labels
    column: Column[Row]
    one_hot: tuple[str, ...] | None = None
    timed: Callable[[Row], bool] | None = None
    age_of: str | None = None
    beside: str | None = None


def field(name: str) -> Column[Any]:
    """The column of the rows' field ``name``, as it is."""
    get = operator.attrgetter(name)
    return lambda rows, _now: list(map(get, rows))


def _beside(_rows: Sequence[Any], _now: float) -> list[Shown]:
    """The column of a family whose values the snapshot holds beside the rows (``RowFamily.beside``)."""
    raise AssertionError("the family's values are beside the rows")


def _ages(rows: Sequence[ServerMetrics], now: float) -> list[Shown]:
    """Each real's whole seconds since its last change (``ServerMetrics.last_change_age``, inlined)."""
    return [round(now - s.last_change) for s in rows]


SERVER_FAMILIES: tuple[RowFamily[ServerMetrics], ...] = (
    RowFamily("gauge", "saru_server_status", "The real's state: 1 for the state it is in (UP, DOWN, DRAIN: "
              "weight 0 in service, MAINT: maintenance or disabled), 0 for the others", (*SERVER, "state"),
              field("state"), STATES),
    RowFamily("gauge", "saru_server_weight", "The real's weight in the data plane (0 when it is not in the table)",
              SERVER, field("weight")),
    RowFamily("gauge", "saru_server_check_status", "The class of the real's last check result: 1 for its class, "
              "0 for the others", (*SERVER, "state"), field("check_class"), CLASSES),
    RowFamily("gauge", "saru_server_check_duration_seconds", "How long the real's last check took", SERVER,
              _beside, beside="check_durations"),
    RowFamily("counter", "saru_server_check_failures_total", "Failed checks of the real", SERVER,
              field("failures")),
    RowFamily("counter", "saru_server_check_up_down_total", "The real's transitions from UP to DOWN", SERVER,
              field("up_down")),
    RowFamily("gauge", "saru_server_check_last_change_seconds", "Seconds since the real last went UP or DOWN "
              "(since the daemon started when it has not)", SERVER, _ages, age_of="last_change"),
    RowFamily("counter", "saru_server_downtime_seconds_total", "Seconds the real has been DOWN", SERVER,
              lambda rows, now: [round(s.downtime_at(now)) for s in rows], timed=lambda s: s.down_since is not None),
    RowFamily("gauge", "saru_server_connections_active", "The real's active connections", SERVER, field("active")),
    RowFamily("gauge", "saru_server_connections_inactive", "The real's inactive connections", SERVER,
              field("inactive")),
)

BACKEND_FAMILIES: tuple[RowFamily[BackendMetrics], ...] = (
    RowFamily("gauge", "node_ipvs_backend_connections_active", "The current active connections by local and "
              "remote address.", IPVS_BACKEND, field("active")),
    RowFamily("gauge", "node_ipvs_backend_connections_inactive", "The current inactive connections by local and "
              "remote address.", IPVS_BACKEND, field("inactive")),
    RowFamily("gauge", "node_ipvs_backend_weight", "The current backend weight by local and remote address.",
              IPVS_BACKEND, field("weight")),
)


def server_labels(servers: Sequence[ServerMetrics]) -> list[Labels]:
    """(proxy, server) of each real."""
    proxies: dict[ServiceKey, str] = {}
    named: list[Labels] = []
    for s in servers:
        proxy = proxies.get(s.service)
        if proxy is None:
            proxy = proxies[s.service] = proxy_name(s.service)
        named.append((proxy, server_name(s.address, s.port)))
    return named


def backend_labels(backends: Sequence[BackendMetrics]) -> list[Labels]:
    """node_exporter's labels of each backend."""
    return [(b.local_address, str(b.local_port), b.remote_address, str(b.remote_port), b.proto, b.local_mark)
            for b in backends]


#: what names a real's series (its virtual, address and port), and a backend's (its first six fields)
SERVER_NAMED = operator.itemgetter(0, 1, 2)
BACKEND_NAMED = operator.itemgetter(0, 1, 2, 3, 4, 5)
Beside = Mapping[str, Sequence[Shown]]


def server_beside(snapshot: MetricsSnapshot) -> Beside:
    """The columns the snapshot holds beside the reals' rows, by name (``RowFamily.beside``)."""
    return {"check_durations": snapshot.check_durations}


def row_series(families: Sequence[RowFamily[Row]], rows: Sequence[Row], labels: Sequence[Labels],
               now: float, beside: Beside | None = None) -> Iterator[Series]:
    """Each family of ``families`` over ``rows`` (named ``labels``) at ``now`` (``beside``: the columns
    beside the rows)."""
    for f in families:
        rows_labels: list[Labels] = []
        values: list[float] = []
        row_labels: Labels
        column = (beside or {})[f.beside] if f.beside is not None else f.column(rows, now)
        for v, row_labels in zip(column, labels, strict=True):
            if v is None:
                continue
            if f.one_hot is None:
                rows_labels.append(row_labels)
                values.append(float(v))
            else:
                for name in f.one_hot:
                    rows_labels.append((*row_labels, name))
                    values.append(float(v == name))
        yield Series(f.kind, f.name, f.documentation, f.labelnames, rows_labels, values)


def server_series(snapshot: MetricsSnapshot, labels: Sequence[Labels]) -> Iterator[Series]:
    """``saru_server_*`` (one series per real, and per state/class)."""
    yield from row_series(SERVER_FAMILIES, snapshot.servers, labels, snapshot.now, server_beside(snapshot))


def active_servers_series(snapshot: MetricsSnapshot) -> Series:
    """``saru_backend_active_servers``."""
    per_proxy: dict[str, int] = {}
    for key, count in snapshot.active_servers:  # both families of a firewall mark share one name
        name = proxy_name(key)
        per_proxy[name] = per_proxy.get(name, 0) + count
    return Series("gauge", "saru_backend_active_servers", "Reals UP in the virtual service", ("proxy",),
                  [(name,) for name in per_proxy], list(per_proxy.values()))


def vrrp_series(snapshot: MetricsSnapshot) -> Iterator[Series]:
    """keepalived-exporter's VRRP series (no samples without ``[ha] mode = "vrrp"``)."""
    v = snapshot.vrrp
    labels = [] if v is None else [(str(v.vrid), v.interface)]
    values = [] if v is None else [
        v.state, v.become_master, v.release_master, v.adverts_received, v.adverts_sent, v.split_brain]
    for i, (kind, name, documentation) in enumerate((
        ("gauge", "saru_vrrp_state", "The VRRP state: 0 init, 1 backup, 2 master, 3 fault"),
        ("counter", "saru_vrrp_become_master_total", "Times this director became VRRP master"),
        ("counter", "saru_vrrp_release_master_total", "Times this director left the VRRP master state"),
        ("counter", "saru_vrrp_advertisements_received_total", "VRRP advertisements received"),
        ("counter", "saru_vrrp_advertisements_sent_total", "VRRP advertisements sent"),
        ("counter", "saru_vrrp_split_brain_total", "Split brains seen (another master while master)"),
    )):
        yield Series(kind, name, documentation, VRRP, labels, values[i:i + 1])


def daemon_series(snapshot: MetricsSnapshot) -> Iterator[Series]:
    """Reloads and the build."""
    yield Series("counter", "saru_config_reloads_total", "Configuration reloads by result", ("result",),
                 [("success",), ("failure",)], [snapshot.reloads_ok, snapshot.reloads_failed])
    yield Series("gauge", "saru_config_last_reload_success_timestamp_seconds", "When the configuration in "
                 "force was loaded (the start, or the last successful reload)", (), [()],
                 [snapshot.last_reload_success])
    yield Series("counter", "saru_check_local_faults_total", "Checks that could not run for a reason local to "
                 "the director (the real kept its state), by reason", ("reason",),
                 [(reason,) for reason, _ in snapshot.local_faults], [n for _, n in snapshot.local_faults])
    yield Series("gauge", "saru_alarm", "1 while an alarm is raised: local_fault (checks cannot run), panic "
                 "(a virtual keeps its last known set)", ("alarm",), [(name,) for name, _ in snapshot.alarms],
                 [1 if on else 0 for _, on in snapshot.alarms])
    yield Series("gauge", "saru_build_info", "Saru's version and the data plane it runs, always 1",
                 ("version", "dataplane"), [(snapshot.version, snapshot.dataplane)], [1])


def apply_histogram(snapshot: MetricsSnapshot) -> Metric:
    histogram = snapshot.apply_durations
    return HistogramMetricFamily("saru_dataplane_apply_duration_seconds", "Time a data-plane apply took (failed "
                                 "ones included)",
                                 buckets=[(floatToGoString(bound), count) for bound, count in histogram.buckets],
                                 sum_value=histogram.sum)


def ipvs_totals_series(snapshot: MetricsSnapshot) -> Iterator[Series]:
    """node_exporter's IPVS collector's totals (nftables and proxy planes only)."""
    view = snapshot.ipvs
    if view is None:
        return
    t = view.totals
    for name, documentation, value in (
        ("node_ipvs_connections_total", "The total number of connections made.", t.connections),
        ("node_ipvs_incoming_packets_total", "The total number of incoming packets.", t.packets_in),
        ("node_ipvs_outgoing_packets_total", "The total number of outgoing packets.", t.packets_out),
        ("node_ipvs_incoming_bytes_total", "The total amount of incoming data.", t.bytes_in),
        ("node_ipvs_outgoing_bytes_total", "The total amount of outgoing data.", t.bytes_out),
    ):
        yield Series("counter", name, documentation, (), [()], [value])


def small_series(snapshot: MetricsSnapshot) -> list[Series | Metric]:
    """The families between the reals' and the backends' (the histogram as a family)."""
    return [active_servers_series(snapshot), *vrrp_series(snapshot), *daemon_series(snapshot),
            apply_histogram(snapshot), *ipvs_totals_series(snapshot)]


def series(snapshot: MetricsSnapshot) -> list[Series | Metric]:
    """Every family of one snapshot, in the order they are written (the histogram as a family)."""
    backends = snapshot.ipvs.backends if snapshot.ipvs is not None else None
    return [*server_series(snapshot, server_labels(snapshot.servers)), *small_series(snapshot),
            *(row_series(BACKEND_FAMILIES, backends, backend_labels(backends), snapshot.now)
              if backends is not None else ())]


class SnapshotCollector:
    """A prometheus-client collector over the snapshot it is given (``snapshot``: the latest)."""

    def __init__(self, snapshot: MetricsSnapshot | None = None) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        if self.snapshot is not None:
            for each in series(self.snapshot):
                yield each.family() if isinstance(each, Series) else each


def render(snapshot: MetricsSnapshot) -> bytes:
    """The text exposition of one snapshot (pure): prometheus-client over a registry of its own."""
    registry = CollectorRegistry()
    registry.register(SnapshotCollector(snapshot))
    return generate_latest(registry)


class _One:
    """A collector of one family (prometheus-client writes a family at a time for the Exporter)."""

    def __init__(self, family: Metric) -> None:
        self.family = family

    def collect(self) -> Iterator[Metric]:
        yield self.family


def _write(family: Metric) -> list[str]:
    """prometheus-client's text of one family, as lines (the # HELP and # TYPE lines first)."""
    return generate_latest(_One(family)).decode().splitlines(keepends=True)


@dataclass
class _Written:
    labels: Sequence[Labels]
    values: list[float]
    lines: list[str]  # HELP, TYPE, then one line per row
    text: bytes  # the lines, encoded


def _prefix(line: str) -> bytes:
    """A sample line as prometheus-client wrote it, up to its value."""
    return line[:line.rindex(" ") + 1].encode()


@functools.lru_cache(maxsize=4096)
def _kept_text(value: float) -> bytes:
    return f"{floatToGoString(value)}\n".encode()


def _value(value: float) -> bytes:
    """prometheus-client's text of a sample's value, and the line's end (kept for the whole numbers
    and the positive fractions seen lately: counters, weights, check durations in milliseconds; a
    whole number and its float write the same text)."""
    if isinstance(value, int) or value > 0:  # (not -0.0, which the cache would take for 0.0)
        return _kept_text(value)
    return f"{floatToGoString(value)}\n".encode()


def _lines(prefixes: Sequence[bytes], texts: Iterable[bytes]) -> bytes:
    """Each line's prefix followed by its value's text, as one text: the two interleaved and joined
    once (twice as fast as a line made per row and the lines joined: 10,000 objects fewer)."""
    parts = [b""] * (2 * len(prefixes))
    parts[::2] = prefixes
    parts[1::2] = texts
    return b"".join(parts)


#: where a template's value goes (no line of the text format holds it: label values are escaped text)
MARK = b"\x00"


def _template(prefixes: Sequence[bytes]) -> bytes:
    """The prefixes in one text, each followed by MARK (b"" when a prefix holds MARK: not a template)."""
    text = MARK.join(prefixes) + MARK
    return text if text.count(MARK) == len(prefixes) else b""


_UNSET = object()
#: label sets prometheus-client writes in one step of ``Exporter.slices`` (~4 ms for 64 reals' 14
#: check classes)
SLICE = 64
#: seconds of slices a scrape does before it lets the event loop's other work in (a loop that is behind
#: gets one turn per yield: few long turns, not many short ones)
TURN = 0.1
#: fewer new label sets than this are written at once, without slices
SLICES_ABOVE = 2000
#: rows of a row family in one block of the answer (``saru.api.blocks``: its text and its gzip member
#: are made again only when one of its rows shows another value)
CHUNK = 500
_ONE, _ZERO = _value(1.0), _value(0.0)


class _Kept(Generic[Row]):
    """One row family as prometheus-client wrote it: its HELP and TYPE lines, each label set's line
    prefix (or prefixes: one per ``one_hot`` name), and each row's text with the value it shows, in
    blocks of ``CHUNK`` rows (a block is made again when one of its rows changed)."""

    def __init__(self, family: RowFamily[Row]) -> None:
        self.family: RowFamily[Row] = family
        self.header = Block(b"")
        self._prefixes: dict[Labels, tuple[bytes, ...]] = {}  # one prefix, or one per one_hot name
        self._rows: list[tuple[bytes, ...]] = []
        self._index = {name: k for k, name in enumerate(family.one_hot or ())}
        self.shown: list[object] = []
        self.parts: list[bytes] = []
        self.timed: set[int] = set()  # rows whose value changes with the time
        self._chunks: list[Block | None] = []  # None: to be made again
        self._since: list[float] = []  # (age_of) each row's time
        self._prefix: list[bytes] = []  # (age_of, beside) each row's prefix
        self._chunk_ages: list[object] = []  # (age_of) the ages each block shows: one, or one per row
        #: (age_of) each block's prefixes in one text, each followed by MARK (made when first needed)
        self._templates: list[bytes | None] = []

    def missing(self, labels: Sequence[Labels]) -> list[Labels]:
        """The label sets of ``labels`` prometheus-client has not written for this family."""
        return list(dict.fromkeys(label for label in labels if label not in self._prefixes))

    def learn(self, missing: Sequence[Labels]) -> None:
        """prometheus-client writes these label sets' lines (and the family's HELP and TYPE lines)."""
        f = self.family
        maker = GaugeMetricFamily if f.kind == "gauge" else CounterMetricFamily
        family = maker(f.name, f.documentation, labels=f.labelnames)
        names = f.one_hot or ()
        new: Labels
        for new in missing:
            if not names:
                family.add_metric(new, 0)
            for name in names:
                family.add_metric([*new, name], 0)
        lines = _write(family)
        per = max(1, len(names))
        if len(lines) != len(missing) * per + 2:
            raise AssertionError(f"{f.name}: {len(lines) - 2} lines written for {len(missing)} rows")
        header = "".join(lines[:2]).encode()
        if header != self.header.text:
            self.header = Block(header)
        for k, label in enumerate(missing):
            self._prefixes[label] = tuple(map(_prefix, lines[2 + k * per:2 + (k + 1) * per]))

    def relabel(self, labels: Sequence[Labels]) -> None:
        """The rows are now these label sets (those not written yet are, now)."""
        missing = self.missing(labels)
        if missing or not self.header.text:
            self.learn(missing)
        if len(self._prefixes) > 2 * len(labels):  # those in use (reals that left the table and come back
            self._prefixes = {label: self._prefixes[label] for label in labels}  # keep theirs until then)
        self._rows = [self._prefixes[label] for label in labels]
        self.shown = [_UNSET] * len(labels)
        self.parts = [b""] * len(labels)
        self.timed = set()
        self._chunks = [None] * -(-len(labels) // CHUNK)
        if self.family.age_of is not None or self.family.beside is not None:
            self._prefix = [p[0] for p in self._rows]
        if self.family.age_of is not None:
            self._since = [0.0] * len(labels)
            self._chunk_ages = [None] * len(self._chunks)
            self._templates = [None] * len(self._chunks)

    def show(self, i: int, value: Shown) -> None:
        """Row ``i`` shows ``value`` (None: no line)."""
        if value == self.shown[i]:
            return
        self.shown[i] = value
        self._chunks[i // CHUNK] = None
        if value is None:
            self.parts[i] = b""
        elif self.family.one_hot is None:
            self.parts[i] = self._rows[i][0] + _value(value)  # type: ignore[arg-type]  # a number
        else:
            k = self._index[value]  # type: ignore[index]  # one of the names
            self.parts[i] = b"".join(p + (_ONE if j == k else _ZERO) for j, p in enumerate(self._rows[i]))

    def show_rows(self, indices: Sequence[int], rows: Sequence[Row], now: float) -> None:
        """Rows ``indices`` are now ``rows``: each shows its value at ``now``."""
        if self.family.age_of is not None:  # every row shows an age: show_timed writes them all next
            since = self._since
            for i, time_ in zip(indices, map(operator.attrgetter(self.family.age_of), rows), strict=True):
                since[i] = time_
            return
        shown, timed = self.shown, self.family.timed
        if timed is not None:
            for i, row in zip(indices, rows, strict=True):
                if timed(row):
                    self.timed.add(i)
                else:
                    self.timed.discard(i)
            if len(self.timed) == len(shown):  # every row (every real down): show_timed writes them all next
                return
        values = self.family.column(rows, now)
        if values == [shown[i] for i in indices]:  # (most families show the same for a real checked again)
            return
        if self.family.one_hot is not None:
            for i, v in zip(indices, values, strict=True):
                if v != shown[i]:
                    self.show(i, v)
            return
        parts, prefixes, chunks = self.parts, self._rows, self._chunks  # (show, inlined: a number or None)
        for i, v in zip(indices, values, strict=True):
            if v != shown[i]:
                shown[i] = v
                chunks[i // CHUNK] = None
                parts[i] = b"" if v is None else prefixes[i][0] + _value(v)  # type: ignore[arg-type]

    def show_timed(self, rows: Sequence[Row], now: float) -> None:
        """The rows whose value changes with the time show theirs at ``now`` (``show``, inlined: with
        an age per real, that is every real on every scrape, so then a block at a time, and each
        value's text made once)."""
        if self.family.age_of is not None:
            self._show_ages(now)
            return
        if not self.timed:
            return
        shown, parts, prefixes, chunks = self.shown, self.parts, self._rows, self._chunks
        if len(self.timed) < len(rows):  # a few (the downtime of the reals that are down)
            indices = sorted(self.timed)
            for i, v in zip(indices, self.family.column([rows[i] for i in indices], now), strict=True):
                self.show(i, v)
            return
        values = self.family.column(rows, now)
        texts = {v: _value(v) for v in set(values)}  # type: ignore[arg-type]  # numbers
        for c in range(len(chunks)):
            start, end = c * CHUNK, (c + 1) * CHUNK
            new = values[start:end]
            if new != shown[start:end]:
                shown[start:end] = new
                parts[start:end] = [p[0] + texts[v] for p, v in zip(prefixes[start:end], new, strict=True)]
                chunks[c] = None

    def _show_ages(self, now: float) -> None:
        """Every row's age at ``now`` (whole seconds since its ``age_of`` time), a block at a time: a block
        whose rows share one time (most of them: the reals that have not changed since the start) is
        its value's text put after each of the rows' prefixes in one step (the block's prefixes are kept
        as one text with a MARK after each, which the value's text replaces: one contiguous text read,
        where joining 500 prefixes read 500 objects, cold in a daemon busy with checks); a block is
        made again only when what it shows changed."""
        since, chunks, shown, prefixes = self._since, self._chunks, self._chunk_ages, self._prefix
        templates = self._templates
        for c in range(len(chunks)):
            start, end = c * CHUNK, (c + 1) * CHUNK
            times = since[start:end]
            distinct = set(times)
            ages: object
            if len(distinct) == 1:
                ages = round(now - distinct.pop())
                if ages == shown[c] and chunks[c] is not None:
                    continue
                text = _value(ages)
                template = templates[c]
                if template is None:
                    template = templates[c] = _template(prefixes[start:end])
                chunks[c] = Block(template.replace(MARK, text) if template else text.join(prefixes[start:end]) + text)
            else:
                ages = [round(now - t) for t in times]
                if ages == shown[c] and chunks[c] is not None:
                    continue
                texts = {age: _value(age) for age in set(ages)}
                chunks[c] = Block(_lines(prefixes[start:end], map(texts.__getitem__, ages)))
            shown[c] = ages

    def show_beside(self, values: Sequence[Shown]) -> None:
        """Every row shows its value in ``values`` (a column beside the rows, ``RowFamily.beside``: the
        check durations, many of which change from one scrape to the next), a block at a time: a block
        whose values all stay is kept; another is written again in one step, each value's text made
        once (numbers, or None: no line)."""
        shown, chunks, prefixes = self.shown, self._chunks, self._prefix
        values = list(values)
        texts: dict[Shown, bytes] | None = None
        for c in range(len(chunks)):
            start, end = c * CHUNK, (c + 1) * CHUNK
            new = values[start:end]
            if new == shown[start:end] and chunks[c] is not None:
                continue
            shown[start:end] = new
            if texts is None:  # (once: a few hundred values among 10,000 reals)
                texts = {v: b"" if v is None else _value(v) for v in set(values)}  # type: ignore[arg-type]
            if None in texts and None in new:  # (some reals show no check: no line for them)
                text = b"".join([p + texts[v] for p, v in zip(prefixes[start:end], new, strict=True) if v is not None])
            else:
                text = _lines(prefixes[start:end], map(texts.__getitem__, new))
            chunks[c] = Block(text)

    def blocks(self) -> list[Block]:
        """The family's text: its HELP and TYPE lines, then its blocks of rows (those with lines)."""
        found = [self.header]
        for c, block in enumerate(self._chunks):
            if block is None:
                block = self._chunks[c] = Block(b"".join(self.parts[c * CHUNK:(c + 1) * CHUNK]))
            if block.text:
                found.append(block)
        return found


class _RowFamilies(Generic[Row]):
    """The row families of one kind of row (reals, backends), kept from scrape to scrape: a row that
    is the same object as last time shows the same values (but the timed ones); new label sets are
    written by prometheus-client, values by its ``floatToGoString``."""

    def __init__(self, families: Sequence[RowFamily[Row]], labels_of: Callable[[Sequence[Row]], list[Labels]],
                 named: Callable[[Row], object]) -> None:
        self._kept: list[_Kept[Row]] = [_Kept(f) for f in families]
        self._labels_of: Callable[[Sequence[Row]], list[Labels]] = labels_of
        self._named_by: Callable[[Row], object] = named
        self._rows: Sequence[Row] = ()
        self._started = False
        self._named: tuple[Sequence[Row], list[Labels]] | None = None  # rows and their label sets
        self._found: tuple[Sequence[Row], tuple[list[int], bool]] | None = None  # rows and what _changed found
        self._seen: tuple[int, int] | None = None  # (source, sequence) of the rows shown last (Moved)

    def _changed(self, rows: Sequence[Row], moved: Moved | None) -> tuple[list[int], bool]:
        """The rows that are not the objects they were last time, and whether a label set changed
        (found once for ``slices`` and ``blocks`` of the same rows): those ``moved`` lists when they
        are the next update of the rows shown last (kept rows never rename a row), else found by
        identity."""
        if self._found is not None and self._found[0] is rows:
            return self._found[1]
        old = self._rows
        if len(rows) != len(old) or not self._started:
            found = list(range(len(rows))), True
        elif moved is not None and self._seen == (moved.source, moved.sequence - 1):
            found = sorted(moved.rows), False
        elif rows is old:  # (the backends, while the table and counters stay)
            found = [], False
        else:
            changed = list(itertools.compress(range(len(rows)), map(operator.is_not, rows, old)))
            named = self._named_by
            found = changed, list(map(named, [rows[i] for i in changed])) != list(map(named, [old[i] for i in changed]))
        self._found = (rows, found)
        return found

    def _labels(self, rows: Sequence[Row]) -> list[Labels]:
        if self._named is None or self._named[0] is not rows:
            self._named = (rows, self._labels_of(rows))
        return self._named[1]

    def slices(self, rows: Sequence[Row], moved: Moved | None = None) -> Iterator[None]:
        """Have prometheus-client write the lines of new label sets ``SLICE`` rows at a time, one step of
        the iterator per slice (``blocks`` then finds them written)."""
        if not self._changed(rows, moved)[1]:
            return
        labels = self._labels(rows)
        missing = [kept.missing(labels) for kept in self._kept]
        if sum(map(len, missing)) < SLICES_ABOVE:
            return  # a few: blocks() writes them at once
        for kept, new in zip(self._kept, missing, strict=True):
            for start in range(0, len(new), SLICE):
                kept.learn(new[start:start + SLICE])
                yield

    def blocks(self, rows: Sequence[Row], now: float, moved: Moved | None = None,
               beside: Beside | None = None) -> list[Block]:
        """The families' blocks for ``rows`` at ``now`` (``moved``: which rows changed, when the rows are
        kept ones; ``beside``: the columns beside the rows)."""
        changed, relabel = self._changed(rows, moved)
        self._seen = (moved.source, moved.sequence) if moved is not None else None
        if relabel:
            labels = self._labels(rows)
            for kept in self._kept:
                kept.relabel(labels)
            changed = list(range(len(rows)))
            self._started = True
        self._named = self._found = None
        self._rows = rows
        changed_rows = [rows[i] for i in changed]
        for kept in self._kept:
            if kept.family.beside is not None:
                kept.show_beside((beside or {})[kept.family.beside])
            else:
                kept.show_rows(changed, changed_rows, now)
                kept.show_timed(rows, now)
        return [block for kept in self._kept for block in kept.blocks()]


class Exporter:
    """Renders scrape after scrape, having prometheus-client write only what is new (module docstring)."""

    def __init__(self) -> None:
        self._servers: _RowFamilies[ServerMetrics] = _RowFamilies(SERVER_FAMILIES, server_labels, SERVER_NAMED)
        self._backends: _RowFamilies[BackendMetrics] = _RowFamilies(BACKEND_FAMILIES, backend_labels,
                                                                     BACKEND_NAMED)
        self._written: dict[str, _Written] = {}
        self._small = Block(b"")  # the families between the reals' and the backends', in one block

    def slices(self, snapshot: MetricsSnapshot) -> Iterator[None]:
        """The costly part of the next ``render`` (prometheus-client writing the lines of label sets it
        has not written: every line on the first scrape), done in steps a caller can pause between."""
        yield from self._servers.slices(snapshot.servers, snapshot.servers_moved)
        if snapshot.ipvs is not None:
            yield from self._backends.slices(snapshot.ipvs.backends)

    def blocks(self, snapshot: MetricsSnapshot) -> list[Block]:
        """The text of the snapshot as blocks (``saru.api.blocks``): those whose text is unchanged
        since the last scrape are the same objects (their gzip members are not made again)."""
        out = self._servers.blocks(snapshot.servers, snapshot.now, snapshot.servers_moved, server_beside(snapshot))
        small = b"".join([self._text(each) if isinstance(each, Series) else generate_latest(_One(each))
                          for each in small_series(snapshot)])
        if small != self._small.text:
            self._small = Block(small)
        out.append(self._small)
        if snapshot.ipvs is not None:
            out.extend(self._backends.blocks(snapshot.ipvs.backends, snapshot.now))
        return out

    def render(self, snapshot: MetricsSnapshot) -> bytes:
        """The text of the snapshot (``blocks``, joined)."""
        return b"".join([block.text for block in self.blocks(snapshot)])

    def _text(self, s: Series) -> bytes:
        """A small family: written again where its values changed."""
        values = list(s.values)
        known = self._written.get(s.name)
        if known is not None and known.values == values and known.labels == s.labels:
            return known.text
        if known is None or known.labels != s.labels:
            lines = _write(s.family())
            if len(lines) != len(values) + 2:  # one line per row, as prometheus-client writes gauges, counters
                raise AssertionError(f"{s.name}: {len(lines) - 2} lines written for {len(values)} rows")
        else:
            lines = known.lines
            for i, (old, new) in enumerate(zip(known.values, values, strict=True)):
                if old != new:
                    lines[i + 2] = f"{lines[i + 2].rpartition(' ')[0]} {floatToGoString(new)}\n"
        text = "".join(lines).encode()
        self._written[s.name] = _Written(list(s.labels), values, lines, text)
        return text


_pauses = 0  # scrapes under way that paused the garbage collector


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector paused for the block (concurrent blocks: until the last one ends;
    left alone when something else disabled it)."""
    global _pauses
    if _pauses == 0 and not gc.isenabled():
        yield
        return
    _pauses += 1
    gc.disable()
    try:
        yield
    finally:
        _pauses -= 1
        if _pauses == 0:
            gc.enable()


def metrics_handler(service: MetricsSource) -> Handler:
    """The aiohttp handler of ``GET /metrics`` over the service layer. One scrape at a time uses the
    exporter; the lines of new label sets (every line on the first scrape, or after a reload) are
    written in slices, the event loop's other work let in every ``TURN`` seconds (``Exporter.slices``),
    so that a scrape does not hold the loop for seconds (the checks go on). A worker thread was
    measured worse: it takes the GIL from the loop's short I/O steps (docs/metrics.md). After a scrape
    that wrote new lines in slices, the heap is settled (``saru.daemon.heap.settle``): those lines live
    as long as the config, and full collections walking them took ~10 ms after every scrape. The
    answer is gzipped for a request that accepts it (``saru.api.blocks.send_blocks``)."""
    exporter, gzipped = Exporter(), Gzipped()
    one_at_a_time = asyncio.Lock()

    async def handle(request: web.Request) -> web.StreamResponse:
        async with one_at_a_time:
            wrote = False
            with gc_paused():
                snapshot = await service.metrics_snapshot()
                turn_ends = time.monotonic() + TURN
                for _ in exporter.slices(snapshot):
                    wrote = True
                    if time.monotonic() >= turn_ends:
                        await asyncio.sleep(0)
                        turn_ends = time.monotonic() + TURN
                blocks = exporter.blocks(snapshot)
            if wrote:  # the lines of thousands of label sets, kept from now on: out of the collector's way
                settle()
        return await send_blocks(request, blocks, {"Content-Type": CONTENT_TYPE}, gzipped)  # blocks do not change

    return handle
