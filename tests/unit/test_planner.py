"""Planner: desired table from config + health (pure)."""

from saru.model import (
    Config,
    Dest,
    FallbackConfig,
    GlobalConfig,
    RealConfig,
    RealRef,
    Service,
    Table,
    VirtualConfig,
)
from saru.planner import desired_table, fallback_active, plan_service

R1 = RealConfig("10.0.0.1", 80, "gate", weight=2)
R2 = RealConfig("10.0.0.2", 80, "gate", weight=3, lower_threshold=5, upper_threshold=100)


def virtual(**kw):
    base = dict(protocol="tcp", address="192.168.5.55", port=80, scheduler="rr", reals=(R1, R2))
    base.update(kw)
    return VirtualConfig(**base)


def refs(v):
    return [RealRef(v.key, r.address, r.port) for r in v.reals]


def test_up_reals_get_their_weight_and_thresholds():
    v = virtual()
    a, b = refs(v)
    svc = plan_service(v, {a: True, b: True})
    assert svc.dests == {
        ("10.0.0.1", 80): Dest("10.0.0.1", 80, "gate", 2),
        ("10.0.0.2", 80): Dest("10.0.0.2", 80, "gate", 3, upper_threshold=100, lower_threshold=5),
    }
    assert svc.settings.scheduler == "rr"


def test_down_real_is_removed_or_quiesced():
    v = virtual()
    a, b = refs(v)
    assert set(plan_service(v, {a: True, b: False}).dests) == {("10.0.0.1", 80)}
    q = virtual(quiescent=True)
    a, b = refs(q)
    dests = plan_service(q, {a: True, b: False}).dests
    assert dests[("10.0.0.2", 80)].weight == 0
    assert dests[("10.0.0.1", 80)].weight == 2


def test_fallback_only_when_no_real_is_up():
    v = virtual(fallback=FallbackConfig("127.0.0.1", 80, "gate"))
    a, b = refs(v)
    assert ("127.0.0.1", 80) not in plan_service(v, {a: False, b: True}).dests
    svc = plan_service(v, {a: False, b: False})
    assert svc.dests == {("127.0.0.1", 80): Dest("127.0.0.1", 80, "gate", 1)}
    config = Config("x", GlobalConfig(), (v,))
    assert fallback_active(config, Table.of([svc])) == {v.key: True}


def test_quiescent_reals_at_weight_zero_do_not_count_as_up_for_fallback():
    v = virtual(quiescent=True, fallback=FallbackConfig("127.0.0.1", 80, "gate"))
    a, b = refs(v)
    dests = plan_service(v, {a: False, b: False}).dests
    assert dests[("127.0.0.1", 80)].weight == 1
    assert dests[("10.0.0.1", 80)].weight == 0


def test_unknown_health_adopts_the_current_table():
    v = virtual()
    _a, _b = refs(v)
    current = Service(v.key, dests={("10.0.0.1", 80): Dest("10.0.0.1", 80, "gate", 7)})
    svc = plan_service(v, {}, current)
    assert svc.dests == {("10.0.0.1", 80): Dest("10.0.0.1", 80, "gate", 7)}
    assert plan_service(v, {}, None).dests == {}


def test_checktype_on_is_always_up():
    v = virtual(checktype="on")
    a, b = refs(v)
    assert len(plan_service(v, {a: False, b: None}).dests) == 2


def test_gate_ports_follow_the_virtual_port_in_kernel_planes_only():
    v = virtual(reals=(RealConfig("10.0.0.1", 8080, "gate"), RealConfig("10.0.0.2", 8080, "masq")))
    a, b = refs(v)
    kernel = plan_service(v, {a: True, b: True}, kernel_ports=True).dests
    assert set(kernel) == {("10.0.0.1", 80), ("10.0.0.2", 8080)}
    proxy = plan_service(v, {a: True, b: True}, kernel_ports=False).dests
    assert set(proxy) == {("10.0.0.1", 8080), ("10.0.0.2", 8080)}


def test_persistence_netmask_and_ops_only_where_they_apply():
    v = virtual(netmask="255.255.255.0", ops=True)
    s = plan_service(v, {}).settings
    assert s.persistent is None and s.netmask is None and s.ops is False
    u = virtual(protocol="udp", persistent=300, netmask="255.255.255.0", ops=True)
    s = plan_service(u, {}).settings
    assert (s.persistent, s.netmask, s.ops) == (300, "255.255.255.0", True)


def test_desired_table_has_one_service_per_virtual():
    v1 = virtual()
    v2 = virtual(port=443)
    table = desired_table(Config("x", GlobalConfig(), (v1, v2)), {})
    assert set(table.services) == {v1.key, v2.key}


def test_fallback_waits_for_first_verdicts_at_cold_start():
    v = virtual(fallback=FallbackConfig("127.0.0.1", 80, "gate"))
    a, _b = refs(v)
    assert plan_service(v, {a: False}).dests == {}  # b not checked yet: no fallback flap
    kept = Service(v.key, dests={("127.0.0.1", 80): Dest("127.0.0.1", 80, "gate", 1)})
    assert ("127.0.0.1", 80) in plan_service(v, {a: False}, kept).dests  # adopted fallback stays
    off = virtual(checktype="off", fallback=FallbackConfig("127.0.0.1", 80, "gate"))
    assert ("127.0.0.1", 80) in plan_service(off, {}).dests  # checktype off: fallback still added


def test_settings_are_canonical_like_a_data_plane_reads_them_back():
    s = plan_service(virtual(persistent=60, netmask="255.255.255.255", scheduler="sh",
                             schedflags="sh-port, sh-fallback"), {}).settings
    assert (s.netmask, s.schedflags) == (None, "sh-fallback,sh-port")
    s = plan_service(virtual(persistent=60, netmask="255.255.255.0"), {}).settings
    assert s.netmask == "255.255.255.0"
