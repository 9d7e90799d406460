"""VRRPv3 codec and state machine (saru.ha.vrrp): keepalived's own bytes, bad packets, RFC 5798 timing,
Saru's preempt/degraded rule, resign/takeover/veto, and a two-router simulation as a property test."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from saru.ha.vrrp import (
    Action,
    Advert,
    Cause,
    Machine,
    SendAdvert,
    SetTimer,
    State,
    Transition,
    VRRPError,
    WantMaster,
    checksum,
    decode_advert,
    early_veto_lead,
    encode_advert,
    master_down_interval,
    skew_time,
)

# Captured with tcpdump from keepalived 2.2.7 (Debian, vrrp_version 3, vrid 51, priority 150,
# advert_int 0.1) in a test namespace; the VRRP payload after the IP header.
KA_V4 = bytes.fromhex("3133 9601 000a 433a 0a62 0032")
KA_V4_SRC, KA_V4_DST = "10.98.0.2", "224.0.0.18"
KA_V6 = bytes.fromhex("3133 9601 000a cecc fd00 0098 0000 0000 0000 0000 0000 0050")
KA_V6_SRC, KA_V6_DST = "fe80::9c7b:ecff:fee5:e58b", "ff02::12"


# --------------------------------------------------------------------------------------------------
# codec
# --------------------------------------------------------------------------------------------------


def test_decodes_keepalived_ipv4_advert() -> None:
    advert = decode_advert(KA_V4, KA_V4_SRC, KA_V4_DST)
    assert advert == Advert(vrid=51, priority=150, interval_cs=10, addresses=("10.98.0.50",))
    assert advert.interval == 0.1


def test_encodes_byte_for_byte_like_keepalived() -> None:
    assert encode_advert(Advert(51, 150, 10, ("10.98.0.50",)), KA_V4_SRC, KA_V4_DST) == KA_V4
    assert encode_advert(Advert(51, 150, 10, ("fd00:98::50",)), KA_V6_SRC, KA_V6_DST) == KA_V6


def test_decodes_keepalived_ipv6_advert() -> None:
    advert = decode_advert(KA_V6, KA_V6_SRC, KA_V6_DST)
    assert advert == Advert(vrid=51, priority=150, interval_cs=10, addresses=("fd00:98::50",))


def test_checksum_covers_the_pseudo_header() -> None:
    with pytest.raises(VRRPError) as err:
        decode_advert(KA_V4, "10.98.0.3", KA_V4_DST)  # same bytes, another source
    assert err.value.kind == "bad_checksum"
    with pytest.raises(VRRPError) as err:
        decode_advert(KA_V6, KA_V6_SRC, "ff02::1")
    assert err.value.kind == "bad_checksum"


def test_checksum_rfc1071_example() -> None:
    data = bytes.fromhex("0001f203f4f5f6f7")  # RFC 1071 section 3: sum ddf2, checksum 220d
    assert checksum(data) == 0x220D
    assert checksum(data + struct.pack("!H", 0x220D)) == 0


@pytest.mark.parametrize(("payload", "kind", "words"), [
    (KA_V4[:7], "malformed", "shorter than a VRRP header"),
    (bytes([0x21]) + KA_V4[1:], "bad_version", "version 2"),
    (bytes([0x32]) + KA_V4[1:], "malformed", "type 2"),
    (KA_V4[:1] + b"\0" + KA_V4[2:], "malformed", "virtual router id 0"),
    (KA_V4[:3] + b"\x02" + KA_V4[4:], "malformed", "do not match 2 IPv4"),
    (KA_V4 + b"\0\0\0\0", "malformed", "do not match 1 IPv4"),
    (KA_V4[:4] + b"\0\0" + KA_V4[6:], "malformed", "interval 0"),
    (KA_V4[:8] + b"\x0a\x62\x00\x33", "bad_checksum", "bad checksum 0x433a"),
])
def test_rejects_bad_packets_with_a_reason(payload: bytes, kind: str, words: str) -> None:
    with pytest.raises(VRRPError) as err:
        decode_advert(payload, KA_V4_SRC, KA_V4_DST)
    assert err.value.kind == kind
    assert words in err.value.reason


def test_rejects_mixed_families() -> None:
    with pytest.raises(VRRPError, match="one address family"):
        decode_advert(KA_V4, KA_V4_SRC, "ff02::12")
    with pytest.raises(VRRPError, match="is not IPv4"):
        encode_advert(Advert(51, 100, 10, ("fd00::1",)), "10.0.0.1", "224.0.0.18")


@pytest.mark.parametrize(("advert", "words"), [
    (Advert(0, 100, 10, ()), "router id 0"),
    (Advert(51, 256, 10, ()), "priority 256"),
    (Advert(51, 100, 0, ()), "interval 0"),
    (Advert(51, 100, 4096, ()), "interval 4096"),
    (Advert(51, 100, 10, ("10.0.0.1",) * 256), "256 addresses"),
])
def test_encode_refuses_what_cannot_be_sent(advert: Advert, words: str) -> None:
    with pytest.raises(VRRPError, match=words):
        encode_advert(advert, "10.0.0.1", "224.0.0.18")


ipv4s = st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))
ipv6s = st.integers(0, 2**128 - 1).map(lambda n: str(ipaddress.IPv6Address(n)))


@st.composite
def adverts(draw: st.DrawFn) -> tuple[Advert, str, str]:
    family = draw(st.sampled_from((ipv4s, ipv6s)))
    addresses = tuple(draw(st.lists(family, max_size=20)))
    advert = Advert(draw(st.integers(1, 255)), draw(st.integers(0, 255)), draw(st.integers(1, 4095)), addresses)
    return advert, draw(family), draw(family)


@given(adverts())
@settings(max_examples=300, deadline=None)
def test_round_trip(case: tuple[Advert, str, str]) -> None:
    advert, src, dst = case
    assert decode_advert(encode_advert(advert, src, dst), src, dst) == advert


@given(adverts(), st.data())
@settings(max_examples=300, deadline=None)
def test_any_single_bit_flip_is_rejected(case: tuple[Advert, str, str], data: st.DataObject) -> None:
    advert, src, dst = case
    payload = bytearray(encode_advert(advert, src, dst))
    bit = data.draw(st.integers(0, len(payload) * 8 - 1))
    payload[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(VRRPError):
        decode_advert(bytes(payload), src, dst)


@given(st.binary(max_size=120), st.one_of(st.tuples(ipv4s, ipv4s), st.tuples(ipv6s, ipv6s), st.tuples(ipv4s, ipv6s)))
@settings(max_examples=300, deadline=None)
def test_garbage_raises_only_vrrp_error(payload: bytes, ends: tuple[str, str]) -> None:
    src, dst = ends
    try:
        decode_advert(payload, src, dst)
    except VRRPError:
        pass


# --------------------------------------------------------------------------------------------------
# state machine
# --------------------------------------------------------------------------------------------------

ME, PEER, LOWER_PEER = "10.0.0.5", "10.0.0.9", "10.0.0.1"


def machine(priority: int = 100, **kwargs: object) -> Machine:
    return Machine(vrid=51, priority=priority, advert_interval=0.1, primary=ME, **kwargs)  # type: ignore[arg-type]


def ad(priority: int, interval_cs: int = 10) -> Advert:
    return Advert(51, priority, interval_cs, ("10.0.0.100",))


def deadline(actions: list[Action]) -> float | None:
    assert isinstance(actions[-1], SetTimer), actions
    return actions[-1].deadline


def transitions(actions: list[Action]) -> list[tuple[State, State]]:
    return [(a.old, a.new) for a in actions if isinstance(a, Transition)]


def sends(actions: list[Action]) -> list[int]:
    return [a.priority for a in actions if isinstance(a, SendAdvert)]


def to_master(m: Machine, now: float = 0.0) -> float:
    """Start ``m`` and let its down timer make it master; returns the time it became master."""
    when = deadline(m.start(now))
    assert when is not None
    assert any(isinstance(a, WantMaster) for a in m.timer(when))
    acts = m.confirm_master(when)
    assert transitions(acts) == [(State.BACKUP, State.MASTER)]
    return when


def test_rfc_timing_arithmetic() -> None:
    assert skew_time(100, 1.0) == pytest.approx(0.609375)
    assert master_down_interval(100, 1.0) == pytest.approx(3.609375)
    assert master_down_interval(100, 0.1) == pytest.approx(0.3609375)  # keepalived measured 0.35 s
    assert skew_time(254, 0.1) == pytest.approx(0.00078125)


def test_start_waits_master_down_then_asks_and_becomes_master() -> None:
    m = machine(100)
    acts = m.start(10.0)
    assert transitions(acts) == [(State.INIT, State.BACKUP)]
    assert deadline(acts) == pytest.approx(10.0 + 0.3609375)
    assert m.timer(10.2) == [SetTimer(deadline(acts))]  # early call: nothing happens
    acts = m.timer(10.4)
    assert [type(a) for a in acts] == [WantMaster, SetTimer] and deadline(acts) is None
    acts = m.confirm_master(10.41)
    assert sends(acts) == [100] and transitions(acts) == [(State.BACKUP, State.MASTER)]
    assert deadline(acts) == pytest.approx(10.51)
    assert m.master_address == ME
    acts = m.timer(10.51)
    assert sends(acts) == [100] and deadline(acts) == pytest.approx(10.61)


def test_backup_learns_the_masters_interval() -> None:
    m = machine(100)
    m.start(0.0)
    acts = m.receive(ad(200, interval_cs=100), PEER, 1.0)
    assert m.master_adver_interval == 1.0
    assert deadline(acts) == pytest.approx(1.0 + 3.609375)
    assert m.master_address == PEER


def test_priority_zero_means_takeover_after_skew() -> None:
    m = machine(100)
    m.start(0.0)
    m.receive(ad(200), PEER, 0.05)
    acts = m.receive(ad(0), PEER, 0.1)
    assert deadline(acts) == pytest.approx(0.1 + skew_time(100, 0.1))
    assert m.master_address is None
    acts = m.timer(0.2)
    assert isinstance(acts[0], WantMaster) and "resigned (priority 0)" in acts[0].reason


def test_master_yields_to_higher_priority_and_counts_it() -> None:
    m = machine(100)
    t = to_master(m)
    acts = m.receive(ad(101), PEER, t + 0.05)
    assert transitions(acts) == [(State.MASTER, State.BACKUP)] and sends(acts) == []
    assert "higher priority 101" in next(a.reason for a in acts if isinstance(a, Transition))
    assert deadline(acts) == pytest.approx(t + 0.05 + master_down_interval(100, 0.1))
    assert m.counters["other_master_seen"] == 1 and m.master_address == PEER


def test_equal_priority_tie_goes_to_the_higher_address() -> None:
    m = machine(100)
    t = to_master(m)
    acts = m.receive(ad(100), LOWER_PEER, t)  # 10.0.0.1 < 10.0.0.5: we stay, and answer at once
    assert transitions(acts) == [] and sends(acts) == [100]
    acts = m.receive(ad(100), PEER, t + 0.01)  # 10.0.0.9 > 10.0.0.5: we yield
    assert transitions(acts) == [(State.MASTER, State.BACKUP)]
    assert m.counters["other_master_seen"] == 2


def causes(actions: list[Action]) -> list[Cause]:
    return [a.cause for a in actions if isinstance(a, Transition)]


def test_every_transition_says_its_cause_as_a_value() -> None:
    """The node tells a split brain (yielding to an equal priority) from a handover by ``Cause``, not by
    reading the reason sentence."""
    m = machine(100)
    assert causes(m.start(0.0)) == [Cause.STARTUP]
    assert any(isinstance(a, WantMaster) for a in m.timer(1.0))
    assert causes(m.confirm_master(1.0)) == [Cause.MASTER_DOWN]
    assert causes(m.receive(ad(100), PEER, 1.01)) == [Cause.EQUAL_PRIORITY]  # the tie goes to the higher address
    assert causes(m.takeover(1.02)) == [Cause.TAKEOVER]
    assert causes(m.receive(ad(254), LOWER_PEER, 1.03)) == []  # equal 254 from a lower address: we stay
    assert causes(m.resign(5.0, 1.04)) == [Cause.RESIGNED]
    m = machine(100)
    t = to_master(m)
    assert causes(m.receive(ad(101), PEER, t + 0.01)) == [Cause.HIGHER_PRIORITY]
    assert causes(m.shutdown(t + 0.02)) == [Cause.SHUTDOWN]


def test_ipv6_tie_compares_addresses_numerically() -> None:
    m = Machine(vrid=51, priority=100, advert_interval=0.1, primary="fe80::9")
    to_master(m)
    assert transitions(m.receive(ad(100), "fe80::10", 1.0)) == [(State.MASTER, State.BACKUP)]  # 0x10 > 0x9


def test_master_keeps_sending_over_a_lower_priority_master() -> None:
    m = machine(100)
    t = to_master(m)
    acts = m.receive(ad(50), PEER, t + 0.01)
    assert transitions(acts) == [] and sends(acts) == [100]
    assert m.counters["other_master_seen"] == 1


def test_master_answers_priority_zero_with_an_advert() -> None:
    m = machine(100)
    t = to_master(m)
    acts = m.receive(ad(0), PEER, t + 0.01)
    assert sends(acts) == [100] and m.counters["other_master_seen"] == 0


def test_no_preempt_healthy_node_returning_never_takes_the_vip_back() -> None:
    m = machine(200)  # we have the higher configured priority ...
    m.start(0.0)
    t = 0.0
    for _ in range(50):  # ... but the master was there first, healthy at 100
        t += 0.1
        acts = m.receive(ad(100), PEER, t)
        assert deadline(acts) == pytest.approx(t + master_down_interval(200, 0.1))
    assert m.timer(t + 0.01) == [SetTimer(deadline(acts))]
    assert m.state is State.BACKUP


def test_no_preempt_degraded_master_hands_over() -> None:
    m = machine(100)
    m.start(0.0)
    m.receive(ad(150), PEER, 0.1)  # healthy peak 150
    m.receive(ad(120), PEER, 0.2)  # lower than its peak but not lower than ours: it stays master
    acts = m.receive(ad(50), PEER, 0.3)  # ping penalty: below ours and below its peak
    assert deadline(acts) == pytest.approx(0.2 + master_down_interval(100, 0.1))  # not re-armed
    m.receive(ad(50), PEER, 0.4)
    acts = m.timer(0.2 + master_down_interval(100, 0.1))
    assert isinstance(acts[0], WantMaster) and "degraded to priority 50 (from 150)" in acts[0].reason
    assert transitions(m.confirm_master(0.6)) == [(State.BACKUP, State.MASTER)]
    assert transitions(m.receive(ad(50), PEER, 0.65)) == []  # the degraded one yields to our 100


def test_no_preempt_takeover_priority_does_not_raise_the_peak() -> None:
    m = machine(150)
    m.start(0.0)
    m.receive(ad(254), PEER, 0.1)  # the peer's takeover ...
    acts = m.receive(ad(100), PEER, 0.2)  # ... ends at its own 100: not a degradation
    assert deadline(acts) == pytest.approx(0.2 + master_down_interval(150, 0.1))


def test_preempt_ignores_lower_priority_master() -> None:
    m = machine(150, preempt=True)
    m.start(0.0)
    acts = m.receive(ad(100), PEER, 0.1)
    assert deadline(acts) == pytest.approx(master_down_interval(150, 0.1))  # the startup timer runs on
    acts = m.timer(1.0)
    assert isinstance(acts[0], WantMaster) and "preempting" in acts[0].reason


def test_preempt_delay() -> None:
    m = machine(150, preempt=True, preempt_delay=2.0)
    m.start(0.0)
    for k in range(1, 21):  # a lower-priority master, first seen at 0.1, is accepted for 2 s
        t = k / 10
        acts = m.receive(ad(100), PEER, t)
        assert deadline(acts) == pytest.approx(t + master_down_interval(150, 0.1))
    acts = m.receive(ad(100), PEER, 2.15)
    assert deadline(acts) == pytest.approx(2.0 + master_down_interval(150, 0.1))  # now ignored
    m.receive(ad(200), PEER, 2.2)  # a higher one resets the delay
    acts = m.receive(ad(100), PEER, 2.3)
    assert deadline(acts) == pytest.approx(2.3 + master_down_interval(150, 0.1))


def test_shutdown_sends_priority_zero() -> None:
    m = machine(100)
    t = to_master(m)
    acts = m.shutdown(t + 1)
    assert sends(acts) == [0] and transitions(acts) == [(State.MASTER, State.INIT)] and deadline(acts) is None
    assert m.receive(ad(200), PEER, t + 2) == [SetTimer(None)]
    b = machine(100)
    b.start(0.0)
    acts = b.shutdown(0.1)
    assert sends(acts) == [] and transitions(acts) == [(State.BACKUP, State.INIT)]


def test_resign_holds_off_mastership() -> None:
    m = machine(100)
    t = to_master(m)
    acts = m.resign(5.0, t)
    assert sends(acts) == [0] and transitions(acts) == [(State.MASTER, State.BACKUP)]
    assert deadline(acts) == pytest.approx(t + 5.0)
    m.receive(ad(0), PEER, t + 1)  # nobody else wants it either: skew timer, but the hold wins
    acts = m.timer(t + 1.1)
    assert not any(isinstance(a, WantMaster) for a in acts) and deadline(acts) == pytest.approx(t + 5.0)
    assert isinstance(m.timer(t + 5.0)[0], WantMaster)


def test_takeover_advertises_254_until_the_other_is_quiet() -> None:
    m = machine(100)
    m.start(0.0)
    m.receive(ad(200), PEER, 0.1)
    acts = m.takeover(0.2)
    assert sends(acts) == [254] and transitions(acts) == [(State.BACKUP, State.MASTER)]
    acts = m.receive(ad(200), PEER, 0.25)  # 254 beats its 200; we answer at once
    assert transitions(acts) == [] and sends(acts) == [254]
    quiet = 0.25 + master_down_interval(100, 0.1)
    t, priorities = deadline(acts) or 0, []
    while t < quiet + 0.3:
        acts = m.timer(t)
        priorities.append(sends(acts)[0])
        t = deadline(acts) or 0
    assert priorities[0] == 254 and priorities[-1] == 100
    assert priorities == sorted(priorities, reverse=True)


def test_veto_keeps_backup_and_asks_again() -> None:
    m = machine(100)
    when = deadline(m.start(0.0))
    assert when is not None
    m.timer(when)
    acts = m.veto_master(when)
    assert transitions(acts) == [] and m.state is State.BACKUP
    assert deadline(acts) == pytest.approx(when + master_down_interval(100, 0.1))
    assert isinstance(m.timer(deadline(acts) or 0)[0], WantMaster)


def test_an_advert_during_the_veto_question_cancels_it() -> None:
    m = machine(100)
    when = deadline(m.start(0.0)) or 0
    m.timer(when)
    m.receive(ad(200), PEER, when + 0.01)  # a master appeared while VIPcheck ran
    assert m.confirm_master(when + 0.02) == [SetTimer(when + 0.01 + master_down_interval(100, 0.1))]
    assert m.state is State.BACKUP


def test_set_priority_clamps_and_master_announces_it() -> None:
    m = machine(100)
    t = to_master(m)
    assert sends(m.set_priority(-400, t)) == [1]
    assert sends(m.set_priority(999, t)) == [254]
    assert sends(m.set_priority(254, t)) == []


def test_other_vrid_and_init_are_ignored() -> None:
    m = machine(100)
    assert m.receive(ad(200), PEER, 0.0) == [SetTimer(None)]
    m.start(0.0)
    before = m.deadline
    assert m.receive(Advert(52, 200, 10, ()), PEER, 0.1) == [SetTimer(before)]


def test_bad_construction() -> None:
    with pytest.raises(ValueError, match="router id"):
        Machine(vrid=0, priority=100, advert_interval=0.1, primary=ME)
    with pytest.raises(ValueError, match="interval"):
        Machine(vrid=1, priority=100, advert_interval=41, primary=ME)


# --------------------------------------------------------------------------------------------------
# two routers on a lossless wire: whatever happens, one master emerges
# --------------------------------------------------------------------------------------------------


class Wire:
    """Routers whose adverts reach the others instantly; drives timers in time order."""

    def __init__(self, machines: list[Machine]) -> None:
        self.m = machines
        self.deadlines: list[float | None] = [None] * len(machines)
        self.now = 0.0

    def apply(self, i: int, actions: list[Action]) -> None:
        queue = [(i, a) for a in actions]
        while queue:
            j, action = queue.pop(0)
            if isinstance(action, SetTimer):
                self.deadlines[j] = action.deadline
            elif isinstance(action, WantMaster):
                queue += [(j, a) for a in self.m[j].confirm_master(self.now)]
            elif isinstance(action, SendAdvert):
                advert = Advert(51, action.priority, self.m[j].interval_cs, ())
                for k, other in enumerate(self.m):
                    if k != j:
                        queue += [(k, a) for a in other.receive(advert, str(self.m[j].primary), self.now)]

    def run_until(self, end: float) -> None:
        while True:
            pending = [(d, i) for i, d in enumerate(self.deadlines) if d is not None]
            if not pending or min(pending)[0] > end:
                self.now = end
                return
            self.now, i = min(pending)
            self.apply(i, self.m[i].timer(self.now))


events = st.lists(st.tuples(st.sampled_from(("prio", "resign", "takeover", "restart")), st.integers(0, 1),
                            st.integers(1, 254), st.floats(0.0, 1.0)), max_size=8)


@given(st.integers(1, 254), st.integers(1, 254), st.booleans(), st.booleans(), events)
@settings(max_examples=150, deadline=None)
def test_exactly_one_master_after_any_history(p0: int, p1: int, pre0: bool, pre1: bool,
                                              history: list[tuple[str, int, int, float]]) -> None:
    ms = [Machine(vrid=51, priority=p0, advert_interval=0.1, primary="10.0.0.1", preempt=pre0),
          Machine(vrid=51, priority=p1, advert_interval=0.1, primary="10.0.0.2", preempt=pre1)]
    wire = Wire(ms)
    for i, m in enumerate(ms):
        wire.apply(i, m.start(0.0))
    for kind, who, value, gap in history:
        wire.run_until(wire.now + gap)
        m = ms[who]
        if kind == "prio":
            wire.apply(who, m.set_priority(value, wire.now))
        elif kind == "resign":
            wire.apply(who, m.resign(value / 100, wire.now))
        elif kind == "takeover":
            wire.apply(who, m.takeover(wire.now))
        else:
            wire.apply(who, m.shutdown(wire.now))
            wire.apply(who, m.start(wire.now))
    wire.run_until(wire.now + 6.0)  # longer than any hold (2.54 s) + master-down intervals
    states = [m.state for m in ms]
    assert states.count(State.MASTER) == 1, states
    if pre0 and pre1 and ms[0].priority != ms[1].priority:
        assert ms[0 if ms[0].priority > ms[1].priority else 1].state is State.MASTER


# --------------------------------------------------------------------------------------------------
# the veto asked ahead of the Master_Down_Timer
# --------------------------------------------------------------------------------------------------


def test_early_veto_lead_with_the_defaults_and_tuned() -> None:
    down = master_down_interval(100, 0.1)  # 0.361 s
    assert early_veto_lead(down, 0.1, 0.2) == pytest.approx(down - 0.2)  # capped: two adverts missed first
    assert early_veto_lead(down, 0.1, 0.05) == 0.05  # all of a short VIPcheck fits ahead
    assert early_veto_lead(down, 0.1, 0.0) == 0.0  # no VIPcheck: nothing to ask ahead
    fast = master_down_interval(100, 0.02)
    assert early_veto_lead(fast, 0.02, 0.03) == pytest.approx(0.03)


@given(st.integers(1, 254), st.floats(0.01, 40.95), st.floats(0.0, 60.0))
def test_early_veto_lead_never_precedes_two_missed_adverts(priority: int, interval: float, veto: float) -> None:
    down = master_down_interval(priority, interval)
    lead = early_veto_lead(down, interval, veto)
    assert 0.0 <= lead <= veto
    assert down - lead >= 2 * interval - 1e-9


def test_a_vetoed_retry_asks_with_the_same_reason() -> None:
    """Regression (#14 §5): each veto appended "(after a veto)", the reason grew every 0.36 s."""
    m = machine(100)
    when = deadline(m.start(0.0))
    assert when is not None
    reasons = []
    for _ in range(5):
        asks = [a for a in m.timer(when) if isinstance(a, WantMaster)]
        assert len(asks) == 1
        reasons.append(asks[0].reason)
        when = deadline(m.veto_master(when))
        assert when is not None
    assert len(set(reasons)) == 1 and "veto" not in reasons[0]
