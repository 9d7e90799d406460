"""The planner's operator layer (pure): drain, disable and an operator weight on top of health."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from saru.model import Dest, FallbackConfig, Override, RealConfig, RealRef, Service, VirtualConfig
from saru.planner import plan_service

R1 = RealConfig("10.0.0.1", 80, "masq", weight=2)
R2 = RealConfig("10.0.0.2", 80, "masq", weight=3)
FALLBACK = FallbackConfig("127.0.0.1", 80, "masq")


def virtual(**kw: object) -> VirtualConfig:
    base: dict[str, object] = dict(protocol="tcp", address="192.168.5.55", port=80, scheduler="wrr",
                                   reals=(R1, R2))
    base.update(kw)
    return VirtualConfig(**base)  # type: ignore[arg-type]


def refs(v: VirtualConfig) -> tuple[RealRef, RealRef]:
    a, b = (RealRef(v.key, r.address, r.port) for r in v.reals)
    return a, b


def weights(service: Service) -> dict[str, int]:
    return {address: dest.weight for (address, _port), dest in service.dests.items()}


def test_drain_keeps_an_up_real_at_weight_zero() -> None:
    v = virtual()
    a, b = refs(v)
    svc = plan_service(v, {a: True, b: True}, overrides={a: Override("drain")})
    assert weights(svc) == {"10.0.0.1": 0, "10.0.0.2": 3}


def test_disable_removes_an_up_real_even_when_quiescent() -> None:
    v = virtual(quiescent=True)
    a, b = refs(v)
    svc = plan_service(v, {a: True, b: False}, overrides={a: Override("disable")})
    assert weights(svc) == {"10.0.0.2": 0}


def test_operator_weight_replaces_the_configured_one_while_up() -> None:
    v = virtual()
    a, b = refs(v)
    over = {b: Override("weight", weight=7)}
    assert weights(plan_service(v, {a: True, b: True}, overrides=over)) == {"10.0.0.1": 2, "10.0.0.2": 7}
    assert weights(plan_service(v, {a: True, b: False}, overrides=over)) == {"10.0.0.1": 2}  # down: out


def test_health_still_wins_over_a_drain() -> None:
    v = virtual()
    a, b = refs(v)
    assert weights(plan_service(v, {a: False, b: True}, overrides={a: Override("drain")})) == {"10.0.0.2": 3}


def test_adopted_real_takes_the_override_weight() -> None:
    v = virtual()
    a, b = refs(v)
    current = Service(v.key, dests={("10.0.0.1", 80): Dest("10.0.0.1", 80, "masq", 2)})
    svc = plan_service(v, {b: True}, current, overrides={a: Override("drain")})
    assert weights(svc) == {"10.0.0.1": 0, "10.0.0.2": 3}
    assert weights(plan_service(v, {b: True}, current, overrides={a: Override("disable")})) == {"10.0.0.2": 3}


def test_fallback_when_every_real_is_drained_or_disabled() -> None:
    v = virtual(fallback=FALLBACK)
    a, b = refs(v)
    over = {a: Override("drain"), b: Override("disable")}
    svc = plan_service(v, {a: True, b: True}, overrides=over)
    assert weights(svc) == {"10.0.0.1": 0, "127.0.0.1": 1}
    assert "127.0.0.1" not in weights(plan_service(v, {a: True, b: True}, overrides={b: Override("disable")}))


def test_enable_is_no_override() -> None:
    v = virtual()
    a, b = refs(v)
    assert plan_service(v, {a: True, b: True}, overrides={}) == plan_service(v, {a: True, b: True})


@given(st.sampled_from([True, False, None]), st.sampled_from([True, False, None]),
       st.sampled_from(["drain", "disable", "weight", None]), st.booleans())
def test_overrides_never_add_a_real_health_keeps_out(up_a: bool | None, up_b: bool | None,
                                                     state: str | None, quiescent: bool) -> None:
    """Whatever the override: a real absent without it is absent with it (an override never brings a
    down real in), a disabled real is never in, and only the overridden real changes."""
    v = virtual(quiescent=quiescent)
    a, b = refs(v)
    health = {ref: up for ref, up in ((a, up_a), (b, up_b)) if up is not None}
    plain = plan_service(v, health)
    over = {} if state is None else {a: Override(state, weight=5 if state == "weight" else None)}  # type: ignore[arg-type]
    planned = plan_service(v, health, overrides=over)
    assert set(planned.dests) <= set(plain.dests)
    if state == "disable":
        assert ("10.0.0.1", 80) not in planned.dests
    assert planned.dests.get(("10.0.0.2", 80)) == plain.dests.get(("10.0.0.2", 80))
