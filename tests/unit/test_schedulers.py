"""IPVS scheduling semantics of the userspace data planes (pure logic, no sockets)."""

from __future__ import annotations

import collections
import itertools

import pytest

from saru.dataplane.netmask import parse_netmask
from saru.dataplane.proxy.balancer import Balancer, check_settings
from saru.dataplane.proxy.schedulers import MH_TABLE_SIZE, SCHEDULERS
from saru.model import Dest, ServiceSettings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def balancer(scheduler: str, *weights: int, **settings: object) -> Balancer:
    b = Balancer(ServiceSettings(scheduler=scheduler, **settings), ("10.0.0.1", 80))  # type: ignore[arg-type]
    for i, w in enumerate(weights):
        b.set_dest(Dest(f"192.168.0.{i + 1}", 80, "masq", w))
    return b


def pick(b: Balancer, client: str = "10.1.1.1", port: int = 1234) -> str | None:
    """Schedule and immediately release: the name of the chosen real ('.1', '.2', …)."""
    chosen = b.schedule(client, port)
    if chosen is None:
        return None
    b.release(*chosen)
    return chosen[0].address.rsplit(".", 1)[1]


def test_every_ipvs_scheduler_is_known():
    every = {"rr", "wrr", "lc", "wlc", "sh", "dh", "sed", "nq", "mh", "fo", "ovf", "twos", "lblc", "lblcr"}
    assert set(SCHEDULERS) == every


def test_unknown_scheduler_and_bad_netmask_are_refused():
    with pytest.raises(ValueError, match="unknown scheduler"):
        check_settings(ServiceSettings(scheduler="lbl"))
    with pytest.raises(ValueError, match="netmask"):
        check_settings(ServiceSettings(persistent=60, netmask="255.0.x.0"))


def test_rr_exact_order_and_skips_weight_zero():
    b = balancer("rr", 1, 5, 0, 1)
    assert [pick(b) for _ in range(6)] == ["1", "2", "4", "1", "2", "4"]


def test_rr_cursor_survives_table_changes():
    b = balancer("rr", 1, 1, 1)
    assert [pick(b), pick(b)] == ["1", "2"]
    b.remove_dest(("192.168.0.2", 80))  # the cursor's real goes: continue after it
    assert pick(b) == "3"
    b.set_dest(Dest("192.168.0.4", 80))
    assert [pick(b) for _ in range(3)] == ["4", "1", "3"]


def test_wrr_interleaves_with_exact_ratio_per_cycle():
    b = balancer("wrr", 3, 1)
    assert [pick(b) for _ in range(8)] == ["1", "1", "1", "2"] * 2
    b = balancer("wrr", 4, 3, 2)
    counts = collections.Counter(pick(b) for _ in range(9 * 10))
    assert counts == {"1": 40, "2": 30, "3": 20}


def test_wrr_weight_zero_and_gcd():
    b = balancer("wrr", 4, 2, 0)
    assert [pick(b) for _ in range(6)] == ["1", "1", "2"] * 2  # gcd 2: a cycle is 4/2 + 2/2 picks
    counts = collections.Counter(pick(b) for _ in range(60))
    assert counts == {"1": 40, "2": 20}


def test_lc_and_wlc_pick_least_loaded():
    b = balancer("lc", 1, 1, 1)
    held = [b.schedule("10.1.1.1", p) for p in range(5)]
    assert collections.Counter(h[0].address for h in held if h) == {
        "192.168.0.1": 2, "192.168.0.2": 2, "192.168.0.3": 1,
    }
    b = balancer("wlc", 3, 1)
    held = [b.schedule("10.1.1.1", p) for p in range(8)]
    assert collections.Counter(h[0].address for h in held if h) == {"192.168.0.1": 6, "192.168.0.2": 2}
    # Releasing two of the first real's connections makes it the least loaded again.
    for h in [h for h in held if h and h[0].address == "192.168.0.1"][:3]:
        b.release(*h)
    assert pick(b) == "1"


def test_sed_and_nq():
    b = balancer("sed", 3, 1)
    # (active+1)/weight: first three connections go to weight 3 before weight 1 gets one.
    held = [b.schedule("10.1.1.1", p) for p in range(4)]
    assert [h[0].address[-1] for h in held if h] == ["1", "1", "1", "2"]  # 3/3 ties 1/1: first wins
    b = balancer("nq", 3, 1)
    held = [b.schedule("10.1.1.1", p) for p in range(2)]
    assert [h[0].address[-1] for h in held if h] == ["1", "2"]  # an idle real is used first


def test_fo_and_ovf():
    b = balancer("fo", 1, 5, 3)
    assert {pick(b) for _ in range(5)} == {"2"}
    b = balancer("ovf", 2, 1)
    held = [b.schedule("10.1.1.1", p) for p in range(5)]
    # ovf: highest weight while active <= weight, then the next.
    assert [h[0].address[-1] if h else None for h in held] == ["1", "1", "1", "2", "2"]


def test_weight_zero_never_gets_connections_in_any_scheduler():
    for name in SCHEDULERS:
        flags = {"sh": "sh-fallback", "mh": "mh-fallback"}.get(name)
        b = balancer(name, 0, 1, schedflags=flags)
        for i in range(50):
            got = pick(b, f"10.1.{i}.{i}", 1000 + i)
            assert got in ("2", None), name
            if name != "dh":
                assert got == "2", name


def test_twos_prefers_the_less_loaded_of_two_weighted_draws():
    b = balancer("twos", 1, 3)
    b.scheduler.random.seed(7)  # type: ignore[attr-defined]
    held = [b.schedule("10.0.0.1", p) for p in range(400)]
    counts = collections.Counter(h[0].address[-1] for h in held if h)
    # Two choices even the load out towards the weights: 1:3 of 400.
    assert abs(counts["2"] - 300) < 25, counts


def test_lblc_sticks_until_busy_then_moves():
    b = balancer("lblc", 2, 2)
    held = [b.schedule("10.0.0.1", p) for p in range(3)]
    assert [h[0].address[-1] for h in held if h] == ["1", "1", "1"]  # busy only once active > weight
    assert pick(b) == "2"  # .1 is busy (3 > 2) and .2 is under half its weight (0 * 2 < 2)
    b2 = balancer("lblc", 1, 1)
    first = pick(b2)
    b2.set_dest(Dest(f"192.168.0.{first}", 80, "masq", 0))
    assert pick(b2) not in (first, None)


def test_lblcr_grows_its_set_when_busy():
    b = balancer("lblcr", 1, 1, 1)
    held = [b.schedule("10.0.0.1", p) for p in range(2)]
    assert [h[0].address[-1] for h in held if h] == ["1", "1"]
    got = b.schedule("10.0.0.1", 3)  # .1: 2 active > weight 1 while others idle: add .2 to the set
    assert got is not None and got[0].address.endswith(".2")
    assert len(b.scheduler.members) == 2  # type: ignore[attr-defined]


def test_thresholds_overload_and_recover():
    b = Balancer(ServiceSettings(scheduler="rr"))
    b.set_dest(Dest("192.168.0.1", 80, "masq", 1, upper_threshold=2, lower_threshold=1))
    b.set_dest(Dest("192.168.0.2", 80, "masq", 1))
    held = [b.schedule("10.1.1.1", p) for p in range(4)]
    assert [h[0].address[-1] for h in held if h] == ["1", "2", "1", "2"]
    assert b.dests[("192.168.0.1", 80)].overloaded
    assert pick(b) == "2" and pick(b) == "2"
    for h in held:
        if h and h[0].address.endswith(".1"):
            b.release(*h)
    assert not b.dests[("192.168.0.1", 80)].overloaded


def test_sh_is_stable_per_source_and_spreads():
    b = balancer("sh", 1, 1, 1)
    clients = [f"10.{i // 250}.{i % 250}.7" for i in range(600)]
    first = {c: pick(b, c, 1) for c in clients}
    assert all(pick(b, c, p) == first[c] for c in clients[:100] for p in (2, 3))
    assert set(collections.Counter(first.values())) == {"1", "2", "3"}


def test_sh_without_fallback_refuses_when_its_real_is_quiesced():
    b = balancer("sh", 1, 1)
    clients = [f"10.0.{i}.1" for i in range(40)]
    before = {c: pick(b, c) for c in clients}
    b.set_dest(Dest("192.168.0.1", 80, "masq", 0))
    after = {c: pick(b, c) for c in clients}
    assert all(after[c] is None for c in clients if before[c] == "1")
    assert all(after[c] == "2" for c in clients if before[c] == "2")


def test_dh_sends_a_whole_service_to_one_real():
    b = balancer("dh", 1, 1, 1)
    assert len({pick(b, f"10.0.{i}.1", i) for i in range(50)}) == 1


def test_mh_stable_and_minimal_disruption():
    b = balancer("mh", *([1] * 10), schedflags="mh-fallback")
    table = b.scheduler.table  # type: ignore[attr-defined]
    assert len(table) == MH_TABLE_SIZE and None not in table
    share = collections.Counter(d.address for d in table)
    assert max(share.values()) - min(share.values()) <= 3  # Maglev: near-equal slots
    clients = [f"10.{i // 200}.{i % 200}.9" for i in range(4000)]
    before = {c: pick(b, c) for c in clients}
    assert all(pick(b, c, 9) == before[c] for c in clients[:200])
    b.remove_dest(("192.168.0.4", 80))
    after = {c: pick(b, c) for c in clients}
    kept = [c for c in clients if before[c] != "4"]
    moved = sum(after[c] != before[c] for c in kept)
    # Only the removed real's flows must move; Maglev moves a few others (~0.6 % here).
    assert all(after[c] != "4" for c in clients)
    assert moved / len(kept) < 0.02, moved / len(kept)


def test_mh_quiesced_real_keeps_its_slots():
    b = balancer("mh", 1, 1, 1, schedflags="mh-fallback")
    clients = [f"10.{i // 200}.{i % 200}.3" for i in range(300)]
    before = {c: pick(b, c) for c in clients}
    b.set_dest(Dest("192.168.0.2", 80, "masq", 0))
    after = {c: pick(b, c) for c in clients}
    assert all(after[c] == before[c] for c in clients if before[c] != "2")
    assert all(after[c] in ("1", "3") for c in clients)


def test_mh_weights():
    b = balancer("mh", 3, 1)
    share = collections.Counter(d.address for d in b.scheduler.table)  # type: ignore[attr-defined]
    assert abs(share["192.168.0.1"] / MH_TABLE_SIZE - 0.75) < 0.02


def test_persistence_sticks_while_connected_and_expires_after_timeout():
    clock = Clock()
    b = Balancer(ServiceSettings(scheduler="rr", persistent=60, netmask="255.255.255.0"), clock=clock)
    for i in (1, 2):
        b.set_dest(Dest(f"192.168.0.{i}", 80))
    a = b.schedule("10.1.1.1", 1000)
    assert a is not None
    first = a[0]
    # Same /24, other ports and hosts: same real, long after the timeout while a connection is open.
    clock.now += 3600
    for host, port in (("10.1.1.1", 1001), ("10.1.1.200", 5)):
        got = b.schedule(host, port)
        assert got is not None and got[0] is first
        b.release(*got)
    other = b.schedule("10.1.2.1", 1)  # another /24 is scheduled normally (rr → the other real)
    assert other is not None and other[0] is not first
    b.release(*a)  # last connection closes: the template lives `persistent` seconds more
    clock.now += 59
    got = b.schedule("10.1.1.9", 1)
    assert got is not None and got[0] is first
    b.release(*got)
    clock.now += 61
    assert b.expire() >= 1
    assert ("192.168.0.1", 80) in b.dests and not b.templates.get((4, 0x0A010100))


def test_persistence_template_to_quiesced_or_removed_real_is_dropped():
    clock = Clock()
    b = Balancer(ServiceSettings(scheduler="rr", persistent=300), clock=clock)
    for i in (1, 2):
        b.set_dest(Dest(f"192.168.0.{i}", 80))
    a = b.schedule("10.9.9.9", 1)
    assert a is not None and a[0].address == "192.168.0.1"
    b.set_dest(Dest("192.168.0.1", 80, "masq", 0))
    got = b.schedule("10.9.9.9", 2)
    assert got is not None and got[0].address == "192.168.0.2"
    b.remove_dest(("192.168.0.2", 80))
    b.set_dest(Dest("192.168.0.1", 80, "masq", 1))
    got2 = b.schedule("10.9.9.9", 3)
    assert got2 is not None and got2[0].address == "192.168.0.1"
    b.release(*a)  # a connection of a dropped template ends harmlessly
    b.release(*got)


def test_ipv6_persistence_prefix():
    assert parse_netmask("64")[1] == 64 and parse_netmask("/48")[1] == 48
    assert parse_netmask("255.255.0.0")[0] == 0xFFFF0000
    b = Balancer(ServiceSettings(scheduler="rr", persistent=60, netmask="64"))
    for i in (1, 2):
        b.set_dest(Dest(f"2001:db8::{i}", 80))
    picks = {b.schedule(f"2001:db8:1:2::{i}", 1)[0].address for i in range(1, 6)}  # type: ignore[index]
    assert len(picks) == 1


def test_retry_excludes_failed_real():
    for name in SCHEDULERS:
        b = balancer(name, 1, 1)
        first = b.schedule("10.0.0.1", 5)
        assert first is not None, name
        b.release(*first)
        second = b.schedule("10.0.0.1", 5, exclude=first[0])
        assert second is not None and second[0] is not first[0], name


def test_edit_service_keeps_counters_and_switches_scheduler():
    b = balancer("rr", 1, 1)
    held = b.schedule("10.0.0.1", 1)
    b.configure(ServiceSettings(scheduler="lc"))
    assert held is not None and pick(b) != held[0].address[-1]
    assert list(itertools.islice((d.active for d in b.dests.values()), 2)) in ([1, 0], [0, 1])
