"""A restart adopts the live table (writes nothing) and never touches another tool's services."""

from __future__ import annotations

from saru.config.ldirectord import parse_text
from saru.dataplane.ipvs import IpvsDataplane
from saru.diff import diff
from saru.model import Config, RealRef, ServiceKey, Table
from saru.planner import desired_table, real_ref
from tests.vm.guest.conftest import ipvsadm, saved_rules

CONFIG = """\
checktimeout=2
checkinterval=1
fallback=127.0.0.1:80 masq
quiescent=no

virtual=10.99.1.100:80
\treal=10.99.2.11:80 masq 1
\treal=10.99.2.12:80 masq 2 l:5 u:50
\tservice=http
\tscheduler=wrr
\tpersistent=300
\tchecktype=negotiate
\trequest="check.html"
\treceive="up"

virtual=10.99.1.100:53
\treal=10.99.2.11:5353 gate
\tprotocol=udp
\tscheduler=sh
\tschedflags=sh-port
\tops=yes

virtual=7
\treal=10.99.2.13 gate 3
\tscheduler=rr

virtual6=[2001:db8::100]:443
\treal6=[2001:db8::11]:443 ipip
\treal6=[2001:db8::12]:443 masq 0
\tscheduler=mh
\tpersistent=60
\tnetmask=64
"""


def all_up(config: Config) -> dict[RealRef, bool | None]:
    return {real_ref(v, r): True for v in config.virtuals for r in v.reals}


async def test_second_instance_reads_back_exactly_and_a_restart_writes_nothing() -> None:
    config = parse_text(CONFIG, "ldirectord.cf")
    desired = desired_table(config, all_up(config))
    first = IpvsDataplane()
    await first.start()
    try:
        await first.apply(diff(Table(), desired, owned={v.key for v in config.virtuals}))
    finally:
        await first.close()
    rules_before = saved_rules()

    second = IpvsDataplane()  # a restarted daemon
    await second.start()
    try:
        current = await second.read()
        assert current == desired
        assert diff(current, desired, owned={v.key for v in config.virtuals}) == []
        # at start-up no check has run yet: every real's health is unknown, and the planner adopts
        fresh = desired_table(config, {}, current)
        assert diff(current, fresh, owned={v.key for v in config.virtuals}) == []
    finally:
        await second.close()
    assert saved_rules() == rules_before


async def test_foreign_service_is_never_touched(dataplane: IpvsDataplane) -> None:
    ipvsadm("-A", "-t", "10.9.9.9:80", "-s", "rr")
    ipvsadm("-a", "-t", "10.9.9.9:80", "-r", "10.9.9.10:80", "-m", "-w", "3")
    ipvsadm("-A", "-f", "99", "-s", "wlc")
    foreign = saved_rules()
    config = parse_text(CONFIG, "ldirectord.cf")
    owned = {v.key for v in config.virtuals}
    desired = desired_table(config, all_up(config))

    ops = diff(await dataplane.read(), desired, owned=owned)
    assert ops and all(op.service in owned for op in ops)
    await dataplane.apply(ops)
    assert foreign <= saved_rules()

    # the config loses every virtual: only Saru's services go away
    ops = diff(await dataplane.read(), Table(), owned=owned)
    assert {op.service for op in ops} == owned
    await dataplane.apply(ops)
    assert saved_rules() == foreign
    assert ServiceKey("fwm", "", 0, 99) in (await dataplane.read()).services
