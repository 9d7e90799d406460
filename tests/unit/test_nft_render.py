"""saru.dataplane.nft.render: golden nft scripts for each kind of virtual service, slot tables, and
the round trip of the metadata that lets ``read()`` give back exactly the applied table.

The golden scripts live in ``tests/unit/nft_golden/*.nft``; regenerate one with
``SARU_UPDATE_GOLDEN=1 pytest tests/unit/test_nft_render.py`` after a deliberate change, and read the
diff: every line is what the kernel will be told.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from saru.dataplane.nft.environment import Environment
from saru.dataplane.nft.exprs import HASH_SEED
from saru.dataplane.nft.names import (
    RenderError,
    dest_comment,
    parse_dest_comment,
    parse_service_comment,
    service_comment,
    service_id,
)
from saru.dataplane.nft.parse import parse
from saru.dataplane.nft.render import render
from saru.dataplane.nft.slots import MAGLEV_SIZE, maglev, slots, wrr_sequence
from saru.dataplane.nft.transaction import Existing
from saru.model import Dest, Service, ServiceKey, ServiceSettings, Table

GOLDEN = Path(__file__).parent / "nft_golden"
DR_ENV = Environment(devices={"192.168.6.11": "eth0", "192.168.6.12": "eth0", "2001:db8:6::11": "eth1"},
                     ingress=("eth0",))


def svc(protocol: str, address: str, port: int, dests: list[Dest], scheduler: str = "rr",
        fwmark: int | None = None, family: int = 4, persistent: int | None = None, netmask: str | None = None,
        schedflags: str | None = None) -> Service:
    key = ServiceKey(protocol, address, port, fwmark, family)  # type: ignore[arg-type]
    settings = ServiceSettings(scheduler, persistent, netmask, schedflags)
    return Service(key, settings, {d.key: d for d in dests})


def golden(name: str, script: str) -> None:
    path = GOLDEN / f"{name}.nft"
    if os.environ.get("SARU_UPDATE_GOLDEN"):
        path.write_text(script)
    assert script == path.read_text()


def test_nat_weighted_round_robin() -> None:
    table = Table.of([svc("tcp", "192.168.6.240", 80, [Dest("192.168.7.11", 80, "masq", 2),
                                                        Dest("192.168.7.12", 8080, "masq", 1),
                                                        Dest("192.168.7.13", 80, "masq", 0)], "wrr")])
    golden("nat_wrr", render(table))  # the quiesced real is parked at a key no slot number reaches


def test_dr_with_local_fallback_draining_real_and_stale_objects() -> None:
    service = svc("tcp", "192.168.6.240", 80, [Dest("192.168.6.11", 80, "gate", 1),
                                                Dest("127.0.0.1", 80, "gate", 1)])
    existing = Existing(chains={"netdev": frozenset({"old_chain", "s_x"})},
                        sets={"netdev": frozenset({"f_gone"})})
    draining = {service.key: {("192.168.6.12", 80): Dest("192.168.6.12", 80, "gate", 1)}}
    golden("dr_drain", render(Table.of([service]), DR_ENV, existing, draining))


def test_ipv6_persistence_fwmark_and_udp() -> None:
    env = Environment(devices=DR_ENV.devices, ingress=("eth0", "eth1"))
    table = Table.of([
        svc("tcp", "2001:db8:6::240", 443, [Dest("2001:db8:6::11", 443, "gate", 1)], family=6,
            persistent=600, netmask="64"),
        svc("fwm", "", 0, [Dest("192.168.7.11", 0, "masq", 1), Dest("192.168.7.12", 0, "masq", 0)], "wrr",
            fwmark=3, persistent=300, netmask="255.255.255.0"),
        svc("fwm", "", 0, [Dest("192.168.6.11", 0, "gate", 1)], fwmark=4),
        svc("udp", "192.168.6.240", 53, [Dest("192.168.6.11", 53, "gate", 1)]),
    ])
    golden("ipv6_fwmark_udp", render(table, env))


def test_nat_ipv6_and_local_fallback_on_other_port() -> None:
    table = Table.of([
        svc("tcp", "2001:db8:6::240", 80, [Dest("2001:db8:7::11", 8080, "masq", 1)], family=6),
        svc("tcp", "192.168.6.240", 80, [Dest("127.0.0.1", 8080, "gate", 1)]),
        svc("tcp", "192.168.6.240", 443, [Dest("127.0.0.1", 443, "masq", 1)]),
    ])
    script = render(table)
    assert "meta l4proto tcp dnat ip6 to numgen inc mod 1 map @m_" in script  # reals in a slot map
    assert '0 comment "saru R 1 0 0 8080" : 2001:db8:7::11' in script and " : 8080\n" in script
    assert "meta l4proto tcp redirect to :8080" in script  # fallback on the director, other port
    local_masq = service_id(ServiceKey("tcp", "192.168.6.240", 443))
    assert f"add rule inet saru d_{local_masq}" in script and "dnat ip to 127.0.0.1" not in script
    assert "netdev" not in script  # no gate real outside the director: nothing at ingress


def test_source_hash_is_a_maglev_map_with_a_fixed_seed() -> None:
    dests = [Dest("192.168.7.11", 80, "masq", 1), Dest("192.168.7.12", 80, "masq", 1)]
    table = Table.of([svc("tcp", "192.168.6.240", 80, dests, "sh", schedflags="sh-port")])
    script = render(table)
    line = next(x for x in script.splitlines() if " dnat " in x)
    assert f"jhash ip saddr . tcp sport mod {MAGLEV_SIZE} seed {HASH_SEED:#x} map @m_" in line
    assert script == render(table)  # the same table renders the same map on every director
    elements = next(x for x in script.splitlines() if x.startswith("add element"))
    assert elements.count(" : 192.168.7.1") == MAGLEV_SIZE
    dh = render(Table.of([svc("fwm", "", 0, dests, "dh", fwmark=9)]))
    assert f"jhash ip daddr mod {MAGLEV_SIZE}" in dh
    assert " dnat ip to numgen" not in render(Table.of([svc("tcp", "192.168.6.240", 80, dests, "mh")]))


def test_empty_table_deletes_only_existing_tables() -> None:
    assert render(Table()) == ""
    assert render(Table(), existing=Existing(chains={"inet": frozenset()})) == "delete table inet saru\n"
    both = Existing(chains={"inet": frozenset({"nat_pre"}), "netdev": frozenset({"dispatch"})})
    assert render(Table(), existing=both) == "delete table inet saru\ndelete table netdev saru\n"


def test_service_without_available_real_drops_new_connections() -> None:
    quiet = Table.of([svc("tcp", "192.168.6.240", 80, [Dest("192.168.7.11", 80, "masq", 0)])])
    script = render(quiet)
    assert "vmap" not in script and script.rstrip().endswith("drop")


@pytest.mark.parametrize(("service", "message"), [
    (svc("tcp", "10.0.0.1", 80, [], "wlc"), "connection counts"),
    (svc("tcp", "10.0.0.1", 80, [Dest("192.168.6.11", 80, "gate"), Dest("192.168.7.11", 80, "masq")]),
     "cannot mix gate and masq"),
    (svc("tcp", "10.0.0.1", 80, [Dest("192.168.7.11", 80, "ipip")]), "ipip"),
    (svc("tcp", "10.0.0.1", 80, [Dest("2001:db8::1", 80, "masq")]), "is not IPv4"),
    (svc("tcp", "10.0.0.1", 80, [Dest("192.168.6.99", 80, "gate")]), "no network interface"),
])
def test_refusals_say_why(service: Service, message: str) -> None:
    with pytest.raises(RenderError, match=message):
        render(Table.of([service]), DR_ENV)


@pytest.mark.parametrize(("service", "message"), [
    (svc("tcp", '10.0.0.1 tcp dport 1 drop; flush ruleset; "', 80, []), "not an IP address"),
    (svc("tcp", "10.0.0.1", 80, [Dest("192.168.7.11 accept", 80, "masq")]), "not an IP address"),
    (svc("tcp", "10.0.0.1", 70000, []), "out of range"),
    (svc("fwm", "", 0, [], fwmark=0), "valid mark"),
    (svc("tcp", "10.0.0.1", 80, [], persistent=60, netmask="255.0.x.0"), "netmask"),
])
def test_only_plain_data_reaches_the_script(service: Service, message: str) -> None:
    with pytest.raises(RenderError, match=message):
        render(Table.of([service]), DR_ENV)


def test_odd_interface_names_are_refused() -> None:
    env = Environment(devices={"192.168.6.11": 'eth0" drop'}, ingress=("eth0",))
    with pytest.raises(RenderError, match="interface name"):
        render(Table.of([svc("tcp", "10.0.0.1", 80, [Dest("192.168.6.11", 80, "gate")])]), env)


def test_ops_refused() -> None:
    service = svc("udp", "10.0.0.1", 53, [])
    service = Service(service.key, ServiceSettings("rr", ops=True), {})
    with pytest.raises(RenderError, match="ops"):
        render(Table.of([service]))


def test_direct_routing_needs_an_interface() -> None:
    with pytest.raises(RenderError, match="interface"):
        render(Table.of([svc("tcp", "10.0.0.1", 80, [Dest("192.168.6.11", 80, "gate")])]),
               Environment(devices={"192.168.6.11": "eth0"}))


def test_wrr_sequence_matches_ipvs_order() -> None:
    assert wrr_sequence([3, 1]) == [0, 0, 0, 1]
    assert wrr_sequence([2, 2, 1]) == [0, 1, 0, 1, 2]
    assert wrr_sequence([4, 0, 2]) == [0, 0, 2]  # gcd 2 → 2:1, weight 0 gets no slot
    assert wrr_sequence([0, 0]) == []
    long = wrr_sequence([5000, 3, 1])
    assert len(long) <= 1100 and set(long) == {0, 1, 2}  # scaled down, nobody loses every slot


def test_rr_ignores_weights_and_fo_picks_the_heaviest() -> None:
    dests = [Dest("10.0.0.1", 80, weight=5), Dest("10.0.0.2", 80, weight=0), Dest("10.0.0.3", 80, weight=9)]
    assert slots(ServiceSettings("rr"), dests) == [0, 2]
    assert slots(ServiceSettings("fo"), dests) == [2]


def test_maglev_weights_and_minimal_disruption() -> None:
    reals = [(f"10.0.0.{i}", 80) for i in range(1, 6)]
    table = maglev(reals, [1] * 5)
    assert len(table) == MAGLEV_SIZE and table == maglev(reals, [1] * 5)
    shares = Counter(table)
    assert max(shares.values()) - min(shares.values()) <= MAGLEV_SIZE // 25
    weighted = Counter(maglev(reals[:2], [3, 1]))
    assert 2.5 < weighted[0] / weighted[1] < 3.5
    without_third = maglev(reals, [1, 1, 0, 1, 1])
    moved = sum(1 for a, b in zip(table, without_third, strict=True) if a != b and a != 2)
    assert moved < MAGLEV_SIZE * 0.05  # (almost) only the removed real's slots move
    assert 2 not in without_third
    assert maglev(reals, [0] * 5) == []


@pytest.mark.parametrize("service", [
    svc("tcp", "192.168.6.240", 80, [], "wrr"),
    svc("udp", "2001:db8::1", 53, [], "sh", family=6, persistent=300, netmask="64",
        schedflags="sh-fallback,sh-port"),
    svc("fwm", "", 0, [], "mh", fwmark=77, persistent=30, netmask="255.255.255.0"),
    svc("fwm", "", 0, [], "rr", fwmark=1, family=6, schedflags="odd flag with spaces"),
])
def test_service_metadata_round_trip(service: Service) -> None:
    assert parse_service_comment(service_comment(service)) == service


def test_dest_metadata_round_trip() -> None:
    dest = Dest("2001:db8::ffff:1", 8443, "masq", 65535, 100, 50)
    assert parse_dest_comment(dest_comment(dest, "drain")) == (dest, "drain")


def _listing_of(script: str) -> dict[str, object]:
    """A fake ``nft -j list table`` document built from the comment rules of a rendered script."""
    items: list[dict[str, object]] = [{"table": {"family": "inet", "name": "saru"}}]
    for line in script.splitlines():
        words = line.split(" ")
        if words[:2] == ["add", "chain"]:
            items.append({"chain": {"family": words[2], "table": "saru", "name": words[4]}})
        elif words[:2] == ["add", "set"]:
            items.append({"set": {"family": words[2], "table": "saru", "name": words[4]}})
        elif words[:2] == ["add", "rule"] and 'comment "' in line:
            comment = line.split('comment "', 1)[1].rstrip('"')
            items.append({"rule": {"family": words[2], "chain": words[4], "comment": comment,
                                   "expr": [{"counter": {"packets": 7, "bytes": 700}}]}})
        elif words[:2] == ["add", "rule"] and words[4].startswith("n_"):
            items.append({"rule": {"family": words[2], "chain": words[4],
                                   "expr": [{"counter": {"packets": 3, "bytes": 300}}]}})
    return {"nftables": items}


def test_parse_gives_back_the_rendered_table_and_its_counters() -> None:
    nat_service = svc("tcp", "192.168.6.240", 443, [Dest("192.168.7.11", 443, "masq", 2, 10, 5)], "wrr",
                      persistent=60)
    dr_service = svc("tcp", "192.168.6.240", 80, [Dest("192.168.6.11", 80, "gate", 1)])
    table = Table.of([nat_service, dr_service])
    draining = {dr_service.key: {("192.168.6.12", 80): Dest("192.168.6.12", 80, "gate", 3)}}
    listing = parse([_listing_of(render(table, DR_ENV, draining=draining))])
    assert listing.table == table
    assert listing.draining == draining
    assert listing.dest_counters[(nat_service.key, ("192.168.7.11", 443))].connections == 7
    assert listing.dest_counters[(dr_service.key, ("192.168.6.11", 80))].connections == 3  # new flows
    assert "nat_pre" in listing.existing.chains["inet"]
    assert any(name.startswith("f_") for name in listing.existing.sets["netdev"])
