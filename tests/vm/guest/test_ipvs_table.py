"""The IPVS data plane against the real kernel: what apply writes is what ipvsadm and read() see."""

from __future__ import annotations

import os

import pytest

from saru.dataplane.base import DataplaneError
from saru.dataplane.ipvs import IpvsDataplane
from saru.dataplane.ipvs.codec import SCHEDULERS
from saru.diff import diff
from saru.model import (
    AddDest,
    AddService,
    DelDest,
    DelService,
    Dest,
    EditDest,
    EditService,
    Op,
    Service,
    ServiceKey,
    ServiceSettings,
    Table,
)
from tests.vm.guest.conftest import ipvsadm, listing, saved_rules, thresholds

TCP = ServiceKey("tcp", "10.0.0.1", 80)
UDP = ServiceKey("udp", "10.0.0.1", 53)
TCP6 = ServiceKey("tcp", "2001:db8::1", 443, None, 6)
UDP6 = ServiceKey("udp", "2001:db8::1", 53, None, 6)
FWM = ServiceKey("fwm", "", 0, 7, 4)
FWM6 = ServiceKey("fwm", "", 0, 8, 6)


def full_table() -> Table:
    """Every protocol, family, forwarding method, thresholds, persistence, flags, weight 0."""
    return Table.of([
        Service(TCP, ServiceSettings("sh", 300, "255.255.255.0", "sh-fallback,sh-port"), {
            ("10.0.0.2", 80): Dest("10.0.0.2", 80, "gate", 2, 100, 10),
            ("10.0.0.3", 8080): Dest("10.0.0.3", 8080, "masq", 0),
            ("10.0.0.4", 80): Dest("10.0.0.4", 80, "ipip", 5, 0, 0),
        }),
        Service(UDP, ServiceSettings("wrr", None, None, None, True), {
            ("10.0.0.5", 5353): Dest("10.0.0.5", 5353, "masq", 3, 7, 0),
        }),
        Service(TCP6, ServiceSettings("mh", 60, "64", "mh-port"), {
            ("2001:db8::2", 443): Dest("2001:db8::2", 443, "gate", 1),
            ("2001:db8::3", 8443): Dest("2001:db8::3", 8443, "masq", 4, 50, 20),
        }),
        Service(UDP6, ServiceSettings("rr"), {
            ("2001:db8::4", 53): Dest("2001:db8::4", 53, "ipip", 1),
        }),
        Service(FWM, ServiceSettings("wlc", 120), {
            ("10.0.0.6", 0): Dest("10.0.0.6", 0, "gate", 1),
            ("10.0.0.7", 0): Dest("10.0.0.7", 0, "masq", 0),
        }),
        Service(FWM6, ServiceSettings("lc"), {
            ("2001:db8::5", 0): Dest("2001:db8::5", 0, "gate", 2),
        }),
    ])


FULL_RULES = {
    "-A -t 10.0.0.1:80 -s sh -p 300 -M 255.255.255.0 -b sh-fallback,sh-port",
    "-a -t 10.0.0.1:80 -r 10.0.0.2:80 -g -w 2",
    "-a -t 10.0.0.1:80 -r 10.0.0.3:8080 -m -w 0",
    "-a -t 10.0.0.1:80 -r 10.0.0.4:80 -i -w 5 --tun-type ipip",
    "-A -u 10.0.0.1:53 -s wrr -o",
    "-a -u 10.0.0.1:53 -r 10.0.0.5:5353 -m -w 3",
    "-A -t [2001:db8::1]:443 -s mh -p 60 -M 64 -b mh-port",
    "-a -t [2001:db8::1]:443 -r [2001:db8::2]:443 -g -w 1",
    "-a -t [2001:db8::1]:443 -r [2001:db8::3]:8443 -m -w 4",
    "-A -u [2001:db8::1]:53 -s rr",
    "-a -u [2001:db8::1]:53 -r [2001:db8::4]:53 -i -w 1 --tun-type ipip",
    "-A -f 7 -s wlc -p 120",
    "-a -f 7 -r 10.0.0.6:0 -g -w 1",
    "-a -f 7 -r 10.0.0.7:0 -m -w 0",
    "-A -f 8 -6 -s lc",
    "-a -f 8 -6 -r [2001:db8::5]:0 -g -w 2",
}


FULL_LISTING = {
    "TCP 10.0.0.1:80 sh (sh-fallback,sh-port) persistent 300 mask 255.255.255.0": {
        "-> 10.0.0.2:80 Route 2 0 0", "-> 10.0.0.3:8080 Masq 0 0 0", "-> 10.0.0.4:80 Tunnel 5 0 0",
    },
    "UDP 10.0.0.1:53 wrr ops": {"-> 10.0.0.5:5353 Masq 3 0 0"},
    "TCP [2001:db8::1]:443 mh (mh-port) persistent 60 mask 64": {
        "-> [2001:db8::2]:443 Route 1 0 0", "-> [2001:db8::3]:8443 Masq 4 0 0",
    },
    "UDP [2001:db8::1]:53 rr": {"-> [2001:db8::4]:53 Tunnel 1 0 0"},
    "FWM 7 wlc persistent 120": {"-> 10.0.0.6:0 Route 1 0 0", "-> 10.0.0.7:0 Masq 0 0 0"},
    "FWM 8 IPv6 lc": {"-> [2001:db8::5]:0 Route 2 0 0"},
}


def test_available_loads_the_ip_vs_module(ipvs_kernel: dict[str, bool]) -> None:
    assert ipvs_kernel == {"loaded_before": False, "loaded_after": True}
    assert IpvsDataplane.available() == (True, "IPVS is available")


async def test_apply_full_table_matches_ipvsadm_and_read(dataplane: IpvsDataplane) -> None:
    desired = full_table()
    await dataplane.apply(diff(Table(), desired))
    assert listing() == FULL_LISTING
    assert saved_rules() == FULL_RULES
    limits = thresholds()
    assert limits["10.0.0.2:80"] == (100, 10)
    assert limits["[2001:db8::3]:8443"] == (50, 20)
    assert limits["10.0.0.5:5353"] == (7, 0)
    assert limits["10.0.0.3:8080"] == (0, 0)
    assert await dataplane.read() == desired


async def test_edit_and_delete_ops(dataplane: IpvsDataplane) -> None:
    desired = full_table()
    await dataplane.apply(diff(Table(), desired))
    await dataplane.apply([
        EditService(TCP, ServiceSettings("wrr")),  # persistence and flags off
        EditService(UDP, ServiceSettings("rr", 30, "255.255.0.0")),  # ops off, persistence on
        EditDest(TCP, Dest("10.0.0.2", 80, "masq", 9, 30, 3)),
        EditDest(TCP6, Dest("2001:db8::3", 8443, "gate", 0)),  # quiesce
        DelDest(FWM, "10.0.0.7", 0),
        DelService(UDP6),
    ])
    rules = saved_rules()
    assert "-A -t 10.0.0.1:80 -s wrr" in rules
    assert "-A -u 10.0.0.1:53 -s rr -p 30 -M 255.255.0.0" in rules
    assert "-a -t 10.0.0.1:80 -r 10.0.0.2:80 -m -w 9" in rules
    assert "-a -t [2001:db8::1]:443 -r [2001:db8::3]:8443 -g -w 0" in rules
    assert not any("10.0.0.7" in r for r in rules)
    assert not any("-u [2001:db8::1]:53" in r for r in rules)
    assert thresholds()["10.0.0.2:80"] == (30, 3)
    table = await dataplane.read()
    assert UDP6 not in table.services
    assert table.services[TCP].settings == ServiceSettings("wrr")
    assert table.services[UDP].settings == ServiceSettings("rr", 30, "255.255.0.0")
    assert table.services[TCP].dests[("10.0.0.2", 80)] == Dest("10.0.0.2", 80, "masq", 9, 30, 3)
    assert table.services[TCP6].dests[("2001:db8::3", 8443)].weight == 0
    assert set(table.services[FWM].dests) == {("10.0.0.6", 0)}


async def test_weight_zero_dest_is_present_and_gets_no_new_connections(dataplane: IpvsDataplane) -> None:
    service = Service(TCP, ServiceSettings("wrr"), {
        ("10.0.0.2", 80): Dest("10.0.0.2", 80, "masq", 0),
        ("10.0.0.3", 80): Dest("10.0.0.3", 80, "masq", 1),
    })
    await dataplane.apply(diff(Table(), Table.of([service])))
    assert "-a -t 10.0.0.1:80 -r 10.0.0.2:80 -m -w 0" in saved_rules()
    await dataplane.apply([EditDest(TCP, Dest("10.0.0.3", 80, "masq", 0))])
    table = await dataplane.read()
    assert {d.weight for d in table.services[TCP].dests.values()} == {0}
    assert "-a -t 10.0.0.1:80 -r 10.0.0.3:80 -m -w 0" in saved_rules()


def scheduler_module_installed(name: str) -> bool:
    release = os.uname().release
    return os.path.exists(f"/lib/modules/{release}/kernel/net/netfilter/ipvs/ip_vs_{name}.ko")


@pytest.mark.parametrize("scheduler", sorted(SCHEDULERS))
async def test_every_scheduler(dataplane: IpvsDataplane, scheduler: str) -> None:
    op = AddService(TCP, ServiceSettings(scheduler))
    if scheduler_module_installed(scheduler):
        await dataplane.apply([op])
        assert saved_rules() == {f"-A -t 10.0.0.1:80 -s {scheduler}"}
        assert (await dataplane.read()).services[TCP].settings.scheduler == scheduler
    else:  # e.g. twos, which arrived in Linux 6.2
        with pytest.raises(DataplaneError, match=f"scheduler '{scheduler}' is not available in this kernel"):
            await dataplane.apply([op])
        assert saved_rules() == set()


@pytest.mark.parametrize("bad, reason", [
    (AddService(UDP, ServiceSettings("wrr", None, None, "sh-port")), "needs scheduler 'sh'"),
    (AddService(UDP, ServiceSettings("wrr", 60, "255.0.255.0")), "invalid IPv4 netmask"),
    (AddDest(TCP, Dest("10.0.0.2", 80, "masq", 1, 0, 3)), "above upper threshold"),
])
async def test_invalid_op_is_refused_before_anything_is_sent(
    dataplane: IpvsDataplane, bad: Op, reason: str
) -> None:
    with pytest.raises(DataplaneError, match=reason):
        await dataplane.apply([AddService(TCP, ServiceSettings("wrr")), bad])
    assert saved_rules() == set()


async def test_read_lists_foreign_services_too(dataplane: IpvsDataplane) -> None:
    ipvsadm("-A", "-t", "10.9.9.9:8080", "-s", "rr", "-p", "600")
    ipvsadm("-a", "-t", "10.9.9.9:8080", "-r", "10.9.9.10:8080", "-m", "-w", "4", "-x", "10")
    table = await dataplane.read()
    key = ServiceKey("tcp", "10.9.9.9", 8080)
    assert table.services[key] == Service(key, ServiceSettings("rr", 600), {
        ("10.9.9.10", 8080): Dest("10.9.9.10", 8080, "masq", 4, 10, 0),
    })
