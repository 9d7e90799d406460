"""Two ``saru run --settings`` directors (VRRPv3, nftables data plane) failing over in the guide's topology.

One ``HABed`` per module (client, upstream router, LD1, LD2, FE1/FE2 with nginx, direct routing as in
the guide); every test starts its directors and leaves the bed clean (daemons stopped, VIPs and nft
tables gone, links up, blocking rules removed). Traffic goes from the client namespace through the VIP.
Outage bounds are generous: the timing goals are measured by ``bench/failover.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ha.bed import DIRECTORS, NAT_GW, UPSTREAM, Director, HABed, dr_bed, wait_for
from tests.helpers import require
from tests.lab.guide import REALS, VIP, VIP6

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HABed]:
    ok, why = HABed.available()
    require(ok, why)
    with dr_bed(tmp_path_factory.mktemp("ha")) as b:
        yield b


@pytest.fixture
def directors(bed: HABed) -> Iterator[list[Director]]:
    started: list[Director] = []
    try:
        yield started
    finally:
        for d in started:
            d.stop()
        reset(bed)


def reset(bed: HABed) -> None:
    """What a test may leave behind (kill -9 leaves the VIP and the nft tables)."""
    bed.unblock_bridge("cut")
    for role in DIRECTORS:
        bed.run(role, "ip", "link", "set", "eth0", "up", check=False)
        bed.run(role, "ip", "route", "replace", "default", "via", UPSTREAM, check=False)  # link down flushed it
        for cidr in (f"{VIP}/24", f"{VIP6}/64", f"{NAT_GW}/24"):
            bed.run(role, "ip", "addr", "del", cidr, "dev", "eth0", check=False)
        bed.run(role, "nft", "delete", "table", "netdev", "saru", check=False)
        bed.run(role, "nft", "delete", "table", "inet", "saru", check=False)
        bed.run(role, "nft", "delete", "table", "inet", "blk", check=False)
    bed.run("rt", "ip", "addr", "del", f"{VIP}/24", "dev", "eth0", check=False)


def pair(bed: HABed, started: list[Director], **ha: object) -> tuple[Director, Director]:
    """LD1 then LD2: LD1 master, LD2 backup, the client served."""
    ld1 = bed.director("ld1", **ha)
    started.append(ld1)
    ld1.wait_state("master")
    ld2 = bed.director("ld2", **ha)
    started.append(ld2)
    ld2.wait_state("backup")
    wait_for(lambda: (ha := ld2.ha())["master"] == DIRECTORS["ld1"] and ha["peer_macs"], 5, "ld2 hearing ld1")
    bed.served()
    return ld1, ld2


def owned_in_table(d: Director) -> bool:
    return any(s["service"]["address"] == VIP for s in d.services())


# --------------------------------------------------------------------------------------------------


def test_kill9_failover_then_restart_removes_stale_vip_without_failback(bed: HABed, directors: list[Director]) -> None:
    ld1, ld2 = pair(bed, directors)
    assert bed.vip_on("ld1") and not bed.vip_on("ld2")
    assert owned_in_table(ld1) and not owned_in_table(ld2)  # the backup's table is gated
    status = subprocess.run([sys.executable, "-m", "saru", "status", "--control", str(ld2.control)],
                            capture_output=True, text=True, check=True).stdout
    assert "HA: BACKUP, master 10.77.6.2 (vrid 51 on eth0, priority 100/100)" in status, status

    ld1.kill9()  # leaves its VIP and nft table behind, like a crashed daemon
    ha = ld2.wait_state("master", timeout=5)
    assert "no advertisement" in ha["reason"], ha
    assert bed.served(timeout=5) < 5
    assert owned_in_table(ld2)

    again = bed.director("ld1")  # a new run finds the VIP of the killed one and removes it first
    directors.append(again)
    again.wait_state("backup")
    events = again.events()
    assert any("left by a previous run" in e for e in events), events
    assert not bed.vip_on("ld1") and not owned_in_table(again)
    time.sleep(1.0)  # several master-down intervals: the healthy returning node must not take over
    assert ld2.state() == "master" and again.state() == "backup"
    assert bed.curl() is not None


def test_graceful_stop_hands_over_with_priority_zero_ipv6_vip_too(bed: HABed, directors: list[Director]) -> None:
    ld1, ld2 = pair(bed, directors, extra_vips=(f"{VIP6}/64",))
    assert ld1.ha()["vip_up"] and f" {VIP6}/64 " in bed.run("ld1", "ip", "-6", "-o", "addr").stdout
    start = time.monotonic()
    assert ld1.stop() == 0
    ha = ld2.wait_state("master", timeout=5)
    assert "priority 0" in ha["reason"], ha
    assert time.monotonic() - start < 5
    assert bed.served(timeout=5) < 5
    assert not bed.vip_on("ld1")
    assert f" {VIP6}/64 " not in bed.run("ld1", "ip", "-6", "-o", "addr").stdout
    assert f" {VIP6}/64 " in bed.run("ld2", "ip", "-6", "-o", "addr").stdout
    wait_for(lambda: bed.run("cl", "ping", "-6", "-c1", "-W1", VIP6, check=False).returncode == 0, 5,
             "the IPv6 VIP answering from LD2")  # the unsolicited NA moved the router's neighbour entry


def test_link_down_of_the_master_then_back_no_failback(bed: HABed, directors: list[Director]) -> None:
    ld1, ld2 = pair(bed, directors)
    bed.ip("ld1", "link", "set", "eth0", "down")
    ld2.wait_state("master", timeout=5)
    ld1.wait_state("fault", timeout=5)
    assert bed.served(timeout=5) < 5
    assert not bed.vip_on("ld1")
    bed.ip("ld1", "link", "set", "eth0", "up")
    ld1.wait_state("backup", timeout=5)
    time.sleep(1.0)  # the returning node stays backup: no fail-back
    assert ld2.state() == "master" and ld1.state() == "backup"
    assert bed.curl() is not None


def test_upstream_loss_lowers_priority_and_hands_over(bed: HABed, directors: list[Director]) -> None:
    ping = {"hosts": [UPSTREAM], "multiplier": 50, "interval": 0.1, "timeout": 0.2, "attempts": 2}
    ld1, ld2 = pair(bed, directors, ping=ping)
    bed.nft("ld1", "add table inet blk\n"
                   "add chain inet blk out { type filter hook output priority 0; }\n"
                   f"add rule inet blk out ip daddr {UPSTREAM} icmp type echo-request drop\n")
    ld2.wait_state("master", timeout=5)
    ha1 = ld1.wait_state("backup", timeout=5)
    assert ha1["effective_priority"] == 50 and ha1["ping"]["unreachable"] == [UPSTREAM]
    assert any(f"upstream {UPSTREAM} unreachable; effective priority now 50" in e for e in ld1.events())
    assert bed.served(timeout=5) < 5
    bed.run("ld1", "nft", "delete", "table", "inet", "blk")
    wait_for(lambda: ld1.ha()["effective_priority"] == 100, 5, "ld1's upstream back")
    assert ld2.state() == "master"  # back to equal priority: no fail-back


def test_vipcheck_conflict_keeps_both_backup_and_names_the_mac(bed: HABed, directors: list[Director],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SARU_LOG_REMINDER_INTERVAL", "1")  # the once-a-minute reminder, shortened
    bed.ip("rt", "addr", "add", f"{VIP}/24", "dev", "eth0")  # a third host holds the VIP
    rt_mac = bed.mac("rt")
    started = time.monotonic()
    ld1 = bed.director("ld1")
    directors.append(ld1)
    ld2 = bed.director("ld2")
    directors.append(ld2)
    wait_for(lambda: ld1.ha()["conflict"] and ld2.ha()["conflict"], 5, "both directors seeing the conflict")
    deadline = time.monotonic() + 2.5  # several master-down intervals: nobody takes the VIP
    while time.monotonic() < deadline:
        assert ld1.state() == "backup" and ld2.state() == "backup"
        time.sleep(0.05)
    assert ld1.ha()["conflict"]["mac"] == rt_mac
    assert any("already answers" in e and rt_mac in e for e in ld1.events())
    assert not bed.vip_on("ld1") and not bed.vip_on("ld2")
    # the persistent veto is logged once, then reminded with a count — not every 0.36 s, and its
    # reason does not grow "(after a veto) (after a veto) …" (issue #14 §5)
    seconds = time.monotonic() - started
    for d in (ld1, ld2):
        log = d.logtext()
        assert log.count("mastership vetoed (") == 1, log
        assert 1 <= log.count("mastership still vetoed (") <= seconds + 1, log  # at most one a second
        assert "after a veto" not in log and "vetoes since the last message" in log
    bed.ip("rt", "addr", "del", f"{VIP}/24", "dev", "eth0")
    wait_for(lambda: "master" in (ld1.state(), ld2.state()), 5, "a master once the VIP is free")
    master = ld1 if ld1.state() == "master" else ld2
    assert "mastership no longer vetoed after" in master.logtext()
    assert bed.served(timeout=5) < 5


#: one VRRPv3 advert for VRID 51 whose checksum is wrong (it covers nothing: 0)
BAD_ADVERT = bytes([0x31, 51, 100, 1, 0x00, 0x0A, 0x00, 0x00]) + bytes([10, 77, 6, 240])
SEND_BAD = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(sys.argv[1]))
end = time.monotonic() + float(sys.argv[3])
while time.monotonic() < end:
    s.sendto(bytes.fromhex(sys.argv[2]), ("224.0.0.18", 0))
    time.sleep(0.05)
"""


def test_a_peer_sending_malformed_adverts_is_reminded_of_not_repeated(
        bed: HABed, directors: list[Director], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SARU_LOG_REMINDER_INTERVAL", "1")
    ld1, _ld2 = pair(bed, directors)
    bed.run("rt", sys.executable, "-c", SEND_BAD, UPSTREAM, BAD_ADVERT.hex(), "2.5", timeout=20)  # ~50 adverts
    log = ld1.logtext()
    first = [line for line in log.splitlines() if f"dropped a packet from {UPSTREAM}" in line]
    assert first and "times since the last message" not in first[0], log
    reminders = [line for line in first if "times since the last message" in line]
    assert len(first) - len(reminders) == 1, first  # one full line, the rest are reminders with a count
    assert 1 <= len(reminders) <= 3, first
    assert ld1.state() == "master"


def test_split_brain_both_masters_then_one_per_rfc(bed: HABed, directors: list[Director]) -> None:
    ld1, ld2 = pair(bed, directors)
    bed.block_bridge("cut", "ip protocol 112")  # the VRRP path between the directors is cut
    ld2.wait_state("master", timeout=5)
    assert ld1.state() == "master"  # both masters now
    bed.unblock_bridge("cut")
    wait_for(lambda: sorted((ld1.state(), ld2.state())) == ["backup", "master"], 5, "one master again")
    # equal priorities: the higher primary address (LD2) wins, RFC 5798 6.4.3
    assert ld2.state() == "master"
    seen = ld1.ha()["vrrp"]["other_master_seen"] + ld2.ha()["vrrp"]["other_master_seen"]
    assert seen >= 1
    wait_for(lambda: any("split brain:" in e for e in ld1.events() + ld2.events()), 5, "the split brain event")
    wait_for(lambda: any("split brain resolved" in e for e in ld1.events() + ld2.events()), 5, "resolution")
    assert bed.served(timeout=5) < 5


def test_preempt_fails_back_to_the_higher_priority(bed: HABed, directors: list[Director]) -> None:
    ld1 = bed.director("ld1", priority=150, preempt=True)
    directors.append(ld1)
    ld1.wait_state("master")
    ld2 = bed.director("ld2", priority=100, preempt=True)
    directors.append(ld2)
    ld2.wait_state("backup")
    wait_for(lambda: ld2.ha()["peer_macs"], 5, "ld2 hearing ld1")  # else ld1's leftover VIP is a stranger's
    ld1.kill9()
    ld2.wait_state("master", timeout=5)
    again = bed.director("ld1", priority=150, preempt=True)
    directors.append(again)
    again.wait_state("master", timeout=5)  # preempt: the higher priority takes the VIP back
    ld2.wait_state("backup", timeout=5)
    assert bed.served(timeout=5) < 5


def test_nat_failover_moves_the_gateway_address_too(bed: HABed, directors: list[Director]) -> None:
    """NAT: the reals' gateway (10.77.7.1) floats with the VIP; each director has its own 10.77.7.x."""
    for role, own in (("ld1", "10.77.7.2/24"), ("ld2", "10.77.7.3/24")):
        bed.ip(role, "addr", "add", own, "dev", "eth0")
    for role in ("fe1", "fe2"):
        bed.ip(role, "addr", "add", f"{REALS[role][0]}/24", "dev", "eth0")
        bed.ip(role, "route", "replace", "default", "via", NAT_GW)
    try:
        ld1, ld2 = pair(bed, directors, mode="nat", extra_vips=(f"{NAT_GW}/24",))
        assert bed.curl() is not None and f" {NAT_GW}/24 " in bed.run("ld1", "ip", "-4", "-o", "addr").stdout
        bed.ip("ld1", "link", "set", "eth0", "down")
        ld2.wait_state("master", timeout=5)
        ld1.wait_state("fault", timeout=5)
        assert bed.served(timeout=5) < 5  # new connections: NAT state of the old master is gone
        assert f" {NAT_GW}/24 " in bed.run("ld2", "ip", "-4", "-o", "addr").stdout
    finally:
        for role in ("fe1", "fe2"):
            bed.run(role, "ip", "route", "replace", "default", "via", UPSTREAM, check=False)
            bed.run(role, "ip", "addr", "del", f"{REALS[role][0]}/24", "dev", "eth0", check=False)
        for role, own in (("ld1", "10.77.7.2/24"), ("ld2", "10.77.7.3/24")):
            bed.run(role, "ip", "addr", "del", own, "dev", "eth0", check=False)


@pytest.mark.parametrize("warm", [False, True], ids=["cold-standby", "warm-standby"])
def test_planned_switchover_keeps_a_long_download_going(bed: HABed, directors: list[Director],
                                                        tmp_path: Path, warm: bool) -> None:
    for role in ("fe1", "fe2"):  # the same 24 MB file on both reals
        root = bed.workdir / f"nginx-{role}" / "root"
        with (root / "big.bin").open("wb") as handle:
            handle.truncate(24 * 1024 * 1024)
    ld1, ld2 = pair(bed, directors, warm_standby=warm)
    assert owned_in_table(ld2) == warm
    download = bed.popen("cl", "curl", "-s", "-f", "--limit-rate", "6M", "-o", str(tmp_path / "big.bin"),
                         "-w", "%{size_download} %{http_code}", f"http://{VIP}/big.bin",
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(0.5)  # the download is established before the switchover
    assert download.poll() is None
    test = bed.run("cl", sys.executable, "-m", "saru", "failover-test", "--control", str(ld1.control),
                   "--probe", f"{VIP}:80", "--http", "/", "--back", "--json", check=False, timeout=60)
    assert test.returncode == 0, test.stderr
    result = json.loads(test.stdout)
    assert [s["action"] for s in result["steps"]] == ["resign", "takeover"]
    assert result["steps"][0]["to"] == DIRECTORS["ld2"]
    for step in result["steps"]:
        assert step["client"]["longest_gap"] < 3, result
    out, err = download.communicate(timeout=30)
    assert download.returncode == 0, err
    assert out.split() == [str(24 * 1024 * 1024), "200"]
    assert ld1.state() == "master" and ld2.state() == "backup"


# -- pure pieces (no namespaces) ---------------------------------------------------------------------


def test_notify_commands_and_status_line_and_probe_gap(tmp_path: Path) -> None:
    from saru.cli.daemon_cmds import ha_line
    from saru.cli.failover_test import Probe
    from saru.cli.target import resolve_target
    from saru.config.native import parse_settings
    from saru.ha.node import NodeState, notify_argv

    settings = parse_settings('[ha]\ninterface = "eth0"\nvips = ["10.0.0.1/24"]\nnotify = "/bin/n --x"\n'
                              'notify_master = ["/bin/m", "a b"]\n').ha
    assert settings is not None
    assert notify_argv(settings, NodeState.MASTER, 90) == [["/bin/m", "a b"], ["/bin/n", "--x", "master", "51", "90"]]
    assert notify_argv(settings, NodeState.FAULT, 90) == [["/bin/n", "--x", "fault", "51", "90"]]
    line = ha_line({"state": "backup", "master": "10.0.0.2", "vrid": 51, "interface": "eth0", "priority": 100,
                    "effective_priority": 50, "vips": ["10.0.0.1/24"], "vip_up": False,
                    "ping": {"unreachable": ["10.0.0.254"]}, "events": {"transitions": 2, "errors": 0},
                    "reason": "startup"})
    assert line == ("HA: BACKUP, master 10.0.0.2 (vrid 51 on eth0, priority 50/100) VIP 10.0.0.1/24 down; "
                    "upstream lost: 10.0.0.254 [transitions=2] — startup")
    probe = Probe("127.0.0.1", 1)
    probe.samples = [(0.0, True), (0.05, True), (0.1, False), (0.15, False), (0.2, True), (0.25, True)]
    assert probe.gap(0.0, 0.25) == {"longest_gap": 0.15, "attempts": 6, "failed": 2}
    (tmp_path / "ld.cf").write_text("")
    (tmp_path / "saru.toml").write_text('[director]\nconfig = "ld.cf"\ndataplane = "nft"\n')
    target = resolve_target(str(tmp_path / "saru.toml"), require_config=True)
    assert (target.config, target.settings_path, target.dataplane) == (
        str(tmp_path / "ld.cf"), str(tmp_path / "saru.toml"), "nft")
    (tmp_path / "bare.toml").write_text("")
    with pytest.raises(ValueError, match="director\\] config is not set"):
        resolve_target(str(tmp_path / "bare.toml"), require_config=True)
    target = resolve_target(str(tmp_path / "ld.cf"), require_config=True)
    assert (target.config, target.settings_path, target.dataplane) == (str(tmp_path / "ld.cf"), None, "auto")
