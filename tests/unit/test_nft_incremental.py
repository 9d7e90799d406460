"""The nft renderer's incremental transactions: an apply sends only what differs from the last one.

Pure: ``build`` renders objects, ``transaction`` diffs two renderings into nft commands. The kernel
side (atomicity, rollback) is proven in tests/kernel/test_nft_dataplane.py.
"""

from __future__ import annotations

import pytest

from saru.dataplane.nft.environment import Environment
from saru.dataplane.nft.names import DR_FAMILY, NAT_FAMILY, RenderError, parse_real_comment, real_comment
from saru.dataplane.nft.parse import parse
from saru.dataplane.nft.render import build
from saru.dataplane.nft.slots import stable_slots
from saru.dataplane.nft.transaction import Existing, transaction, unknown_script
from saru.model import Dest, Service, ServiceKey, ServiceSettings, Table

KEY = ServiceKey("tcp", "192.168.6.240", 80)


def farm(n: int, weight: int = 1, scheduler: str = "wrr", skip: int | None = None) -> Table:
    dests = [Dest(f"10.20.{i // 250}.{i % 250 + 1}", 8080, "masq", weight) for i in range(n) if i != skip]
    return Table.of([Service(KEY, ServiceSettings(scheduler), {d.key: d for d in dests})])


def commands(before: Table, after: Table) -> list[str]:
    old = build(before)
    new = build(after, previous=old.slot_owners)
    return transaction(old.scripts[NAT_FAMILY], new.scripts[NAT_FAMILY])


def test_nothing_changed_writes_nothing() -> None:
    assert commands(farm(100), farm(100)) == []


def test_one_real_of_ten_thousand_is_one_element_batch_not_a_rewrite() -> None:
    big = farm(10_000)
    one_down = Table.of([Service(KEY, ServiceSettings("wrr"), {
        **big.services[KEY].dests, ("10.20.0.1", 8080): Dest("10.20.0.1", 8080, "masq", 0)})])
    cmds = commands(big, one_down)
    text = "\n".join(cmds)
    assert "add chain" not in text and "flush chain" in text  # the service chain: mod 10000 → 9999
    deleted = next(c for c in cmds if c.startswith("delete element"))
    assert deleted.count(",") <= 2  # the real's slot and the slot that moved into it
    added = [c for c in cmds if c.startswith("add element")]
    assert sum(c.count(" comment ") for c in added) <= 3  # moved slot + the quiesced real's record


def test_removing_a_real_keeps_the_other_slots() -> None:
    before = build(farm(5, scheduler="rr"))
    after = build(farm(5, scheduler="rr", skip=1), previous=before.slot_owners)
    old, new = before.slot_owners[KEY], after.slot_owners[KEY]
    assert len(new) == 4 and ("10.20.0.2", 8080) not in new
    assert sum(1 for a, b in zip(old, new, strict=False) if a == b) == 3  # only slot 1 changed owner


def test_stable_slots_refills_holes_in_canonical_order() -> None:
    dests = [("10.0.0.1", 80), ("10.0.0.2", 80), ("10.0.0.3", 80)]
    previous = [("10.0.0.3", 80), ("10.0.0.9", 80), ("10.0.0.1", 80)]
    assert stable_slots([0, 1, 2], dests, previous) == [2, 1, 0]
    assert stable_slots([0, 0, 1], dests, None) == [0, 0, 1]


def test_service_removal_deletes_its_objects_and_last_one_the_table() -> None:
    two = Table.of([*farm(3).services.values(),
                    Service(ServiceKey("tcp", "192.168.6.240", 443), ServiceSettings("rr"), {})])
    cmds = commands(two, farm(3))
    assert any(c.startswith("delete chain inet saru s_") for c in cmds)
    assert any(c.startswith("delete map inet saru m_") for c in cmds)
    assert commands(farm(3), Table()) == ["delete table inet saru"]


def test_adopted_objects_are_rebuilt_but_dynamic_sets_survive() -> None:
    dr = Table.of([Service(KEY, ServiceSettings("rr"), {("192.168.6.11", 80): Dest("192.168.6.11", 80, "gate")})])
    env = Environment(devices={"192.168.6.11": "eth0"}, ingress=("eth0",))
    built = build(dr, env)
    existing = Existing(chains={DR_FAMILY: frozenset(built.scripts[DR_FAMILY].chains)},
                        sets={DR_FAMILY: frozenset(built.scripts[DR_FAMILY].sets)})
    cmds = transaction(unknown_script(DR_FAMILY, existing), built.scripts[DR_FAMILY], existed=True)
    assert not any(c.startswith(("delete set", "flush set", "add set")) for c in cmds)  # flows kept
    assert all(f"flush chain netdev saru {c}" in cmds for c in built.scripts[DR_FAMILY].chains)


def test_parse_reads_reals_back_from_map_elements() -> None:
    table = farm(3, weight=2)
    table = Table.of([Service(KEY, ServiceSettings("wrr"), {
        **table.services[KEY].dests, ("10.20.0.9", 8080): Dest("10.20.0.9", 8080, "masq", 0, 5, 1)})])
    built = build(table)
    script = built.scripts[NAT_FAMILY]
    items: list[dict[str, object]] = [{"table": {"family": "inet", "name": "saru"}}]
    items += [{"chain": {"family": "inet", "name": c}} for c in script.chains]
    for chain, rules in script.rules.items():
        items += [{"rule": {"family": "inet", "chain": chain, "comment": r.split('comment "')[1].rstrip('"'),
                            "expr": []}} for r in rules if 'comment "' in r]
    for name, elements in script.elements.items():
        elem: list[object] = []
        for key, text in elements.items():
            comment = text.split('comment "')[1].split('"')[0]
            if name.startswith("m_"):
                value = text.split(" : ")[1]
                elem.append([{"elem": {"val": int(key), "comment": comment}}, value])
            else:
                address, port = key.split(" . ")
                elem.append({"elem": {"val": {"concat": [address, int(port)]}, "comment": comment}})
        items.append({"map" if name.startswith("m_") else "set": {"family": "inet", "name": name, "elem": elem}})
    listing = parse([{"nftables": items}])
    assert listing.table == table
    assert listing.slot_owners[KEY] == built.slot_owners[KEY]


def test_an_adopted_set_where_a_map_belongs_is_replaced_not_flushed_as_a_map() -> None:
    built = build(farm(2))
    script = built.scripts[NAT_FAMILY]
    m_map = next(n for n in script.sets if n.startswith("m_"))
    as_set = Existing(chains={NAT_FAMILY: frozenset(script.chains)}, sets={NAT_FAMILY: frozenset({m_map})})
    cmds = transaction(unknown_script(NAT_FAMILY, as_set), script, existed=True)
    assert f"delete set inet saru {m_map}" in cmds and not any(c.startswith("flush map") for c in cmds)
    as_map = Existing(chains=as_set.chains, sets=as_set.sets, maps={NAT_FAMILY: frozenset({m_map})})
    cmds = transaction(unknown_script(NAT_FAMILY, as_map), script, existed=True)
    assert f"flush map inet saru {m_map}" in cmds and not any(c.startswith("delete set") for c in cmds)


def test_real_comments_round_trip_and_refuse_garbage() -> None:
    dest = Dest("2001:db8::7", 8443, "masq", 65535, 100, 50)
    assert parse_real_comment(real_comment(dest), "2001:db8::7") == (dest, "live")
    assert parse_real_comment("saru R x 0 0 80", "10.0.0.1") is None
    assert parse_real_comment("saru R 1 0 0 80", None) is None  # no address: not a real


def test_a_real_on_another_port_switches_the_map_to_address_and_port() -> None:
    same = farm(3)
    mixed = Table.of([Service(KEY, ServiceSettings("wrr"), {
        **same.services[KEY].dests, ("10.20.0.9", 9090): Dest("10.20.0.9", 9090, "masq", 1)})])
    assert any(r.endswith(" : 8080") for r in build(same).scripts[NAT_FAMILY].rules[f"s_{_sid()}"])
    cmds = commands(same, mixed)
    m_map = f"m_{_sid()}"
    assert f"delete map inet saru {m_map}" in cmds
    assert f"add map inet saru {m_map} {{ typeof numgen inc mod 2 : ip daddr . tcp dport; }}" in cmds
    assert f"flush chain inet saru s_{_sid()}" in cmds  # its rule names the new map
    assert any("10.20.0.9 . 9090" in c for c in cmds if c.startswith("add element"))


def _sid() -> str:
    from saru.dataplane.nft.names import service_id

    return service_id(KEY)


def test_the_memo_changes_nothing_but_the_work() -> None:
    from saru.dataplane.nft.render import Memo
    from saru.diff import apply_ops
    from saru.model import AddDest, EditDest

    memo = Memo()
    before = farm(50)
    first = build(before, memo=memo)
    assert first.scripts == build(before).scripts
    after = apply_ops(before, [EditDest(KEY, Dest("10.20.0.3", 8080, "masq", 0)),
                               AddDest(KEY, Dest("10.20.0.99", 9090, "masq", 2)),
                               EditDest(KEY, Dest("10.20.0.4", 8080, "masq", 3, 10, 2))])
    fast = build(after, previous=first.slot_owners, memo=memo)
    assert fast.scripts == build(after, previous=first.slot_owners).scripts
    assert fast.slot_owners == build(after, previous=first.slot_owners).slot_owners
    bad = apply_ops(after, [AddDest(KEY, Dest("2001:db8::1", 80, "masq", 1))])
    with pytest.raises(RenderError, match="not IPv4"):  # a new real is still checked
        build(bad, memo=memo)


def test_reals_without_a_slot_are_parked_at_stable_keys() -> None:
    from saru.dataplane.nft.slots import PARK, park_key

    quiet = farm(3, weight=0)
    elements = build(quiet).scripts[NAT_FAMILY].elements[f"m_{_sid()}"]
    assert sorted(int(k) for k in elements) == sorted(park_key(k) for k in quiet.services[KEY].dests)
    assert all(int(k) >= PARK for k in elements)
    more = farm(4, weight=0)  # a fourth real parks without moving the others
    assert elements.items() <= build(more).scripts[NAT_FAMILY].elements[f"m_{_sid()}"].items()
