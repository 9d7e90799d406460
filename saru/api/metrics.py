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
by prometheus-client's own number formatter (``floatToGoString``). The text is byte for byte
``render``'s (tests/unit/test_metrics_render.py holds the two to it). The garbage collector is paused
while a scrape runs (``gc_paused``): the snapshot's objects, tens of thousands for 10,000 reals, are
freed when the scrape ends, instead of being promoted on the way and setting off a full collection of
the daemon's heap.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import NamedTuple, Protocol

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import CollectorRegistry
from prometheus_client.utils import floatToGoString

from saru.api.names import proxy_name, server_name
from saru.checks.result_class import RESULT_CLASSES
from saru.daemon.metrics_snapshot import STATES, MetricsSnapshot, ServerMetrics
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


Keys = tuple[list[tuple[str, int]], list[tuple[ServiceKey, int]]]


@dataclass
class Names:
    """The label values of the reals: (proxy, server) each, and the per-state and per-class sets."""

    keys: Keys
    servers: list[Labels]
    states: list[Labels] = field(init=False)
    classes: list[Labels] = field(init=False)

    def __post_init__(self) -> None:
        self.states = [(*n, state) for n in self.servers for state in STATES]
        self.classes = [(*n, name) for n in self.servers for name in CLASSES]


def server_keys(servers: Sequence[ServerMetrics]) -> Keys:
    """What the reals' names are made of, cheap to compare from one scrape to the next: (address, port)
    of each (the config's own objects) and each virtual with its number of reals, in order."""
    services: list[tuple[ServiceKey, int]] = []
    previous: ServiceKey | None = None
    count = 0
    for s in servers:
        if s.service is not previous:  # one key object per virtual in a snapshot
            if previous is not None:
                services.append((previous, count))
            previous, count = s.service, 0
        count += 1
    if previous is not None:
        services.append((previous, count))
    return [(s.address, s.port) for s in servers], services


def names_of(servers: Sequence[ServerMetrics], keys: Keys | None = None) -> Names:
    proxies: dict[ServiceKey, str] = {}
    named: list[Labels] = []
    for s in servers:
        proxy = proxies.get(s.service)
        if proxy is None:
            proxy = proxies[s.service] = proxy_name(s.service)
        named.append((proxy, server_name(s.address, s.port)))
    return Names(keys if keys is not None else server_keys(servers), named)


def _one_hot(names: Sequence[str]) -> dict[str, tuple[float, ...]]:
    """Each name's 0/1 values over ``names`` (1 for itself)."""
    return {name: tuple(float(name == other) for other in names) for name in names}


STATE_VALUES = _one_hot(STATES)
CLASS_VALUES = _one_hot(CLASSES)


def server_series(snapshot: MetricsSnapshot, names: Names) -> Iterator[Series]:
    """``saru_server_*`` (one series per real, and per state/class) and ``saru_backend_active_servers``."""
    servers = snapshot.servers
    yield Series("gauge", "saru_server_status", "The real's state: 1 for the state it is in (UP, DOWN, DRAIN: "
                 "weight 0 in service, MAINT: maintenance or disabled), 0 for the others", (*SERVER, "state"),
                 names.states, list(chain.from_iterable(STATE_VALUES[s.state] for s in servers)))
    yield Series("gauge", "saru_server_weight", "The real's weight in the data plane (0 when it is not in the "
                 "table)", SERVER, names.servers, [s.weight for s in servers])
    checked = [i for i, s in enumerate(servers) if s.check_class is not None]
    n = len(CLASSES)
    yield Series("gauge", "saru_server_check_status", "The class of the real's last check result: 1 for its "
                 "class, 0 for the others", (*SERVER, "state"),
                 names.classes if len(checked) == len(servers) else
                 [names.classes[i * n + k] for i in checked for k in range(n)],
                 list(chain.from_iterable(CLASS_VALUES[servers[i].check_class or ""] for i in checked)))
    timed = [i for i, s in enumerate(servers) if s.check_duration is not None]
    yield Series("gauge", "saru_server_check_duration_seconds", "How long the real's last check took", SERVER,
                 [names.servers[i] for i in timed], [servers[i].check_duration or 0.0 for i in timed])
    yield Series("counter", "saru_server_check_failures_total", "Failed checks of the real", SERVER,
                 names.servers, [s.failures for s in servers])
    yield Series("counter", "saru_server_check_up_down_total", "The real's transitions from UP to DOWN", SERVER,
                 names.servers, [s.up_down for s in servers])
    yield Series("gauge", "saru_server_check_last_change_seconds", "Seconds since the real last went UP or DOWN "
                 "(since the daemon started when it has not)", SERVER, names.servers,
                 [round(s.last_change_age) for s in servers])
    yield Series("counter", "saru_server_downtime_seconds_total", "Seconds the real has been DOWN", SERVER,
                 names.servers, [round(s.downtime) for s in servers])
    yield Series("gauge", "saru_server_connections_active", "The real's active connections", SERVER,
                 names.servers, [s.active for s in servers])
    yield Series("gauge", "saru_server_connections_inactive", "The real's inactive connections", SERVER,
                 names.servers, [s.inactive for s in servers])
    per_proxy: dict[str, int] = {}
    for key, count in snapshot.active_servers:  # both families of a firewall mark share one name
        name = proxy_name(key)
        per_proxy[name] = per_proxy.get(name, 0) + count
    yield Series("gauge", "saru_backend_active_servers", "Reals UP in the virtual service", ("proxy",),
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


def ipvs_series(snapshot: MetricsSnapshot) -> Iterator[Series]:
    """node_exporter's IPVS collector's series (nftables and proxy planes only)."""
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
    backends = view.backends
    labels = [(b.local_address, str(b.local_port), b.remote_address, str(b.remote_port), b.proto, b.local_mark)
              for b in backends]
    for name, documentation, values in (
        ("node_ipvs_backend_connections_active", "The current active connections by local and remote address.",
         [b.active for b in backends]),
        ("node_ipvs_backend_connections_inactive", "The current inactive connections by local and remote "
         "address.", [b.inactive for b in backends]),
        ("node_ipvs_backend_weight", "The current backend weight by local and remote address.",
         [b.weight for b in backends]),
    ):
        yield Series("gauge", name, documentation, IPVS_BACKEND, labels, values)


def series(snapshot: MetricsSnapshot, names: Names | None = None) -> list[Series | Metric]:
    """Every family of one snapshot, in the order they are written (the histogram as a family)."""
    found: list[Series | Metric] = [*server_series(snapshot, names or names_of(snapshot.servers)),
                                    *vrrp_series(snapshot), *daemon_series(snapshot), apply_histogram(snapshot),
                                    *ipvs_series(snapshot)]
    return found


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


class Exporter:
    """Renders scrape after scrape, having prometheus-client write only what changed (module docstring)."""

    def __init__(self) -> None:
        self._names: Names | None = None
        self._written: dict[str, _Written] = {}

    def render(self, snapshot: MetricsSnapshot) -> bytes:
        keys = server_keys(snapshot.servers)
        if self._names is None or self._names.keys != keys:
            self._names = names_of(snapshot.servers, keys)
            self._written.clear()
        out: list[bytes] = []
        for each in series(snapshot, self._names):
            if isinstance(each, Series):
                out.append(self._text(each))
            else:
                out.append(generate_latest(_One(each)))
        return b"".join(out)

    def _text(self, s: Series) -> bytes:
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
        self._written[s.name] = _Written(s.labels, values, lines, text)
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
    """The aiohttp handler of ``GET /metrics`` over the service layer."""
    exporter = Exporter()

    async def handle(_request: web.Request) -> web.StreamResponse:
        with gc_paused():
            body = exporter.render(await service.metrics_snapshot())
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    return handle
