"""VIPcheck against the real kernel: who answers for the floating IP, and nobody learns the prober.

Three hosts on one bridge: the prober ``a``, a peer ``b`` and a third host ``t``. The probes run on an
event loop whose thread lives in ``a``'s namespace (``NsLoop``); the holders are plain kernels with
the VIP configured by iproute2, answering as Linux does.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator

import pytest

from saru.ha.vipcheck import Answer, VIPCheckError, neighbour_mac, probe_all, probe_vip
from tests.helpers import require
from tests.lab import Host, NsLoop, Segment

VIP4, VIP6 = "10.97.1.50", "fd00:97:1::50"
A4, A6 = "10.97.1.1", "fd00:97:1::1"
TIMEOUT = 0.2


@pytest.fixture(scope="module")
def lan() -> Iterator[Segment]:
    ok, why = Segment.available()
    require(ok, why)
    with Segment({"a": [f"{A4}/24", f"{A6}/64"], "b": ["10.97.1.2/24", "fd00:97:1::2/64"],
                  "t": ["10.97.1.3/24", "fd00:97:1::3/64"]}, tag="k") as segment:
        yield segment


@pytest.fixture(scope="module")
def prober(lan: Segment) -> Iterator[NsLoop]:
    loop = NsLoop(lan["a"])
    try:
        yield loop
    finally:
        loop.close()


@pytest.fixture
def clean(lan: Segment) -> Iterator[Segment]:
    """Every host without the VIPs and with an empty neighbour table, before and after the test."""
    def scrub() -> None:
        for host in lan.hosts.values():
            for vip in (f"{VIP4}/24", f"{VIP6}/64"):
                host.ip("addr", "flush", "dev", "eth0", "to", vip.split("/")[0])
            host.ip("neigh", "flush", "dev", "eth0", "nud", "all")
            if host.name == "t" and shutil.which("nft"):
                host.run("nft", "delete", "table", "netdev", "saru_test", check=False)
    scrub()
    try:
        yield lan
    finally:
        scrub()


def hold(host: Host, *vips: str) -> None:
    for vip in vips:
        host.add_address(vip)


def learnt_about(host: Host, mac: str, addresses: tuple[str, ...]) -> list[dict[str, str]]:
    """Neighbour entries of ``host`` that name the prober (by MAC or address)."""
    entries = json.loads(host.ip("-j", "neigh", "show", "dev", "eth0") or "[]")
    return [e for e in entries if e.get("lladdr") == mac or e.get("dst") in addresses]


def timed(prober: NsLoop, coro: object) -> tuple[object, float]:
    started = time.monotonic()
    result = prober.run(coro)  # type: ignore[arg-type]
    return result, time.monotonic() - started


@pytest.mark.parametrize("vip", [VIP4, VIP6])
def test_nobody_holds_the_vip(clean: Segment, prober: NsLoop, vip: str) -> None:
    answer, elapsed = timed(prober, probe_vip("eth0", vip, TIMEOUT))
    assert answer is None
    assert TIMEOUT - 0.01 <= elapsed < TIMEOUT + 0.1


@pytest.mark.parametrize(("vip", "method"), [(VIP4, "ARP"), (VIP6, "NDP")])
def test_a_third_host_holding_the_vip_is_found_and_learns_nothing(
        clean: Segment, prober: NsLoop, vip: str, method: str, record_property: pytest.RecordProperty) -> None:
    t, a = clean["t"], clean["a"]
    hold(t, f"{vip}/24" if method == "ARP" else f"{vip}/64")
    answer, elapsed = timed(prober, probe_vip("eth0", vip, TIMEOUT))
    assert answer == Answer(vip, t.mac(), method)
    assert elapsed < TIMEOUT / 4  # answered to the first probe; no echo was needed
    record_property(f"vipcheck_{method}_answer_s", round(elapsed, 4))
    # RFC 5227 / DAD probes: the holder has not learnt the prober's address or MAC
    assert learnt_about(t, a.mac(), (A4, A6, a.link_local())) == []


@pytest.mark.parametrize("vip", [VIP4, VIP6])
def test_ignored_mac_is_not_an_answer(clean: Segment, prober: NsLoop, vip: str) -> None:
    t = clean["t"]
    hold(t, f"{vip}/24" if ":" not in vip else f"{vip}/64")
    answer, elapsed = timed(prober, probe_vip("eth0", vip, TIMEOUT, ignore_macs=[t.mac().upper()]))
    assert answer is None
    assert elapsed >= TIMEOUT - 0.01  # it kept listening (and pinged) for the whole timeout


@pytest.mark.parametrize(("vip", "rule"), [
    (VIP4, "arp saddr ip 0.0.0.0 drop"),
    (VIP6, "ip6 saddr :: icmpv6 type nd-neighbor-solicit drop"),
])
def test_echo_finds_a_holder_that_ignores_probes(clean: Segment, prober: NsLoop, vip: str, rule: str) -> None:
    require(shutil.which("nft") is not None, "nft is not installed")
    t = clean["t"]
    hold(t, f"{vip}/24" if ":" not in vip else f"{vip}/64")
    t.run("nft", "add", "table", "netdev", "saru_test")
    t.run("nft", "add", "chain", "netdev", "saru_test", "in",
          "{ type filter hook ingress device eth0 priority 0; }")
    t.run("nft", "add", "rule", "netdev", "saru_test", "in", *rule.split())
    answer, elapsed = timed(prober, probe_vip("eth0", vip, TIMEOUT))
    # the echo (sent at half the timeout) makes our kernel resolve the VIP the ordinary way: the
    # holder's ARP reply / solicited NA to that, or its echo reply, is the answer
    assert answer is not None and answer.mac == t.mac() and answer.method in ("ARP", "NDP", "ping")
    assert TIMEOUT / 2 - 0.01 <= elapsed < TIMEOUT
    # with both neighbour entries static, only the echo reply can tell
    a = clean["a"]
    a.ip("neigh", "replace", vip, "lladdr", t.mac(), "dev", "eth0", "nud", "permanent")
    t.ip("neigh", "replace", A4 if ":" not in vip else A6, "lladdr", a.mac(), "dev", "eth0", "nud", "permanent")
    answer, elapsed = timed(prober, probe_vip("eth0", vip, TIMEOUT))
    assert answer == Answer(vip, t.mac(), "ping")
    assert TIMEOUT / 2 - 0.01 <= elapsed < TIMEOUT


@pytest.mark.parametrize("vip", [VIP4, VIP6])
def test_probe_all_finds_every_answering_host(clean: Segment, prober: NsLoop, vip: str) -> None:
    b, t = clean["b"], clean["t"]
    prefix = "/24" if ":" not in vip else "/64"
    hold(b, vip + prefix)
    hold(t, vip + prefix)
    answers = prober.run(probe_all("eth0", vip, TIMEOUT))
    assert sorted(a.mac for a in answers) == sorted([b.mac(), t.mac()])
    assert {a.address for a in answers} == {vip}
    # and probe_vip stops at the first of them
    first = prober.run(probe_vip("eth0", vip, TIMEOUT))
    assert first is not None and first.mac in (b.mac(), t.mac())


def test_neighbour_mac_reads_the_kernel_table(clean: Segment, prober: NsLoop) -> None:
    a, b = clean["a"], clean["b"]
    assert prober.run(neighbour_mac("eth0", "10.97.1.2")) is None
    a.run("ping", "-c1", "-W2", "10.97.1.2")
    a.run("ping", "-6", "-c1", "-W2", "fd00:97:1::2")
    assert prober.run(neighbour_mac("eth0", "10.97.1.2")) == b.mac()
    assert prober.run(neighbour_mac("eth0", "fd00:97:1::2")) == b.mac()


def test_bad_input_is_a_clear_error(prober: NsLoop) -> None:
    with pytest.raises(VIPCheckError, match="not an IP address"):
        prober.run(probe_vip("eth0", "10.97.1.500"))
    with pytest.raises(VIPCheckError, match="no network interface named 'nosuch0'"):
        prober.run(probe_vip("nosuch0", VIP4))
    with pytest.raises(VIPCheckError, match="MAC"):
        prober.run(probe_vip("eth0", VIP4, ignore_macs=["not-a-mac"]))
