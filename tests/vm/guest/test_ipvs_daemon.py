"""``saru run --dataplane ipvs`` end to end in the guest: the kernel table follows real health checks,
and a restarted daemon adopts the live table without writing anything (ldirectord re-adds and
deletes every real at start-up: 13 ipvsadm commands for two reals and a fallback)."""

from __future__ import annotations

import re
from pathlib import Path

from tests.director import Director
from tests.vm.guest.conftest import ipvsadm, listing, saved_rules
from tests.vm.guest.lvs_nat import REAL_IPS, VIP, Topology, wait_until

CONFIG = f"""\
checktimeout=2
checkinterval=1
quiescent=no
cleanstop=no
logfile="{{log}}"

virtual={VIP}:80
\treal={REAL_IPS[0]}:80 masq 1
\treal={REAL_IPS[1]}:80 masq 2
\tservice=http
\tscheduler=wrr
\tchecktype=negotiate
\trequest="index.html"
\treceive="hello"
"""
START_TIMEOUT = 120.0  # python + pyroute2 start-up under emulation
TABLE_EVENT = re.compile(r"(Added|Restored|Quiescent|Deleted|Changed|Purged) (real|fallback|virtual) server")


def director(workdir: Path) -> Director:
    workdir.mkdir()
    return Director(workdir, CONFIG.format(log=workdir / "saru.log"), ("--dataplane", "ipvs"))


def dest_connections() -> dict[str, int]:
    """Destination ``ip:port`` → total connections, from ``ipvsadm -Ln --stats --exact``."""
    out = {}
    for line in ipvsadm("-Ln", "--stats", "--exact").splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[0] == "->" and fields[1][0].isdigit():
            out[fields[1]] = int(fields[2])
    return out


def test_daemon_follows_health_and_a_restart_writes_nothing(lvs_nat: Topology, tmp_path: Path) -> None:
    first = director(tmp_path / "first")
    try:
        first.wait_ready(START_TIMEOUT)
        assert listing() == {f"TCP {VIP}:80 wrr": {
            f"-> {REAL_IPS[0]}:80 Masq 1 0 0", f"-> {REAL_IPS[1]}:80 Masq 2 0 0",
        }}
        replies = lvs_nat.requests(6)
        assert replies.count("hello from rs1") == 2 and replies.count("hello from rs2") == 4

        lvs_nat.stop_real(2)
        at, _ = first.wait_for(rf"Deleted real server: {re.escape(REAL_IPS[1])}:80", 30)
        assert saved_rules() == {f"-A -t {VIP}:80 -s wrr", f"-a -t {VIP}:80 -r {REAL_IPS[0]}:80 -m -w 1"}
        assert lvs_nat.requests(2).count("hello from rs1") == 2

        lvs_nat.start_real(2)
        first.wait_for(rf"Added real server: {re.escape(REAL_IPS[1])}:80", 30, after=at)
        assert lvs_nat.requests(3).count("hello from rs2") >= 1
    finally:
        assert first.stop() == 0, first.log_text()
    rules = saved_rules()  # cleanstop=no: the table outlives the daemon
    assert len(rules) == 3
    # totals come with the kernel's 2-second estimator
    wait_until(lambda: all(count > 0 for count in dest_connections().values()), "connection counters", 15)
    connections = dest_connections()

    second = director(tmp_path / "second")
    try:
        second.wait_ready(START_TIMEOUT)
        second.wait_for(r"Real server up: .*10\.99\.3\.12", 30)
        assert not TABLE_EVENT.search(second.log_text()), second.log_text()
        assert saved_rules() == rules
        # a destination deleted and re-added would have its counters reset
        after = dest_connections()
        assert all(after[dest] >= count for dest, count in connections.items()), (connections, after)
    finally:
        assert second.stop() == 0, second.log_text()


def test_daemon_runs_the_sync_daemons_saru_toml_asks_for(lvs_nat: Topology, tmp_path: Path) -> None:
    """``[ipvs.sync] role = "both"``: the daemon starts a master and a backup sync daemon, and stops them."""
    workdir = tmp_path / "sync"
    workdir.mkdir()
    settings = workdir / "saru.toml"
    settings.write_text('[ipvs.sync]\ninterface = "d-rs1"\nsyncid = 42\n')
    run = Director(workdir, CONFIG.format(log=workdir / "saru.log"),
                   ("--dataplane", "ipvs", "--settings", str(settings)))
    try:
        run.wait_ready(START_TIMEOUT)
        daemons = ipvsadm("-L", "--daemon")
        assert "master sync daemon (mcast=d-rs1, syncid=42," in daemons, daemons
        assert "backup sync daemon (mcast=d-rs1, syncid=42," in daemons, daemons
        assert "IPVS connection sync: started the master" in run.log_text()
    finally:
        assert run.stop() == 0, run.log_text()
    assert ipvsadm("-L", "--daemon").strip() == ""
