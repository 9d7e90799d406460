"""``saru doctor`` asks a real firewalld whether it lets VRRP, the API port and the IPVS sync port in.

firewalld (Debian's package) runs inside a ``saru-…`` network namespace the test creates, on a D-Bus
system bus of its own (a ``dbus-daemon`` with the test's configuration; ``DBUS_SYSTEM_BUS_ADDRESS``
points firewall-cmd and firewalld at it) and with its own configuration directory holding the shipped
service definition (packaging/firewalld/saru.xml): the host's firewall and bus are never touched.
Doctor runs in the namespace with a saru.toml that has ``[ha]``, ``[api]`` on a non-loopback address and
``[ipvs.sync]``; firewalld's runtime configuration is changed between runs with firewall-cmd: the
default zone drops all three (fail, with the fix), the ``saru`` service lets them in, a trusted zone
(target ACCEPT) too, a rich rule gives a warning; without firewalld (no bus, no firewall-cmd) doctor
says so and nothing fails.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tests.helpers import require
from tests.lab import ROOT, Lab, can_build, wait_for

pytestmark = pytest.mark.timeout(120)

SBIN = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
ADDRESS = "10.77.9.1"
BUS_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="root"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"""
FIREWALLD_CONF = "DefaultZone=public\nFirewallBackend=nftables\nCleanupOnExit=yes\nIndividualCalls=no\n"
SARU_TOML = f"""\
[director]
config = "{{cf}}"

[ha]
interface = "eth0"
vips = ["10.77.9.100/24"]
virtual_router_id = 91

[api]
listen = "{ADDRESS}:9180"
insecure = true

[ipvs.sync]
interface = "eth0"
"""
NAMES = {"vrrp": "firewalld lets VRRP (IP protocol 112) in on eth0",
         "api": f"firewalld lets the API ({ADDRESS}:9180) in on {ADDRESS}",
         "sync": "firewalld lets IPVS connection sync in on eth0"}


class FirewalldLab(Lab):
    """One namespace with ``eth0`` (a veth, its peer in the namespace too), a dbus-daemon and firewalld of its own."""

    roles: ClassVar[tuple[str, ...]] = ("fw",)
    tag: ClassVar[str] = "fw"

    def __init__(self, workdir: Path) -> None:
        super().__init__()
        self.workdir = workdir
        self.socket = workdir / "system_bus_socket"

    @staticmethod
    def available() -> tuple[bool, str]:
        return can_build("dbus-daemon", "firewalld", "firewall-cmd", what="firewalld in a namespace", path=SBIN,
                         hint=" (Debian: apt-get install firewalld)")

    def environ(self) -> dict[str, str]:
        return {**super().environ(), "DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={self.socket}", "PATH": SBIN}

    def up(self) -> FirewalldLab:
        super().up()
        self.ip("fw", "link", "add", "eth0", "type", "veth", "peer", "name", "eth1")
        self.ip("fw", "addr", "add", f"{ADDRESS}/24", "dev", "eth0")
        self.ip("fw", "link", "set", "eth0", "up")
        self.ip("fw", "link", "set", "eth1", "up")
        etc = self.workdir / "firewalld"
        (etc / "services").mkdir(parents=True)
        (etc / "firewalld.conf").write_text(FIREWALLD_CONF)
        shutil.copy(ROOT / "packaging" / "firewalld" / "saru.xml", etc / "services" / "saru.xml")
        (self.workdir / "bus.conf").write_text(BUS_CONF.format(socket=self.socket))
        log = (self.workdir / "firewalld.log").open("w")
        self.popen("fw", "dbus-daemon", f"--config-file={self.workdir / 'bus.conf'}", "--nofork", "--nopidfile",
                   stdout=log, stderr=log)
        wait_for(self.socket.exists, timeout=10, what="the test's D-Bus system bus")
        self.popen("fw", "firewalld", "--nofork", "--nopid", "--system-config", str(etc), "--log-target", "console",
                   stdout=log, stderr=log)
        wait_for(lambda: self.cmd("--state", check=False).stdout.strip() == "running", timeout=60, interval=0.2,
                 what="firewalld running")
        return self

    def cmd(self, *args: str, check: bool = True) -> Any:
        return self.run("fw", "firewall-cmd", *args, check=check)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FirewalldLab]:
    ok, why = FirewalldLab.available()
    require(ok, why)
    with FirewalldLab(tmp_path_factory.mktemp("firewalld")) as made:
        yield made


@pytest.fixture(scope="module")
def settings(lab: FirewalldLab) -> Path:
    cf = lab.workdir / "ldirectord.cf"
    cf.write_text("virtual=10.77.9.100:80\n\treal=10.77.9.2:80 gate\n\tchecktype=on\n")
    toml = lab.workdir / "saru.toml"
    toml.write_text(SARU_TOML.format(cf=cf))
    return toml


def doctor(lab: FirewalldLab, settings: Path, **env: str) -> tuple[int, dict[str, dict[str, Any]]]:
    argv = [sys.executable, "-m", "saru", "doctor", "--no-probe", "--json", "-c", str(settings)]
    if env:
        argv = ["env", *(f"{k}={v}" for k, v in env.items()), *argv]
    got = lab.run("fw", *argv, check=False, timeout=60)
    assert got.returncode in (0, 1), got.stderr
    return got.returncode, {item["name"]: item for item in json.loads(got.stdout)["items"]}


def firewall_items(items: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {key: items[name] for key, name in NAMES.items() if name in items}


def test_the_default_zone_drops_them_and_doctor_says_how_to_open(lab: FirewalldLab, settings: Path) -> None:
    code, items = doctor(lab, settings)
    found = firewall_items(items)
    assert set(found) == set(NAMES), sorted(items)
    for key, item in found.items():
        assert item["status"] == "fail", (key, item)
        assert "zone public" in item["detail"], item
        assert item["fix"] == "firewall-cmd --permanent --zone=public --add-service=saru && firewall-cmd --reload"
    assert code == 1


def test_the_saru_service_lets_them_in(lab: FirewalldLab, settings: Path) -> None:
    lab.cmd("--zone=public", "--add-service=saru")
    try:
        _, items = doctor(lab, settings)
        found = firewall_items(items)
        assert {k: (i["status"], i["detail"]) for k, i in found.items()} == {
            key: ("ok", "zone public: service saru") for key in NAMES}
    finally:
        lab.cmd("--zone=public", "--remove-service=saru")


def test_ports_protocols_and_a_trusted_zone(lab: FirewalldLab, settings: Path) -> None:
    lab.cmd("--zone=public", "--add-protocol=vrrp")
    lab.cmd("--zone=public", "--add-port=9000-9200/tcp")
    try:
        _, items = doctor(lab, settings)
        found = firewall_items(items)
        assert found["vrrp"]["status"] == "ok" and found["vrrp"]["detail"] == "zone public: protocol vrrp"
        assert found["api"]["status"] == "ok" and found["api"]["detail"] == "zone public: port 9180/tcp"
        assert found["sync"]["status"] == "fail"  # 8848/udp is still closed
        assert found["sync"]["fix"].endswith("--add-service=saru && firewall-cmd --reload")
    finally:
        lab.cmd("--zone=public", "--remove-protocol=vrrp")
        lab.cmd("--zone=public", "--remove-port=9000-9200/tcp")
    lab.cmd("--zone=trusted", "--add-interface=eth0")
    try:
        _, items = doctor(lab, settings)
        found = firewall_items(items)
        assert found["vrrp"]["detail"] == found["sync"]["detail"] == "zone trusted: target ACCEPT"
        assert found["api"]["detail"] == "zone trusted: target ACCEPT"  # the zone of the interface holding it
    finally:
        lab.cmd("--zone=trusted", "--remove-interface=eth0")


def test_a_rich_rule_gives_a_warning_not_a_verdict(lab: FirewalldLab, settings: Path) -> None:
    rule = "rule family=ipv4 source address=10.77.9.0/24 accept"
    lab.cmd("--zone=public", f"--add-rich-rule={rule}")
    try:
        _, items = doctor(lab, settings)
        found = firewall_items(items)
        assert {i["status"] for i in found.values()} == {"warn"}, found
        assert "1 rich rule(s) may" in found["vrrp"]["detail"]
    finally:
        lab.cmd("--zone=public", f"--remove-rich-rule={rule}")


def test_without_firewalld_doctor_says_so(lab: FirewalldLab, settings: Path) -> None:
    _, items = doctor(lab, settings, DBUS_SYSTEM_BUS_ADDRESS=f"unix:path={lab.workdir / 'no-bus'}")
    assert items["firewalld"]["status"] == "ok" and items["firewalld"]["detail"].startswith("not running"), items
    assert not firewall_items(items)
    _, items = doctor(lab, settings, PATH="/nonexistent")
    assert items["firewalld"] == {"name": "firewalld", "status": "ok", "ok": True, "fix": "",
                                  "detail": "not installed (no firewall-cmd): nothing to check"}
