"""saru.dataplane.nft.stateless: the rules of stateless NAT (golden script), what it refuses, and
that the table reads back from them (pure; the kernel test is tests/kernel/test_nft_stateless.py)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from saru.dataplane.nft.environment import Environment
from saru.dataplane.nft.names import RenderError
from saru.dataplane.nft.plane import CAPABILITIES
from saru.dataplane.nft.render import build, render
from saru.dataplane.nft.slots import MAGLEV_SIZE
from saru.dataplane.select import unsupported
from saru.model import Dest, Table
from tests.unit.doubles import config as parse
from tests.unit.test_nft_render import golden, svc

STATELESS = Environment(nat="stateless")


def web(*dests: Dest, scheduler: str = "wrr", port: int = 80) -> Table:
    return Table.of([svc("tcp", "192.168.6.240", port, list(dests), scheduler)])


def test_stateless_script() -> None:
    table = Table.of([
        svc("tcp", "192.168.6.240", 80, [Dest("192.168.7.11", 80, "masq", 2), Dest("192.168.7.12", 8080, "masq", 1),
                                          Dest("192.168.7.13", 80, "masq", 0)], "wrr"),
        svc("udp", "2001:db8:6::240", 53, [Dest("2001:db8:7::11", 53, "masq")], "sh", family=6),
    ])
    script = render(table, STATELESS)
    golden("nat_stateless", script)
    assert "dnat" not in script and "numgen" not in script  # per flow, no conntrack


def test_weight_zero_real_and_other_virtuals_leave_the_maglev_table_alone() -> None:
    a, b = Dest("192.168.7.11", 80, "masq"), Dest("192.168.7.12", 80, "masq")
    base = build(web(a, b), STATELESS).scripts["inet"]
    more = build(Table.of([*web(a, b, Dest("192.168.7.13", 80, "masq", 0)).services.values(),
                           *web(Dest("192.168.7.11", 443, "masq"), port=443).services.values()]),
                 STATELESS).scripts["inet"]
    (chain,) = [c for c in base.rules if c.startswith("s_")]
    assert base.rules[chain] == more.rules[chain]
    assert f"mod {MAGLEV_SIZE} " in base.rules[chain][1]


@pytest.mark.parametrize(("table", "why"), [
    (Table.of([svc("fwm", "", 0, [Dest("192.168.7.11", 0, "masq")], fwmark=1)]), "firewall-mark"),
    (Table.of([svc("tcp", "192.168.6.240", 80, [Dest("192.168.7.11", 80, "masq")], persistent=60)]),
     "no persistence"),
    (Table.of([svc("tcp", "192.168.6.240", 80, [Dest("127.0.0.1", 80, "masq")])]), "director itself"),
    # a gate virtual on its local fallback is NATed: check-config's fallback refusal stands on this
    (Table.of([svc("tcp", "192.168.6.240", 80, [Dest("127.0.0.1", 80, "gate")])]), "director itself"),
    (Table.of([svc("tcp", "192.168.6.240", p, [Dest("192.168.7.11", 80, "masq")]) for p in (80, 81)]),
     "another stateless virtual"),
])
def test_refused(table: Table, why: str) -> None:
    with pytest.raises(RenderError, match=why):
        render(table, STATELESS)
    if why != "firewall-mark":  # stateful NAT takes the others
        render(table)


def test_stateful_is_the_default_and_unchanged() -> None:
    table = web(Dest("192.168.7.11", 80, "masq"))
    assert render(table) == render(table, Environment(nat="stateful"))
    assert "notrack" not in render(table)


def test_config_validation_refuses_what_stateless_nat_cannot_serve() -> None:
    config = parse(
        "virtual=192.168.6.240:80\n\treal=192.168.7.11:80 masq\n\tpersistent=60\n\tscheduler=rr\n"
        "virtual=192.168.6.240:81\n\treal=192.168.7.11:80 masq\n\tscheduler=rr\n"
        "virtual=192.168.6.240:82\n\treal=192.168.6.11:82 gate\n\tpersistent=60\n\tscheduler=rr\n")
    assert unsupported(config, CAPABILITIES) == []  # stateful NAT serves all of it
    problems = [p.message for p in unsupported(config, replace(CAPABILITIES, stateless_nat=True))]
    assert len(problems) == 2, problems  # the gate virtual's persistence is fine
    assert "virtual 192.168.6.240:80: no persistence" in problems[0]
    assert "also a real of virtual 192.168.6.240:80" in problems[1]
