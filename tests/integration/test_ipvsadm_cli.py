"""``saru ipvsadm`` against a running daemon (proxy data plane): list, manual setup, save/restore."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import free_port
from tests.integration.director import Director, get
from tests.integration.test_daemon_e2e import CHECK, config_text


def ipvsadm(director: Director, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "saru", "ipvsadm", "--control", str(director.control), *args],
                          input=stdin, capture_output=True, text=True, timeout=30)


def test_list_manual_setup_save_and_restore(nginx, tmp_path):
    rs1 = nginx(name="rs1", files={CHECK: "up and running\n"})
    rs2 = nginx(name="rs2", files={CHECK: "up and running\n"})
    port = free_port()
    d = Director(tmp_path, config_text(tmp_path, port, [(rs1.port, 1)]))
    try:
        d.wait_ready()
        listing = ipvsadm(d, "-L", "-n")
        assert listing.returncode == 0, listing.stderr
        assert listing.stdout.splitlines()[:4] == [
            "IP Virtual Server version 1.2.1 (size=4096)",
            "Prot LocalAddress:Port Scheduler Flags",
            "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn",
            f"TCP  127.0.0.1:{port} rr",
        ]
        assert listing.stdout.splitlines()[4].startswith(f"  -> 127.0.0.1:{rs1.port}")
        # the guide's manual LVS setup: a service of our own, by hand
        manual = free_port()
        assert ipvsadm(d, "-A", "-t", f"127.0.0.1:{manual}", "-s", "rr").returncode == 0
        for rs in (rs1, rs2):
            assert ipvsadm(d, "-a", "-t", f"127.0.0.1:{manual}", "-r", f"127.0.0.1:{rs.port}", "-m").returncode == 0
        assert {get(manual)[1] for _ in range(4)} == {"rs1", "rs2"}
        again = ipvsadm(d, "-a", "-t", f"127.0.0.1:{manual}", "-r", f"127.0.0.1:{rs1.port}", "-m")
        assert (again.returncode, again.stderr.strip()) == (255, "Destination already exists")
        missing = ipvsadm(d, "-d", "-t", "127.0.0.1:1", "-r", "127.0.0.1:2")
        assert (missing.returncode, missing.stderr.strip()) == (255, "No such service")
        bad = ipvsadm(d, "-a", "-t", "nonsense", "-r", "127.0.0.1:2")
        assert bad.returncode == 2
        saved = ipvsadm(d, "-S", "-n").stdout
        assert f"-A -t 127.0.0.1:{manual} -s rr" in saved.splitlines()
        assert f"-a -t 127.0.0.1:{manual} -r 127.0.0.1:{rs2.port} -m -w 1" in saved.splitlines()
        # delete the manual service, restore it from the saved rules, compare
        assert ipvsadm(d, "-D", "-t", f"127.0.0.1:{manual}").returncode == 0
        rules = "\n".join(line for line in saved.splitlines() if f":{manual} " in line + " ")
        restored = ipvsadm(d, "-R", stdin=rules + "\n")
        assert restored.returncode == 0, restored.stderr
        assert ipvsadm(d, "-S", "-n").stdout == saved
        assert "manual change (saru ipvsadm): Added virtual server" in d.log_text()
        stats = ipvsadm(d, "-L", "-n", "--stats", "-t", f"127.0.0.1:{manual}")
        assert stats.returncode == 0 and stats.stdout.splitlines()[0].split()[-1] == "OutBytes"
    finally:
        d.stop()
