"""The floating IP removed by hand on the master (``ip addr del``) comes back, announced, and is reported.

One ``saru run`` with ``[ha]`` in LD1 of the guide's topology (``tests.ha.bed``); the upstream router
accepts gratuitous ARP into its neighbour table (``arp_accept``), so the announcement of the re-added
VIP can be seen there without any traffic asking for it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ha.bed import HABed, dr_bed, wait_for
from tests.helpers import require
from tests.lab.guide import VIP

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def bed(tmp_path: Path) -> Iterator[HABed]:
    ok, why = HABed.available()
    require(ok, why)
    with dr_bed(tmp_path) as b:
        yield b


def neighbour_mac(bed: HABed, role: str, address: str) -> str | None:
    out = bed.run(role, "ip", "-j", "neigh", "show", address, "dev", "eth0").stdout
    entries = json.loads(out or "[]")
    return str(entries[0]["lladdr"]) if entries and entries[0].get("lladdr") else None


def test_vip_removed_by_hand_on_the_master_is_readded_and_announced(bed: HABed) -> None:
    ld1 = bed.director("ld1")
    try:
        ld1.wait_state("master")
        wait_for(lambda: bed.vip_on("ld1"), 5, "the VIP on LD1")
        bed.served()
        bed.sysctl("rt", "net.ipv4.conf.eth0.arp_accept=1")
        bed.run("rt", "ip", "neigh", "del", VIP, "dev", "eth0", check=False)
        assert neighbour_mac(bed, "rt", VIP) is None

        bed.run("ld1", "ip", "addr", "del", f"{VIP}/24", "dev", "eth0")
        assert not bed.vip_on("ld1")
        wait_for(lambda: bed.vip_on("ld1"), 10, "the VIP re-added on LD1")
        # announced: the router learnt the VIP's MAC from the gratuitous ARP alone
        assert wait_for(lambda: neighbour_mac(bed, "rt", VIP), 5, "the router learning the VIP") == bed.mac("ld1")
        bed.served()
        ha = ld1.ha()
        assert ha["state"] == "master" and ha["vip_up"] and ha["events"].get("vip_restored") == 1, ha
        assert any(f"HA: floating IP {VIP} was removed from eth0 behind Saru's back while MASTER; "
                   "re-added and announced" in e for e in ld1.events()), ld1.events()
    finally:
        bed.sysctl("rt", "net.ipv4.conf.eth0.arp_accept=0")
        assert ld1.stop() == 0, ld1.logtext()
    assert not bed.vip_on("ld1")
