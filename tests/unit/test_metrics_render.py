"""``saru.api.metrics.render`` on snapshots built by ``saru.daemon.metrics_snapshot.build`` from a real
config, the planner's table and check results fed to the real statistics: every metric of the issue's
contract is there, with the contract's labels, IPv6 in brackets, one 0/1 series per state, nothing of
node_ipvs on IPVS."""

from __future__ import annotations

import dataclasses
import gc
import gzip
import math
import zlib

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from saru.api import metrics
from saru.api.metrics import CLASSES, CONTENT_TYPE, Exporter, gc_paused, metrics_handler, render
from saru.config.ldirectord import parse_text
from saru.daemon.histogram import Histogram
from saru.daemon.metrics_snapshot import MetricsSnapshot, ServerMetrics, build, verdict
from saru.daemon.realstats import RealStats
from saru.dataplane.base import DestStats, ServiceStats
from saru.ha.node import HASnapshot
from saru.model import CheckResult, CheckSpec, Override, RealRef
from saru.monitor import MAINTENANCE_MESSAGE
from saru.planner import desired_table, real_ref

CONFIG = """\
quiescent=no
virtual=10.0.0.1:80
\treal=10.0.0.2:80 masq 3
\treal=10.0.0.3:80 masq 1
\treal=10.0.0.4:80 masq 0
\tchecktype=negotiate
\tservice=http
\trequest="/check"
\treceive="ok"
virtual6=[2001:db8::1]:443
\treal6=[2001:db8::2]:443 masq 1
\treal6=[2001:db8::3]:443 masq 1
\tchecktype=connect
\tquiescent=yes
virtual=7
\treal=10.0.0.9:0 gate 2
\tchecktype=off
\tprotocol=fwm
"""

#: every series name of the contract (counters with their _total)
CONTRACT = {
    "saru_server_status", "saru_server_weight", "saru_server_check_status", "saru_server_check_duration_seconds",
    "saru_server_check_failures_total", "saru_server_check_up_down_total", "saru_server_check_last_change_seconds",
    "saru_server_downtime_seconds_total", "saru_server_connections_active", "saru_server_connections_inactive",
    "saru_backend_active_servers", "saru_vrrp_state", "saru_vrrp_become_master_total",
    "saru_vrrp_release_master_total", "saru_vrrp_advertisements_received_total",
    "saru_vrrp_advertisements_sent_total", "saru_vrrp_split_brain_total", "saru_config_reloads_total",
    "saru_config_last_reload_success_timestamp_seconds", "saru_dataplane_apply_duration_seconds_bucket",
    "saru_dataplane_apply_duration_seconds_sum", "saru_dataplane_apply_duration_seconds_count", "saru_build_info",
}
IPVS_SHAPED = {
    "node_ipvs_connections_total", "node_ipvs_incoming_packets_total", "node_ipvs_outgoing_packets_total",
    "node_ipvs_incoming_bytes_total", "node_ipvs_outgoing_bytes_total", "node_ipvs_backend_connections_active",
    "node_ipvs_backend_connections_inactive", "node_ipvs_backend_weight",
}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


HA: HASnapshot = {  # type: ignore[typeddict-item]  # the fields the metrics read
    "mode": "vrrp", "state": "master", "vrid": 51, "interface": "eth0",
    "vrrp": {"adverts_received": 7, "adverts_sent": 120, "other_master_seen": 1},
    "events": {"split_brains": 1, "transitions": 3}, "become_master": 2, "release_master": 1,
}


def snapshot(dataplane: str = "nft", ha: HASnapshot | None = HA,
             overrides: dict[RealRef, Override] | None = None) -> tuple[MetricsSnapshot, Clock]:
    config = parse_text(CONFIG, "test.cf")
    v4 = config.virtuals[0]
    refs = {f"{r.address}:{r.port}": real_ref(v, r) for v in config.virtuals for r in v.reals}
    clock = Clock()
    realstats = RealStats(clock)
    http = CheckSpec("negotiate", "http", "tcp", "10.0.0.3", 80)
    connect = CheckSpec("connect", "none", "tcp", "2001:db8::2", 443)
    ok = CheckResult(ok=True, message="HTTP 200 OK", latency=0.012, layer="L7")
    fail = CheckResult(ok=False, message="HTTP 503 Service Unavailable", latency=0.5, layer="L7", failure="status")
    realstats.record(refs["10.0.0.2:80"], http, ok, True)
    realstats.record(refs["10.0.0.4:80"], http, ok, True)  # configured weight 0: DRAIN
    realstats.record(refs["2001:db8::2:443"], connect, CheckResult(ok=False, message="connection refused",
                                                                    latency=0.001, layer="L4", failure="connect"),
                     False)  # down (kept at weight 0: quiescent)
    realstats.record(refs["2001:db8::3:443"], connect, CheckResult(ok=False, message=MAINTENANCE_MESSAGE), False)
    # 10.0.0.9 (checktype off): no result
    realstats.record(refs["10.0.0.3:80"], http, ok, True)
    clock.now += 10
    realstats.record(refs["10.0.0.3:80"], http, fail, False)  # down at 1010
    clock.now += 5
    realstats.record(refs["10.0.0.3:80"], http, fail, False)
    clock.now += 25  # 1040: down 30 s, changed 30 s ago
    up = {ref: True for ref in (refs["10.0.0.2:80"], refs["10.0.0.4:80"])}
    down = {ref: False for ref in (refs["10.0.0.3:80"], refs["2001:db8::2:443"], refs["2001:db8::3:443"])}
    table = desired_table(config, {**up, **down})
    stats = {v4.key: ServiceStats(connections=40, bytes_in=4000, bytes_out=9000, packets_in=80, packets_out=70,
                                  dests={("10.0.0.2", 80): DestStats(active_connections=5, inactive_connections=2,
                                                                     connections=40)})}
    durations = Histogram()
    for seconds in (0.0004, 0.003, 0.2, 20.0):
        durations.observe(seconds)
    snap = build(version="9.9.9", dataplane=dataplane, config=config, table=table, stats=stats,
                 realstats=realstats, rewrite=True, ha=ha, reloads_ok=2, reloads_failed=1,
                 last_reload_success=1_700_000_000.5, apply_durations=durations.snapshot(),
                 overrides=overrides)
    return snap, clock


def samples(text: bytes) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    found: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in found, f"duplicate series {key}"
            found[key] = s.value
    return found


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return found[(name, frozenset(labels.items()))]


def test_every_contract_metric_is_rendered_with_its_labels() -> None:
    found = samples(render(snapshot()[0]))
    names = {name for name, _ in found}
    assert CONTRACT | IPVS_SHAPED <= names, sorted((CONTRACT | IPVS_SHAPED) - names)
    labels_of: dict[str, set[str]] = {}
    for name, labels in found:
        labels_of.setdefault(name, set()).update(k for k, _ in labels)
    for name in names:
        if name.startswith("saru_server_"):
            expected = {"proxy", "server", "state"} if name.endswith("status") else {"proxy", "server"}
            assert labels_of[name] == expected, name
        if name.startswith("saru_vrrp_"):
            assert labels_of[name] == {"vrid", "interface"}, name
    assert labels_of["saru_backend_active_servers"] == {"proxy"}
    assert labels_of["saru_build_info"] == {"version", "dataplane"}
    assert labels_of["saru_config_reloads_total"] == {"result"}
    assert labels_of["node_ipvs_backend_weight"] == {"local_address", "local_port", "remote_address",
                                                     "remote_port", "proto", "local_mark"}


def test_status_is_one_zero_or_one_series_per_state_with_promex_meanings() -> None:
    found = samples(render(snapshot()[0]))
    expected = {
        ("tcp/10.0.0.1:80", "10.0.0.2:80"): "UP",
        ("tcp/10.0.0.1:80", "10.0.0.3:80"): "DOWN",
        ("tcp/10.0.0.1:80", "10.0.0.4:80"): "DRAIN",  # weight 0 in the config
        ("tcp/[2001:db8::1]:443", "[2001:db8::2]:443"): "DOWN",  # quiescent (weight 0) but down
        ("tcp/[2001:db8::1]:443", "[2001:db8::3]:443"): "MAINT",  # maintenancedir
        ("fwmark/7", "10.0.0.9:0"): "DOWN",  # unchecked and not in the table
    }
    for (proxy, server), state in expected.items():
        for each in ("UP", "DOWN", "DRAIN", "MAINT"):
            assert value(found, "saru_server_status", proxy=proxy, server=server, state=each) == (each == state), \
                (proxy, server, each)
    assert value(found, "saru_backend_active_servers", proxy="tcp/10.0.0.1:80") == 1
    assert value(found, "saru_backend_active_servers", proxy="tcp/[2001:db8::1]:443") == 0
    assert value(found, "saru_backend_active_servers", proxy="fwmark/7") == 0
    assert value(found, "saru_server_weight", proxy="tcp/10.0.0.1:80", server="10.0.0.2:80") == 3
    assert value(found, "saru_server_weight", proxy="tcp/10.0.0.1:80", server="10.0.0.3:80") == 0
    assert value(found, "saru_server_connections_active", proxy="tcp/10.0.0.1:80", server="10.0.0.2:80") == 5
    assert value(found, "saru_server_connections_inactive", proxy="tcp/10.0.0.1:80", server="10.0.0.2:80") == 2


def test_operator_drain_and_disable_show_as_drain_and_maint() -> None:
    config = parse_text(CONFIG, "test.cf")
    v4 = config.virtuals[0]
    overrides = {real_ref(v4, v4.reals[0]): Override("drain"), real_ref(v4, v4.reals[1]): Override("disable")}
    found = samples(render(snapshot(overrides=overrides)[0]))
    assert value(found, "saru_server_status", proxy="tcp/10.0.0.1:80", server="10.0.0.2:80", state="DRAIN") == 1
    assert value(found, "saru_server_status", proxy="tcp/10.0.0.1:80", server="10.0.0.3:80", state="MAINT") == 1


def test_verdicts_of_unchecked_reals() -> None:
    """checktype=on is up and off has no verdict, whatever results came before a reload changed it."""
    assert verdict(False, "on") is True
    assert verdict(True, "off") is None
    assert verdict(False, "negotiate") is False and verdict(None, "connect") is None


def test_check_series() -> None:
    found = samples(render(snapshot()[0]))
    v4 = "tcp/10.0.0.1:80"

    def check_class(proxy: str, server: str) -> list[str]:
        return [c for c in CLASSES if value(found, "saru_server_check_status", proxy=proxy, server=server, state=c)]

    assert check_class(v4, "10.0.0.2:80") == ["L7OK"]
    assert check_class(v4, "10.0.0.3:80") == ["L7STS"]
    assert check_class("tcp/[2001:db8::1]:443", "[2001:db8::2]:443") == ["L4CON"]
    # no check ran: in maintenance, or checktype off — no class, no duration
    for server in ("[2001:db8::3]:443", "10.0.0.9:0"):
        assert not any(n == "saru_server_check_status" and ("server", server) in labels for n, labels in found)
        assert not any(n == "saru_server_check_duration_seconds" and ("server", server) in labels
                       for n, labels in found)
    assert value(found, "saru_server_check_duration_seconds", proxy=v4, server="10.0.0.3:80") == 0.5
    assert value(found, "saru_server_check_failures_total", proxy=v4, server="10.0.0.3:80") == 2
    assert value(found, "saru_server_check_up_down_total", proxy=v4, server="10.0.0.3:80") == 1
    assert value(found, "saru_server_check_last_change_seconds", proxy=v4, server="10.0.0.3:80") == 30
    assert value(found, "saru_server_downtime_seconds_total", proxy=v4, server="10.0.0.3:80") == 30
    # a real the tracker never heard of: no failures, changed "at the start" (40 s ago)
    assert value(found, "saru_server_check_last_change_seconds", proxy=v4, server="10.0.0.2:80") == 40
    assert value(found, "saru_server_check_failures_total", proxy=v4, server="10.0.0.2:80") == 0


def test_vrrp_reload_histogram_and_build_series() -> None:
    found = samples(render(snapshot()[0]))
    vrrp = {"vrid": "51", "interface": "eth0"}
    assert value(found, "saru_vrrp_state", **vrrp) == 2
    assert value(found, "saru_vrrp_become_master_total", **vrrp) == 2
    assert value(found, "saru_vrrp_release_master_total", **vrrp) == 1
    assert value(found, "saru_vrrp_advertisements_received_total", **vrrp) == 7
    assert value(found, "saru_vrrp_advertisements_sent_total", **vrrp) == 120
    assert value(found, "saru_vrrp_split_brain_total", **vrrp) == 1
    assert value(found, "saru_config_reloads_total", result="success") == 2
    assert value(found, "saru_config_reloads_total", result="failure") == 1
    assert value(found, "saru_config_last_reload_success_timestamp_seconds") == 1_700_000_000.5
    assert value(found, "saru_build_info", version="9.9.9", dataplane="nft") == 1
    hist = "saru_dataplane_apply_duration_seconds"
    assert value(found, f"{hist}_bucket", le="0.0005") == 1
    assert value(found, f"{hist}_bucket", le="0.005") == 2
    assert value(found, f"{hist}_bucket", le="0.25") == 3
    assert value(found, f"{hist}_bucket", le="10.0") == 3
    assert value(found, f"{hist}_bucket", le="+Inf") == 4
    assert value(found, f"{hist}_count") == 4
    assert math.isclose(value(found, f"{hist}_sum"), 20.2034)


def test_no_vrrp_samples_without_ha_and_no_node_ipvs_on_ipvs() -> None:
    text = render(snapshot(dataplane="ipvs", ha=None)[0])
    found = samples(text)
    assert not any(name.startswith(("saru_vrrp_", "node_ipvs_")) for name, _ in found)
    assert b"# TYPE saru_vrrp_state gauge" in text  # the family is described, with no series
    assert b"node_ipvs" not in text


def test_node_ipvs_series_have_node_exporters_shape() -> None:
    found = samples(render(snapshot()[0]))
    assert value(found, "node_ipvs_connections_total") == 40
    assert value(found, "node_ipvs_incoming_packets_total") == 80
    assert value(found, "node_ipvs_outgoing_packets_total") == 70
    assert value(found, "node_ipvs_incoming_bytes_total") == 4000
    assert value(found, "node_ipvs_outgoing_bytes_total") == 9000
    backend = {"local_address": "10.0.0.1", "local_port": "80", "remote_address": "10.0.0.2",
               "remote_port": "80", "proto": "TCP", "local_mark": ""}
    assert value(found, "node_ipvs_backend_connections_active", **backend) == 5
    assert value(found, "node_ipvs_backend_connections_inactive", **backend) == 2
    assert value(found, "node_ipvs_backend_weight", **backend) == 3
    v6 = {**backend, "local_address": "2001:db8::1", "local_port": "443", "remote_address": "2001:db8::2",
          "remote_port": "443"}
    assert value(found, "node_ipvs_backend_weight", **v6) == 0  # quiescent
    # the firewall-mark service: no address, port 0, the mark as /proc/net/ip_vs prints it
    weights = {labels: v for (name, labels), v in found.items() if name == "node_ipvs_backend_weight"}
    assert not any(("proto", "FWM") in labels for labels in weights)  # checktype off, not in the table yet


def test_firewall_mark_backend_labels() -> None:
    config = parse_text(CONFIG, "test.cf")
    fwm = config.virtuals[2]
    table = desired_table(config, {real_ref(fwm, fwm.reals[0]): True})
    snap = build(version="1", dataplane="proxy", config=config, table=table, stats={},
                 realstats=RealStats(), rewrite=True, ha=None, reloads_ok=0, reloads_failed=0,
                 last_reload_success=0.0, apply_durations=Histogram().snapshot())
    found = samples(render(snap))
    assert value(found, "node_ipvs_backend_weight", local_address="", local_port="0", remote_address="10.0.0.9",
                 remote_port="0", proto="FWM", local_mark="00000007") == 2


async def test_handler_answers_text_or_the_same_text_gzipped() -> None:
    """Over a real aiohttp server: a plain request gets render()'s text; one accepting gzip (as
    Prometheus always does) gets it gzipped, one member, before and after a change."""
    snap = snapshot()[0]

    class Service:
        async def metrics_snapshot(self) -> MetricsSnapshot:
            return snap

    app = web.Application()
    app.router.add_get("/metrics", metrics_handler(Service()))
    async with TestClient(TestServer(app, host="127.0.0.1"), auto_decompress=False) as client:
        plain = await client.get("/metrics", headers={"Accept-Encoding": "identity"})
        assert plain.status == 200 and plain.headers["Content-Type"] == CONTENT_TYPE
        assert "Content-Encoding" not in plain.headers and plain.headers["Vary"] == "Accept-Encoding"
        assert await plain.read() == render(snap)

        packed = await client.get("/metrics", headers={"Accept-Encoding": "gzip"})
        assert packed.headers["Content-Encoding"] == "gzip" and packed.headers["Content-Type"] == CONTENT_TYPE
        first = await packed.read()
        one = zlib.decompressobj(16 + zlib.MAX_WBITS)
        assert one.decompress(first) == render(snap) and one.eof and not one.unused_data

        snap = dataclasses.replace(snap, check_durations=(0.125, *snap.check_durations[1:]))
        again = await (await client.get("/metrics", headers={"Accept-Encoding": "deflate, gzip;q=0.5"})).read()
        assert gzip.decompress(again) == render(snap) != gzip.decompress(first)
    assert gc.isenabled()


async def test_a_scrape_that_wrote_lines_in_slices_settles_the_heap(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first scrape of many reals writes every line in slices; those live as long as the config,
    so the heap is settled after it (moved out of the collector's way: ``gc.freeze``)."""
    snap = snapshot()[0]

    class Service:
        async def metrics_snapshot(self) -> MetricsSnapshot:
            return snap

    monkeypatch.setattr(metrics, "SLICES_ABOVE", 0)  # this snapshot's few reals written in slices
    app = web.Application()
    app.router.add_get("/metrics", metrics_handler(Service()))
    gc.unfreeze()
    try:
        assert gc.get_freeze_count() == 0
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            assert await (await client.get("/metrics")).read() == render(snap)
            assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_the_collector_is_paused_during_scrapes_and_only_then() -> None:
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():  # a second scrape at the same time
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()  # someone else's: left as it is
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


@pytest.mark.parametrize("registry_name", ["REGISTRY"])
def test_the_default_registry_is_left_alone(registry_name: str) -> None:
    import prometheus_client

    before = set(getattr(prometheus_client, registry_name)._names_to_collectors)
    render(snapshot()[0])
    assert not any(name.startswith("saru_") for name in before)
    assert set(getattr(prometheus_client, registry_name)._names_to_collectors) == before


def test_the_exporter_writes_what_render_writes_scrape_after_scrape() -> None:
    """The exporter rewrites only changed lines: its text must stay render()'s as values, the set of
    checked reals and the set of reals change."""
    first, _ = snapshot()
    exporter = Exporter()
    assert exporter.render(first) == render(first)
    assert exporter.render(first) == render(first)  # all from what was written
    servers, durations = list(first.servers), list(first.check_durations)
    servers[0] = servers[0]._replace(state="DOWN", weight=0, check_class="L4TOUT", failures=9,
                                     last_change=first.now, down_since=first.now)
    servers[4] = servers[4]._replace(check_class="L4CON")  # now checked
    durations[0], durations[4] = 5.0, 0.25
    changed = dataclasses.replace(first, servers=tuple(servers), check_durations=tuple(durations),
                                  reloads_failed=5)
    assert exporter.render(changed) == render(changed)
    fewer = dataclasses.replace(changed, servers=tuple(servers[1:]),  # a reload removed a real
                                check_durations=tuple(durations[1:]))
    assert exporter.render(fewer) == render(fewer)
    later = dataclasses.replace(fewer, now=fewer.now + 7.6)  # the ages grow, rows unchanged
    assert exporter.render(later) == render(later)
    assert first.ipvs is not None
    backends = first.ipvs.backends
    moved = dataclasses.replace(first, ipvs=dataclasses.replace(first.ipvs, backends=(
        backends[1]._replace(weight=7), *backends[2:], backends[0]._replace(remote_port=8080))))
    assert exporter.render(moved) == render(moved)  # a backend left, one came, one changed
    back = dataclasses.replace(first, servers=tuple(ServerMetrics(*s) for s in first.servers))
    assert exporter.render(back) == render(first)


def test_local_fault_counter_and_alarm_gauges() -> None:
    base, _ = snapshot()
    quiet = samples(render(base))
    assert value(quiet, "saru_check_local_faults_total", reason="emfile") == 0  # every reason, from the start
    snap = dataclasses.replace(base, local_faults=(("emfile", 3), ("no_route", 0)),
                               alarms=(("local_fault", True), ("panic", False)))
    found = samples(render(snap))
    assert value(found, "saru_check_local_faults_total", reason="emfile") == 3
    assert value(found, "saru_alarm", alarm="local_fault") == 1
    assert value(found, "saru_alarm", alarm="panic") == 0
