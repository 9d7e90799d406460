"""The floating IP against the real kernel: netlink addresses, gratuitous ARP and unsolicited NA.

Three hosts on one bridge: directors ``a`` and ``b`` and a client ``c``. Saru's code runs on an event
loop whose thread entered the director's namespace for good (``NsLoop``), so everything it opens —
netlink, packet sockets — is in that namespace and nothing can touch the root one. What the client
sees is read with iproute2 (its neighbour table) and tcpdump (the frames on the wire), tools that
share no code with Saru.
"""

from __future__ import annotations

import asyncio
import json
import select
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest

from saru.ha.vip import FloatingIP, VIPError, interface_mac
from tests.helpers import require
from tests.lab import Host, NsLoop, Segment, stop_process, wait_for

VIP4, VIP6 = "10.97.0.50", "fd00:97::50"


@pytest.fixture(scope="module")
def lan() -> Iterator[Segment]:
    ok, why = Segment.available()
    require(ok, why)
    with Segment({"a": ["10.97.0.1/24", "fd00:97::1/64"], "b": ["10.97.0.2/24", "fd00:97::2/64"],
                  "c": ["10.97.0.100/24", "fd00:97::100/64"]}, tag="g") as segment:
        yield segment


@pytest.fixture(scope="module")
def loops(lan: Segment) -> Iterator[dict[str, NsLoop]]:
    made: dict[str, NsLoop] = {}
    try:
        for name in ("a", "b"):
            made[name] = NsLoop(lan[name])
        yield made
    finally:
        for loop in made.values():
            loop.close()


def vips_on(host: Host) -> dict[str, tuple[int, bool]]:
    """Addresses on eth0 -> (prefix length, nodad) as ``ip -j addr`` reports them."""
    out = json.loads(host.ip("-j", "addr", "show", "dev", "eth0"))
    return {info["local"]: (info["prefixlen"], bool(info.get("nodad"))) for info in out[0]["addr_info"]}


def neigh_mac(host: Host, address: str) -> str | None:
    out = json.loads(host.ip("-j", "neigh", "show", address, "dev", "eth0") or "[]")
    return out[0].get("lladdr") if out else None


def test_add_remove_idempotent_with_prefixes(lan: Segment, loops: dict[str, NsLoop]) -> None:
    a, run = lan["a"], loops["a"].run
    fip = FloatingIP("eth0", [f"{VIP4}/24", f"{VIP6}/64", "10.97.0.51"], garp_repeat=1)
    try:
        assert run(fip.present()) == []
        run(fip.add())
        run(fip.add())  # already there: no error, no duplicate, announced again
        on = vips_on(a)
        assert on[VIP4] == (24, False)
        assert on[VIP6] == (64, True)  # nodad: usable at once
        assert on["10.97.0.51"] == (32, False)  # no prefix given: a host address, like IPaddr2
        assert run(fip.present()) == [VIP4, VIP6, "10.97.0.51"]
        assert fip.announcements == 6  # one frame per VIP per add()
        brd = json.loads(a.ip("-j", "addr", "show", "dev", "eth0"))[0]["addr_info"]
        assert next(i for i in brd if i["local"] == VIP4).get("broadcast") == "10.97.0.255"
        run(fip.remove())
        run(fip.remove())
        on = vips_on(a)
        assert VIP4 not in on and VIP6 not in on and "10.97.0.51" not in on
        assert "10.97.0.1" in on and "fd00:97::1" in on  # the host's own addresses are untouched
        assert run(fip.present()) == []
    finally:
        run(fip.remove())


def test_remove_deletes_a_vip_whatever_its_prefix(lan: Segment, loops: dict[str, NsLoop]) -> None:
    a, run = lan["a"], loops["a"].run
    a.ip("addr", "add", f"{VIP4}/28", "dev", "eth0")  # e.g. left by hand with another prefix
    fip = FloatingIP("eth0", [f"{VIP4}/24"], garp_repeat=1)
    try:
        assert run(fip.present()) == [VIP4]
        run(fip.add())  # present: a no-op, the prefix stays what it was
        assert vips_on(a)[VIP4] == (28, False)
        run(fip.remove())
        assert VIP4 not in vips_on(a)
    finally:
        run(fip.remove())


def test_errors_are_clear(loops: dict[str, NsLoop]) -> None:
    run = loops["a"].run
    with pytest.raises(VIPError, match="no network interface named 'nosuch0'"):
        run(FloatingIP("nosuch0", [f"{VIP4}/24"]).add())
    with pytest.raises(VIPError, match="not an address"):
        FloatingIP("eth0", ["10.97.0.300/24"])
    with pytest.raises(VIPError, match="interface name"):
        FloatingIP("", [f"{VIP4}/24"])
    with pytest.raises(VIPError, match="no network interface"):
        loops["a"].call(interface_mac, "nosuch0")


class Tcpdump:
    """tcpdump in a namespace, its decoded output collected line by line."""

    def __init__(self, host: Host, expression: str) -> None:
        self.proc = host.popen("tcpdump", "-l", "-n", "-e", "-vv", "-i", "eth0", expression,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert self.proc.stderr is not None and self.proc.stdout is not None
        self.lines: list[str] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # tcpdump says "listening on eth0" once capturing
            ready, _, _ = select.select([self.proc.stderr], [], [], 0.2)
            if ready and "listening on" in self.proc.stderr.readline():
                return
            if self.proc.poll() is not None:
                break
        stop_process(self.proc)
        raise RuntimeError("tcpdump did not start capturing")

    def read(self) -> list[str]:
        assert self.proc.stdout is not None
        while select.select([self.proc.stdout], [], [], 0)[0]:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.lines.append(line)
        return self.lines

    def count(self, needle: str) -> int:
        return sum(needle in line for line in self.read())

    def stop(self) -> list[str]:
        stop_process(self.proc)
        return self.read()


def test_failover_moves_the_clients_neighbour_entries(lan: Segment, loops: dict[str, NsLoop],
                                                     record_property: pytest.RecordProperty) -> None:
    require(shutil.which("tcpdump") is not None, "tcpdump is not installed")
    a, b, c = lan["a"], lan["b"], lan["c"]
    mac_a, mac_b = a.mac(), b.mac()
    assert loops["b"].call(interface_mac, "eth0") == mac_b
    on_a = FloatingIP("eth0", [f"{VIP4}/24", f"{VIP6}/64"], garp_repeat=1)
    on_b = FloatingIP("eth0", [f"{VIP4}/24", f"{VIP6}/64"], garp_repeat=4, garp_interval=0.05)
    dump: Tcpdump | None = None
    try:
        loops["a"].run(on_a.add())
        c.run("ping", "-c1", "-W2", VIP4)
        c.run("ping", "-6", "-c1", "-W2", VIP6)
        assert neigh_mac(c, VIP4) == mac_a and neigh_mac(c, VIP6) == mac_a
        loops["a"].run(on_a.remove())
        # control: b takes the addresses without announcing them -> the client still goes to a
        loops["b"].run(FloatingIP("eth0", [f"{VIP4}/24", f"{VIP6}/64"], garp_repeat=0).add())
        time.sleep(0.2)  # an absence: nothing to await
        assert neigh_mac(c, VIP4) == mac_a and neigh_mac(c, VIP6) == mac_a

        dump = Tcpdump(c, "arp or icmp6")
        started = time.monotonic()
        loops["b"].run(on_b.add())  # present already: a no-op, then the announcement; returns after burst 1
        first = time.monotonic() - started
        v4 = wait_for(lambda: neigh_mac(c, VIP4) == mac_b, 2, what="client's ARP entry for the VIP -> b")
        v6 = wait_for(lambda: neigh_mac(c, VIP6) == mac_b, 2, what="client's neighbour entry for the VIP6 -> b")
        moved = time.monotonic() - started
        assert v4 and v6
        record_property("add_returned_s", round(first, 4))
        record_property("client_entries_moved_s", round(moved, 4))
        assert first < 0.05 * 3 - 0.01  # did not wait for the repeats (4 bursts, 50 ms apart)
        loops["b"].run(on_b.wait_announced())
        garp = f"{mac_b} > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 42: Ethernet (len 6), IPv4 (len 4), " \
               f"Request who-has {VIP4} tell {VIP4}"
        na = f"neighbor advertisement, length 32, tgt is {VIP6}, Flags [override]"
        wait_for(lambda: dump is not None and dump.count(garp) >= 4 and dump.count(na) >= 4, 3,
                 what="4 GARPs and 4 NAs seen by tcpdump")
        lines = dump.stop()
        assert sum(garp in line for line in lines) == 4, lines
        assert sum(na in line for line in lines) == 4, lines
        # tcpdump's decoding of the NA: from b's MAC to the all-nodes group, from the VIP, hop limit 255
        nas = [line for line in lines if na in line]
        for expected in (f"{mac_b} > 33:33:00:00:00:01", "hlim 255", f"{VIP6} > ff02::1:", "[icmp6 sum ok]"):
            assert all(expected in line for line in nas), (expected, nas)
        c.run("ping", "-c1", "-W2", VIP4)  # and the traffic reaches b
        c.run("ping", "-6", "-c1", "-W2", VIP6)
    finally:
        if dump is not None:
            dump.stop()
        loops["a"].run(on_a.remove())
        loops["b"].run(on_b.remove())


def test_remove_cancels_pending_announcements(lan: Segment, loops: dict[str, NsLoop]) -> None:
    fip = FloatingIP("eth0", [f"{VIP4}/24"], garp_repeat=50, garp_interval=0.05)
    run = loops["b"].run
    try:
        run(fip.add())
        sent = fip.announcements
        assert sent == 1
        run(fip.remove())
        after = fip.announcements
        run(asyncio.sleep(0.15))  # three intervals: a repeat still scheduled would have gone out
        assert fip.announcements == after < 50
        assert VIP4 not in vips_on(lan["b"])
    finally:
        run(fip.remove())
