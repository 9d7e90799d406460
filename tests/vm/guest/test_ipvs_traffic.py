"""Real LVS-NAT traffic through a table Saru programmed, and the counters ``stats()`` reads back.

Topology (all inside the guest, which has no network card): the director is the guest's root
namespace with the VIP; a client namespace and two real-server namespaces (busybox httpd) hang off
veth pairs. Addresses exist only in these namespaces.
"""

from __future__ import annotations

import asyncio
import re
import time

from saru.dataplane.ipvs import IpvsDataplane
from saru.diff import diff
from saru.model import Dest, Service, ServiceKey, ServiceSettings, Table
from tests.vm.guest.conftest import ipvsadm
from tests.vm.guest.lvs_nat import REAL_IPS, VIP, Topology

KEY = ServiceKey("tcp", VIP, 80)
REQUESTS = 6
STATS_LINE = re.compile(r"(?:TCP|UDP)?\s*(?:->)?\s*(\d[\d.]*:\d+)\s+(\d+)\s+\d+\s+\d+\s+(\d+)\s+(\d+)")


def ipvsadm_stats() -> dict[str, tuple[int, int, int]]:
    """``host:port`` → (conns, inbytes, outbytes) for the service and its dests."""
    out = {}
    for line in ipvsadm("-Ln", "--stats", "--exact").splitlines():
        match = STATS_LINE.match(line.strip())
        if match:
            out[match.group(1)] = (int(match.group(2)), int(match.group(3)), int(match.group(4)))
    return out


async def test_nat_traffic_shows_in_stats(dataplane: IpvsDataplane, lvs_nat: Topology) -> None:
    desired = Table.of([Service(KEY, ServiceSettings("rr"), {
        (real_ip, 80): Dest(real_ip, 80, "masq", 1) for real_ip in REAL_IPS
    })])
    await dataplane.apply(diff(Table(), desired))

    replies = lvs_nat.requests(REQUESTS)
    assert replies.count("hello from rs1") == REQUESTS // 2
    assert replies.count("hello from rs2") == REQUESTS // 2

    # connection counts are immediate; totals come with the kernel's 2-second estimator
    deadline = time.monotonic() + 20
    while True:
        stats = (await dataplane.stats())[KEY]
        if stats.connections >= REQUESTS or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.25)
    assert stats.connections == REQUESTS
    assert stats.bytes_in > 0 and stats.bytes_out > 0
    for real_ip in REAL_IPS:
        counters = stats.dests[(real_ip, 80)]
        assert counters.connections == REQUESTS // 2
        # closed connections linger in TIME_WAIT (inactive), also those of earlier tests in this VM
        assert counters.active_connections + counters.inactive_connections >= REQUESTS // 2
        assert counters.bytes_in > 0 and counters.bytes_out > 0
    assert sum(d.bytes_in for d in stats.dests.values()) == stats.bytes_in
    assert sum(d.bytes_out for d in stats.dests.values()) == stats.bytes_out

    # ipvsadm, read between two identical stats() snapshots, shows the same numbers
    for _ in range(20):
        before = (await dataplane.stats())[KEY]
        kernel = ipvsadm_stats()
        after = (await dataplane.stats())[KEY]
        if before == after:
            break
    assert before == after
    assert kernel[f"{VIP}:80"] == (after.connections, after.bytes_in, after.bytes_out)
    for real_ip in REAL_IPS:
        d = after.dests[(real_ip, 80)]
        assert kernel[f"{real_ip}:80"] == (d.connections, d.bytes_in, d.bytes_out)
