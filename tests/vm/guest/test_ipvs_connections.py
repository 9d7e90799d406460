"""Connection entries (``-L -n -c``) and zeroed counters (``-Z``) of the IPVS data plane, with real
LVS-NAT traffic, compared byte for byte with the real ipvsadm on the same kernel."""

from __future__ import annotations

import asyncio
import time

import pytest

from saru.dataplane.base import DataplaneError
from saru.dataplane.ipvs import IpvsDataplane
from saru.diff import diff
from saru.model import Dest, Service, ServiceKey, ServiceSettings, Table
from tests.vm.guest.conftest import ipvsadm
from tests.vm.guest.lvs_nat import CLIENT, REAL_IPS, VIP, Topology
from tests.vm.guest.test_saru_ipvsadm import saru_ipvsadm

# not the VIP's port 80: connections linger in TIME_WAIT for 2 minutes and would be counted
# against the destinations of later tests' VIP:80 service (the kernel reuses recent dests)
PORT = 8081
KEY = ServiceKey("tcp", VIP, PORT)
REQUESTS = 4


def nat_table() -> Table:
    return Table.of([Service(KEY, ServiceSettings("rr"), {
        (ip, 80): Dest(ip, 80, "masq", 1) for ip in REAL_IPS})])


async def wait_for(condition, what: str, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        await asyncio.sleep(0.2)


async def test_connection_entries_match_ipvsadm(dataplane: IpvsDataplane, lvs_nat: Topology,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    await dataplane.apply(diff(Table(), nat_table()))
    lvs_nat.requests(REQUESTS, PORT)
    entries = [e for e in await dataplane.connections() if e.virtual == (VIP, PORT)]
    assert len(entries) >= REQUESTS
    assert {e.client[0] for e in entries} == {CLIENT[3]}
    assert {e.dest for e in entries} == {(ip, 80) for ip in REAL_IPS}
    assert all(e.protocol == "TCP" and e.state in ("TIME_WAIT", "CLOSE", "FIN_WAIT") for e in entries)
    assert all(0 < e.expires <= 120 for e in entries)
    # the expiry counts down in seconds: equal to one of two real listings taken around ours
    for args in (("-L", "-n", "-c"), ("-Lnc", "--persistent-conn")):
        for _ in range(5):
            before = ipvsadm(*args)
            ours = await saru_ipvsadm(capsys, *args)
            after = ipvsadm(*args)
            if ours in (before, after):
                break
        assert ours in (before, after), f"ipvsadm {' '.join(args)}:\n--- real\n{after}--- saru\n{ours}"
        assert len(ours.splitlines()) >= REQUESTS + 2


async def test_zero_counters(dataplane: IpvsDataplane, lvs_nat: Topology,
                             capsys: pytest.CaptureFixture[str]) -> None:
    other = ServiceKey("tcp", VIP, 8083)
    await dataplane.apply(diff(Table(), Table.of([*nat_table().services.values(),
                                                  Service(other, ServiceSettings("rr"))])))
    lvs_nat.requests(REQUESTS, PORT)

    async def counted() -> bool:  # totals come with the kernel's 2-second estimator
        return (await dataplane.stats())[KEY].connections >= REQUESTS

    await wait_for(counted, "the connection totals")
    assert await saru_ipvsadm(capsys, "-Z", "-t", f"{VIP}:{PORT}") == ""

    async def zeroed() -> bool:
        stats = (await dataplane.stats())[KEY]
        return (stats.connections, stats.bytes_in, stats.bytes_out) == (0, 0, 0) and all(
            (d.connections, d.bytes_in, d.bytes_out) == (0, 0, 0) for d in stats.dests.values())

    await wait_for(zeroed, "zeroed counters")
    exact = ipvsadm("-Ln", "--stats", "--exact", "-t", f"{VIP}:{PORT}").splitlines()
    assert exact[2].split()[2:] == ["0"] * 5, exact
    with pytest.raises(DataplaneError, match="No such service"):
        await dataplane.zero(ServiceKey("tcp", VIP, 9))
    lvs_nat.requests(2, PORT)

    async def counted_again() -> bool:
        return (await dataplane.stats())[KEY].connections >= 2

    await wait_for(counted_again, "the new connections")
    await dataplane.zero()  # everything

    async def all_zero() -> bool:
        return all(s.connections == 0 for s in (await dataplane.stats()).values())

    await wait_for(all_zero, "all counters zeroed")
