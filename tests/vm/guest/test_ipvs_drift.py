"""Drift on the IPVS plane, in the guest's real IPVS: ``ipvsadm -C`` and ``ipvsadm -e`` by hand behind a
running ``saru run --dataplane ipvs`` are found, reported and re-applied, with no health change; another
tool's service is neither drift nor touched."""

from __future__ import annotations

import re
from pathlib import Path

from tests.director import Director
from tests.vm.guest.conftest import ipvsadm, saved_rules
from tests.vm.guest.lvs_nat import REAL_IPS, VIP, Topology, wait_until
from tests.vm.guest.test_ipvs_daemon import CONFIG, START_TIMEOUT

PORT = 8083  # not 80: lingering TIME_WAIT entries would count against other tests' VIP:80 dests
FOREIGN = "10.99.9.9:80"


def test_table_changed_by_hand_is_found_and_reapplied(lvs_nat: Topology, tmp_path: Path) -> None:
    workdir = tmp_path / "drift"
    workdir.mkdir()
    config = CONFIG.format(log=workdir / "saru.log").replace(f"virtual={VIP}:80", f"virtual={VIP}:{PORT}")
    assert f"virtual={VIP}:{PORT}" in config
    run = Director(workdir, config, ("--dataplane", "ipvs"))
    try:
        run.wait_ready(START_TIMEOUT)
        run.wait_for(rf"Real server up: .*{re.escape(REAL_IPS[1])}", 30)
        rules = saved_rules()
        assert len(rules) == 3, rules

        ipvsadm("-C")  # by hand: the periodic check (every 2 s) puts the table back
        wait_until(lambda: saved_rules() == rules, "the cleared table re-applied", 30)
        run.wait_for(rf"Table drift on the ipvs data plane \(found by periodic check\): virtual service "
                     rf"tcp {re.escape(VIP)}:{PORT} missing \(with 2 reals\); re-applied Saru's table", 10)
        assert "hello from rs1" in lvs_nat.requests(3, PORT)

        ipvsadm("-A", "-t", FOREIGN, "-s", "rr")  # another tool's service: not drift, left alone
        ipvsadm("-e", "-t", f"{VIP}:{PORT}", "-r", f"{REAL_IPS[0]}:80", "-m", "-w", "5")
        doc = run.status()  # status checks the kernel and repairs before it answers
        assert saved_rules() == rules | {f"-A -t {FOREIGN} -s rr"}
        drift = doc["drift"]
        assert drift["count"] == 2 and drift["last_check"] == "dump", drift
        assert drift["last_detail"] == f"real {REAL_IPS[0]}:80 of tcp {VIP}:{PORT} changed (weight 5 → 1)", drift
        assert [r["weight"] for r in doc["virtuals"][0]["reals"]] == [1, 2]
        assert run.status()["drift"]["count"] == 2  # in sync again; the foreign service is no drift
        assert "Real server down" not in run.log_text()  # no health change brought the table back
    finally:
        assert run.stop() == 0, run.log_text()
    assert f"-A -t {FOREIGN} -s rr" in saved_rules()
