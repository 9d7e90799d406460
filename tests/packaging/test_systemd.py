"""The Debian package on a fresh Debian root, run by a real systemd as PID 1 (systemd-nspawn).

The container (``machine``, tests/packaging/conftest.py: one per test session, shared with
test_fdstore.py and test_bgp.py): the root (mmdebstrap, cached) is unpacked, booted with
``--private-network`` (its own loopback only), and the .deb built by ``make deb`` is installed with
``apt-get install ./saru_….deb`` inside, as the README says. Then, in order:

* the package: the ``saru`` system user (sysusers), its directories (tmpfiles), the units installed but
  not enabled, the shipped /etc/saru/saru.toml passes ``saru check-config``, the units pass
  ``systemd-analyze verify`` as installed and their exposure score, firewalld's own parser reads the
  service definition;
* saru.sdnotify under the real systemd: a ``Type=notify`` unit running the package's Python reaches
  ``active`` on READY=1 with its STATUS=, goes ``reloading`` on RELOADING=1, ``deactivating`` on
  STOPPING=1, and is killed by the watchdog when it stops sending WATCHDOG=1;
* ``systemctl start saru`` on a loopback config (userspace proxy on port 80 — needs
  CAP_NET_BIND_SERVICE — in front of two real HTTP servers, an external check, and VRRP with a floating
  IP on a veth of the container): active, the daemon runs as ``saru`` with exactly CAP_NET_ADMIN,
  CAP_NET_RAW and CAP_NET_BIND_SERVICE (CapPrm/Eff/Bnd; nothing inheritable or ambient in any of its
  threads), no new privileges, a seccomp filter; the external check ran as ``saru`` with no capability
  (CapInh/Prm/Eff/Amb 0); the nft plane through libnftables and through the ``nft`` command; traffic
  flows; ``systemctl reload`` with a bad file fails and keeps
  the unit and the table; kill -9 is restarted (Restart=on-failure); ``systemctl stop`` releases the VIP
  and the port; ``apt-get remove`` keeps the user and the configuration.

The service tests run the shipped unit as it is (``Type=notify``, ``WatchdogSec=``): readiness only
once the table is programmed and the HA node started, the watchdog restarting a SIGSTOPped daemon.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from tests.packaging.conftest import install
from tests.packaging.container import Container

pytestmark = pytest.mark.timeout(900)

VENV_SITE = "/usr/lib/saru/venv/lib/python3.11/site-packages"
SARU_CAPS = 0x3400  # CAP_NET_BIND_SERVICE (10), CAP_NET_ADMIN (12), CAP_NET_RAW (13)
MAX_EXPOSURE = 2.0
VIP = "10.77.0.100"

LDIRECTORD_CF = """\
checktimeout=2
checkinterval=1
logfile="/var/log/saru/ldirectord.log"
virtual=127.0.0.1:80
\treal=127.0.0.1:8081 masq
\treal=127.0.0.1:8082 masq
\tservice=http
\tscheduler=rr
\tprotocol=tcp
\tchecktype=negotiate
\trequest="check.html"
\treceive="ok"
virtual=127.0.0.1:81
\treal=127.0.0.1:8081 masq
\tprotocol=tcp
\tchecktype=external
\tcheckcommand="/usr/local/lib/saru-test/check-user"
"""
SARU_TOML = f"""\
[director]
config = "ldirectord.cf"
dataplane = "proxy"

[ha]
interface = "lbnet0"
vips = ["{VIP}/24"]
virtual_router_id = 77
"""
CHECK_USER = """\
#!/bin/sh
# an external check: records who runs it, and with which capabilities
grep ^Cap /proc/$$/status > /var/lib/saru/check-caps
id -un > /var/lib/saru/check-user
exit 0
"""
NOTIFY_PROBE = """\
# A Type=notify service made of saru.sdnotify, steered by files in /run/notify-probe/.
import os, sys, time
from saru.sdnotify import Notifier, ping_period, watchdog_interval

interval = watchdog_interval()
notifier = Notifier.from_environment(unset=True)
if interval != 2.0 or "NOTIFY_SOCKET" in os.environ:
    sys.exit(f"unexpected watchdog interval {interval!r} or environment")
notifier.ready(status="probe ready")
ctl = "/run/notify-probe/"
done = set()
while True:
    for step in ("reload", "stop"):
        if os.path.exists(ctl + step) and step not in done:
            done.add(step)
            if step == "reload":
                notifier.reloading(status="probe reloading")
                time.sleep(1.5)
                notifier.ready(status="probe reloaded")
            else:
                notifier.stopping(status="probe stopping")
                time.sleep(1.5)
                sys.exit(0)
    if not os.path.exists(ctl + "wedge"):
        notifier.watchdog()
    time.sleep(min(0.2, ping_period(interval)))
"""


# -- the package ---------------------------------------------------------------------------------------


def test_the_package_made_the_user_and_its_directories(machine: Container) -> None:
    passwd = machine.run("getent", "passwd", "saru").stdout.strip().split(":")
    assert passwd[0] == "saru" and int(passwd[2]) < 1000, passwd
    assert passwd[5] == "/var/lib/saru" and passwd[6] in ("/usr/sbin/nologin", "/sbin/nologin"), passwd
    for directory in ("/var/lib/saru", "/var/log/saru"):
        assert machine.run("stat", "-c", "%U:%G %a", directory).stdout.split() == ["saru:saru", "750"]
    assert machine.run("systemctl", "is-enabled", "saru.service", check=False).stdout.strip() == "disabled"
    assert machine.run("systemctl", "is-active", "saru.service", check=False).stdout.strip() == "inactive"
    # postinst byte-compiled the private venv (the daemon, as saru, cannot write there)
    assert machine.run("find", f"{VENV_SITE}/saru", "-name", "*.pyc").stdout.strip()
    assert machine.run("test", "-x", "/usr/lib/ocf/resource.d/saru/director", check=False).returncode == 0


def test_the_shipped_configuration_passes_check_config(machine: Container) -> None:
    proc = machine.run("saru", "check-config", "/etc/saru/saru.toml", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "/etc/saru/ldirectord.cf: OK" in proc.stdout


def test_the_installed_units_verify_and_keep_their_score(machine: Container) -> None:
    machine.run("cp", "/lib/systemd/system/saru@.service", "/run/saru@verify.service")
    proc = machine.run("systemd-analyze", "verify", "--man=no", "/lib/systemd/system/saru.service",
                       "/lib/systemd/system/saru-ldirectord.service", "/run/saru@verify.service", check=False)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stdout + proc.stderr
    for unit in ("saru.service", "saru-ldirectord.service"):
        out = machine.run("systemd-analyze", "security", "--no-pager", "--offline=true",
                          f"/lib/systemd/system/{unit}").stdout
        match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out)
        assert match and float(match.group(1)) <= MAX_EXPOSURE, out[-1500:]


def test_firewalld_reads_the_service_definition(machine: Container) -> None:
    code = ("from firewall.core.io.service import service_reader; "
            "s = service_reader('saru.xml', '/usr/lib/firewalld/services'); "
            "print(sorted(s.protocols), sorted(s.ports))")
    out = machine.run("python3", "-c", code).stdout.strip()
    assert out == "['vrrp'] [('8848', 'udp'), ('9180', 'tcp')]", out


# -- saru.sdnotify under a real systemd ---------------------------------------------------------------


def test_sdnotify_drives_a_real_systemd(machine: Container) -> None:
    machine.write("/usr/local/lib/saru-test/notify_probe.py", NOTIFY_PROBE)
    machine.run("mkdir", "-p", "/run/notify-probe")
    unit = "notify-probe.service"

    def state() -> dict[str, str]:
        return machine.show(unit, "ActiveState", "SubState", "StatusText", "Result", "MainPID")

    # systemd-run waits for the start job: with Type=notify that ends on READY=1
    machine.run("systemd-run", f"--unit={unit}", "--property=Type=notify", "--property=WatchdogSec=2s",
                "/usr/lib/saru/venv/bin/python", "/usr/local/lib/saru-test/notify_probe.py", timeout=60)
    assert state()["ActiveState"] == "active" and state()["StatusText"] == "probe ready", state()
    time.sleep(5)  # two and a half watchdog intervals: WATCHDOG=1 keeps it alive
    assert state()["ActiveState"] == "active", state()

    machine.run("touch", "/run/notify-probe/reload")
    machine.wait_for("RELOADING=1", lambda: state()["ActiveState"] == "reloading", timeout=10, interval=0.1)
    machine.wait_for("READY=1 after the reload",
                     lambda: state()["ActiveState"] == "active" and state()["StatusText"] == "probe reloaded")

    machine.run("touch", "/run/notify-probe/wedge")
    machine.wait_for("the watchdog", lambda: state()["Result"] == "watchdog", timeout=15)
    assert "Watchdog timeout" in machine.journal(unit)
    machine.run("systemctl", "reset-failed", unit, check=False)

    # STOPPING=1 from the service itself: deactivating while it is still running
    machine.run("rm", "-f", "/run/notify-probe/wedge", "/run/notify-probe/reload")
    machine.run("systemd-run", f"--unit={unit}", "--property=Type=notify", "--property=WatchdogSec=2s",
                "/usr/lib/saru/venv/bin/python", "/usr/local/lib/saru-test/notify_probe.py", timeout=60)
    machine.run("touch", "/run/notify-probe/stop")
    machine.wait_for("STOPPING=1", lambda: state()["ActiveState"] == "deactivating", timeout=10, interval=0.1)
    machine.wait_for("the probe's exit", lambda: state()["ActiveState"] == "inactive")


# -- saru.service ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def service(machine: Container) -> Container:
    """saru.service configured for the tests: real servers, the test's saru.toml and ldirectord.cf."""
    for name in ("rs1", "rs2"):
        machine.write(f"/srv/{name}/check.html", "ok\n")
        machine.write(f"/srv/{name}/index.html", f"{name}\n")
    machine.write("/usr/local/lib/saru-test/check-user", CHECK_USER, mode=0o755)
    machine.write("/etc/saru/saru.toml", SARU_TOML)
    machine.write("/etc/saru/ldirectord.cf", LDIRECTORD_CF)
    machine.sh("ip link add lbnet0 type veth peer name lbnet1 && ip addr add 10.77.0.1/24 dev lbnet0 && "
               "ip link set lbnet0 up && ip link set lbnet1 up")
    for name, port in (("rs1", 8081), ("rs2", 8082)):
        machine.run("systemd-run", f"--unit={name}", "--property=DynamicUser=yes", "python3", "-m",
                    "http.server", str(port), "--bind", "127.0.0.1", "--directory", f"/srv/{name}")
    for port in (8081, 8082):
        machine.wait_for(f"real server on {port}", lambda port=port: get(machine, f"http://127.0.0.1:{port}/"))
    machine.run("systemctl", "daemon-reload")
    return machine


def get(c: Container, url: str) -> str:
    """The body of a GET inside the container ('' when it fails)."""
    code = (f"import urllib.request as u\ntry: print(u.urlopen({url!r}, timeout=3).read().decode(), end='')\n"
            "except Exception: pass")
    return c.run("python3", "-c", code, check=False).stdout


def main_pid(c: Container) -> int:
    return int(c.show("saru.service", "MainPID")["MainPID"])


def proc_status(c: Container, pid: int) -> dict[str, str]:
    text = c.run("cat", f"/proc/{pid}/status").stdout
    return {k: v.strip() for k, v in (line.split(":", 1) for line in text.splitlines() if ":" in line)}


def threads_inheritable_ambient(c: Container, pid: int) -> dict[int, tuple[int, int]]:
    """CapInh and CapAmb of each of ``pid``'s threads (capabilities are per thread); a short-lived thread
    that ended between the listing and the reading (a child's watcher, a worker) is left out."""
    found: dict[int, tuple[int, int]] = {}
    for task in c.run("ls", f"/proc/{pid}/task").stdout.split():
        proc = c.run("cat", f"/proc/{pid}/task/{task}/status", check=False)
        if proc.returncode == 0:
            st = dict(line.split(":", 1) for line in proc.stdout.splitlines() if ":" in line)
            found[int(task)] = (int(st["CapInh"], 16), int(st["CapAmb"], 16))
    return found


def test_start_reaches_active_as_saru_with_exactly_its_capabilities(service: Container) -> None:
    service.run("systemctl", "start", "saru.service", timeout=150)
    assert service.run("systemctl", "is-active", "saru.service", check=False).stdout.strip() == "active", \
        service.journal("saru.service")
    status = service.run("systemctl", "status", "--no-pager", "saru.service", check=False).stdout
    assert "active (running)" in status and "/usr/bin/saru run -c /etc/saru/saru.toml" in status, status
    assert "check-config -c /etc/saru/saru.toml (code=exited, status=0/SUCCESS)" in status, status

    pid = main_pid(service)
    st = proc_status(service, pid)
    uid = service.run("id", "-u", "saru").stdout.strip()
    assert st["Uid"].split() == [uid] * 4 and st["Gid"].split()[0] == service.run("id", "-g", "saru").stdout.strip()
    for field in ("CapPrm", "CapEff", "CapBnd"):
        assert int(st[field], 16) == SARU_CAPS, f"{field}: {st[field]} (expected {SARU_CAPS:016x})"
    # kept for itself: nothing inheritable or ambient, in every thread (capabilities are per thread)
    threads = threads_inheritable_ambient(service, pid)
    assert pid in threads and set(threads.values()) == {(0, 0)}, threads
    assert st["NoNewPrivs"] == "1" and st["Seccomp"] == "2", st
    assert service.run("ps", "-o", "user=", "-p", str(pid)).stdout.strip() == "saru"

    # the proxy listens on port 80 (CAP_NET_BIND_SERVICE) and balances over both reals
    def both_reals() -> bool:
        return {get(service, "http://127.0.0.1/") for _ in range(4)} == {"rs1\n", "rs2\n"}

    service.wait_for("both reals behind port 80", both_reals)
    # the external check ran as the unit's user
    service.wait_for("the external check", lambda: service.run("cat", "/var/lib/saru/check-user",
                                                               check=False).stdout.strip() == "saru")
    # ... with no capability at all (it inherited the unit's three as ambient before)
    check_caps = dict(line.split(":\t") for line in service.run("cat", "/var/lib/saru/check-caps").stdout.splitlines())
    for field in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
        assert int(check_caps[field], 16) == 0, f"the external check's {field}: {check_caps[field]}"
    # VRRP (raw IP), the VIP (netlink) and gratuitous ARP (packet socket) work with these capabilities
    service.wait_for("the VIP on lbnet0", lambda: VIP in service.run("ip", "-br", "addr", "show", "lbnet0").stdout)
    # root's saru status finds the daemon's socket in /run/saru
    doc = json.loads(service.run("saru", "status", "--json", "-c", "/etc/saru/saru.toml").stdout)
    assert doc["pid"] == pid, doc.get("pid")
    assert service.run("stat", "-c", "%U %a", "/run/saru/ldirectord.cf.sock").stdout.split() == ["saru", "600"]


def test_readiness_comes_from_the_daemon(service: Container) -> None:
    """Type=notify as shipped: ``systemctl start`` returns only once the table is programmed."""
    service.run("systemctl", "restart", "saru.service", timeout=150)
    # no waiting: when start returns, every real has its verdict, the table is applied and the HA node
    # has started (as backup: VRRP makes it master after the master-down interval, then it serves)
    doc = json.loads(service.run("saru", "status", "-c", "/etc/saru/saru.toml", "--json").stdout)
    assert doc["ready"] is True and doc["apply_error"] is None
    assert doc["ha"]["state"] in ("backup", "master")
    assert all(r["state"] == "up" for v in doc["virtuals"] for r in v["reals"])
    assert service.show("saru.service", "StatusText")["StatusText"], "no STATUS= line"
    service.wait_for("the VIP", lambda: VIP in service.run("ip", "-br", "addr", "show", "lbnet0").stdout)
    assert get(service, "http://127.0.0.1/") in ("rs1\n", "rs2\n")
    service.wait_for("STATUS= saying MASTER", lambda: service.show("saru.service", "StatusText")[
        "StatusText"].startswith("MASTER, 2 virtuals, 3/3 reals up"))


def test_reload_of_a_bad_file_is_refused_and_the_unit_stays(service: Container) -> None:
    pid = main_pid(service)
    service.write("/etc/saru/ldirectord.cf", LDIRECTORD_CF.replace("scheduler=rr", "scheduler=rrr"))
    proc = service.run("systemctl", "reload", "saru.service", check=False, timeout=60)
    assert proc.returncode != 0, "systemctl reload accepted a bad file"
    assert service.run("systemctl", "is-active", "saru.service", check=False).stdout.strip() == "active"
    assert main_pid(service) == pid
    assert get(service, "http://127.0.0.1/") in ("rs1\n", "rs2\n")
    assert "rrr" in service.journal("saru.service")
    service.write("/etc/saru/ldirectord.cf", LDIRECTORD_CF)
    service.run("systemctl", "reload", "saru.service", timeout=60)
    assert main_pid(service) == pid


def test_a_killed_daemon_is_restarted(service: Container) -> None:
    pid = main_pid(service)
    restarts = int(service.show("saru.service", "NRestarts")["NRestarts"])
    service.run("kill", "-KILL", str(pid))
    service.wait_for("the restart", lambda: main_pid(service) not in (0, pid)
                     and service.show("saru.service", "ActiveState")["ActiveState"] == "active", timeout=30)
    assert int(service.show("saru.service", "NRestarts")["NRestarts"]) == restarts + 1
    service.wait_for("traffic after the restart", lambda: get(service, "http://127.0.0.1/"))


def test_the_watchdog_restarts_a_wedged_daemon(service: Container) -> None:
    service.write("/etc/systemd/system/saru.service.d/60-test-watchdog.conf",
                  "[Service]\nWatchdogSec=3s\nTimeoutAbortSec=5s\n")
    try:
        service.run("systemctl", "daemon-reload")
        service.run("systemctl", "restart", "saru.service", timeout=150)
        pid = main_pid(service)
        service.run("kill", "-STOP", str(pid))
        service.wait_for("the watchdog's restart", lambda: main_pid(service) not in (0, pid), timeout=30)
        assert "Watchdog timeout" in service.journal("saru.service", 200)
    finally:
        service.run("rm", "-f", "/etc/systemd/system/saru.service.d/60-test-watchdog.conf")
        service.run("systemctl", "daemon-reload")


def test_stop_releases_the_vip_and_the_port(service: Container) -> None:
    service.wait_for("the VIP", lambda: VIP in service.run("ip", "-br", "addr", "show", "lbnet0").stdout)
    pid = main_pid(service)
    service.run("systemctl", "stop", "saru.service", timeout=60)
    assert service.run("systemctl", "is-active", "saru.service", check=False).stdout.strip() == "inactive"
    assert VIP not in service.run("ip", "-br", "addr", "show", "lbnet0").stdout
    assert get(service, "http://127.0.0.1/") == ""
    assert service.run("test", "-e", f"/proc/{pid}", check=False).returncode != 0
    assert service.run("test", "-e", "/run/saru/ldirectord.cf.sock", check=False).returncode != 0
    assert "Stopping: cleaning the table" in service.journal("saru.service", 100)


@pytest.mark.parametrize("library", ["libnftables", "nft command"])
def test_the_nft_plane_runs_under_the_unit(service: Container, library: str) -> None:
    """nftables through libnftables as saru with CAP_NET_ADMIN, under the unit's seccomp filter; and
    through the ``nft`` command, which gets CAP_NET_ADMIN for its own exec (capset under the filter)."""
    dropin = "/etc/systemd/system/saru.service.d/60-test-nft-command.conf"
    if library == "nft command":
        service.write(dropin, "[Service]\nEnvironment=SARU_NFT_LIBRARY=\n")
        service.run("systemctl", "daemon-reload")
    service.write("/etc/saru/saru.toml", "[director]\nconfig = \"nft.cf\"\ndataplane = \"nft\"\n")
    service.write("/etc/saru/nft.cf", f"checkinterval=1\nlogfile=\"/var/log/saru/nft.log\"\n"
                                      f"virtual={VIP}:80\n\treal=10.77.0.2:80 masq\n\tprotocol=tcp\n\tchecktype=on\n")
    try:
        service.run("systemctl", "start", "saru.service", timeout=150)
        service.wait_for("Saru's nftables table", lambda: "table inet saru" in service.run(
            "nft", "list", "tables").stdout, timeout=30)
        assert service.run("systemctl", "is-active", "saru.service", check=False).stdout.strip() == "active"
        service.run("systemctl", "stop", "saru.service", timeout=60)
        assert "table inet saru" not in service.run("nft", "list", "tables").stdout
    finally:
        service.run("systemctl", "stop", "saru.service", check=False, timeout=60)
        service.write("/etc/saru/saru.toml", SARU_TOML)
        if library == "nft command":
            service.run("rm", "-f", dropin)
            service.run("systemctl", "daemon-reload")


def test_remove_keeps_the_user_and_the_configuration(service: Container, deb: Path) -> None:
    service.run("env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "remove", "-y", "-q", "saru", timeout=120)
    assert service.run("test", "-e", "/usr/bin/saru", check=False).returncode != 0
    assert service.run("getent", "passwd", "saru", check=False).returncode == 0
    assert service.run("test", "-f", "/etc/saru/saru.toml", check=False).returncode == 0
    # prerm removed the byte code postinst made: nothing of the package is left in /usr/lib/saru
    assert service.run("test", "-e", "/usr/lib/saru", check=False).returncode != 0
    # installed again over the kept user and configuration (the container is shared: conftest.py)
    install(service, deb)
    assert service.run("systemctl", "is-enabled", "saru.service", check=False).stdout.strip() == "disabled"

