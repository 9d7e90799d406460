"""Saru and keepalived 2.2 (Debian) as a VRRPv3 pair, in both roles, in the guide's topology.

LD1 runs ``saru run --settings`` (VRRP + VIP + nftables table); LD2 runs keepalived (``vrrp_version 3``,
its own ``virtual_ipaddress``) for the VIP and a Saru without ``[ha]`` for the table (a director whose
table is always programmed: whoever holds the VIP forwards). The client must be served by whichever
of the two holds the VIP.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator

import pytest

from tests.ha.bed import DIRECTORS, Director, HABed, dr_bed, keepalived_conf, start_keepalived, wait_for
from tests.ha.test_failover import reset
from tests.helpers import require

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HABed]:
    ok, why = HABed.available()
    require(ok, why)
    require(shutil.which("keepalived") is not None, "keepalived is not installed")
    with dr_bed(tmp_path_factory.mktemp("hak")) as b:
        yield b


@pytest.fixture
def cleanup(bed: HABed) -> Iterator[list[Director | subprocess.Popen[str]]]:
    started: list[Director | subprocess.Popen[str]] = []
    try:
        yield started
    finally:
        for item in reversed(started):
            if isinstance(item, Director):
                item.stop()
            elif item.poll() is None:
                item.terminate()
                item.wait(10)
        reset(bed)


def table_only(bed: HABed, started: list[Director | subprocess.Popen[str]]) -> Director:
    """A Saru without [ha] in LD2: the table is always programmed; keepalived moves the VIP."""
    d = bed.director("ld2", start=False, with_ha=False)
    started.append(d)
    wait_for(lambda: d.ask("status")["ready"], 20, "table-only saru ready in ld2")
    return d


def test_saru_master_keepalived_backup_then_keepalived_takes_over(
        bed: HABed, cleanup: list[Director | subprocess.Popen[str]]) -> None:
    table_only(bed, cleanup)
    ld1 = bed.director("ld1")
    cleanup.append(ld1)
    ld1.wait_state("master")
    keepalived = start_keepalived(bed, "ld2", keepalived_conf(state="BACKUP", priority=100))
    cleanup.append(keepalived)
    bed.served()
    # keepalived accepts Saru's adverts: it stays backup, the VIP stays on LD1
    wait_for(lambda: ld1.ha()["vrrp"]["adverts_sent"] > 20, 5, "adverts flowing")
    assert bed.vip_on("ld1") and not bed.vip_on("ld2")
    assert ld1.ha()["vrrp"]["other_master_seen"] == 0
    ld1.stop()  # priority 0: keepalived takes over after its skew time
    wait_for(lambda: bed.vip_on("ld2"), 5, "keepalived taking the VIP")
    assert bed.served(timeout=5) < 5


def test_keepalived_master_saru_backup_then_saru_takes_over(
        bed: HABed, cleanup: list[Director | subprocess.Popen[str]]) -> None:
    table_only(bed, cleanup)
    keepalived = start_keepalived(bed, "ld2", keepalived_conf(state="MASTER", priority=150))
    cleanup.append(keepalived)
    wait_for(lambda: bed.vip_on("ld2"), 10, "keepalived master")
    ld1 = bed.director("ld1")
    cleanup.append(ld1)
    ha = ld1.wait_state("backup")
    wait_for(lambda: ld1.ha()["master"] == DIRECTORS["ld2"], 5, "Saru hearing keepalived's adverts")
    assert ha["vrrp"]["bad_checksum"] == 0
    bed.served()
    keepalived.kill()  # SIGKILL: no priority 0, keepalived leaves the VIP behind like a crash
    keepalived.wait(5)
    bed.run("ld2", "ip", "link", "set", "eth0", "down")  # and the node is gone
    ld1.wait_state("master", timeout=5)
    assert bed.served(timeout=5) < 5
