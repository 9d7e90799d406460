"""The persistent-file helpers of ``saru realserver``: sysctl.d parsing and boot order, the network
configuration snippets and the detection of the system in use, the checklist renderer."""

from __future__ import annotations

from pathlib import Path

import pytest

from saru.setup import netconf, sysctl
from saru.setup.item import Item, exit_status, render


def test_keys_in_both_notations_are_the_same_key() -> None:
    assert sysctl.normalize("net.ipv4.conf.all.arp_ignore") == sysctl.normalize("net/ipv4/conf/all/arp_ignore")
    assert sysctl.conf_key("eth0.100", "rp_filter") == "net/ipv4/conf/eth0.100/rp_filter"
    assert sysctl.proc_path("net/ipv4/conf/eth0.100/rp_filter") == Path("/proc/sys/net/ipv4/conf/eth0.100/rp_filter")


def test_parse_ignores_comments_and_leading_dash() -> None:
    text = "# c\n; c\n\nnet.ipv4.ip_forward=1\n-net.ipv4.conf.all.arp_ignore = 1 \nnonsense\n"
    assert sysctl.parse(text) == {("net", "ipv4", "ip_forward"): "1", ("net", "ipv4", "conf", "all", "arp_ignore"): "1"}


def test_boot_order_sorts_by_name_etc_shadows_usr_and_sysctl_conf_is_last() -> None:
    files = {
        "/usr/lib/sysctl.d/50-default.conf": "net.ipv4.conf.all.rp_filter = 2\n",
        "/etc/sysctl.d/50-default.conf": "net.ipv4.conf.all.rp_filter = 0\n",  # shadows the /usr/lib one
        "/etc/sysctl.d/90-saru-realserver.conf": "net.ipv4.conf.all.arp_ignore = 1\n",
        "/run/sysctl.d/99-late.conf": "net.ipv4.conf.all.arp_ignore = 0\n",
        "/etc/sysctl.conf": "net.ipv4.ip_forward = 1\nnet.ipv4.conf.all.rp_filter = 1\n",
    }
    assert sysctl.boot_order(files) == ["/etc/sysctl.d/50-default.conf", "/etc/sysctl.d/90-saru-realserver.conf",
                                        "/run/sysctl.d/99-late.conf", "/etc/sysctl.conf"]
    values = sysctl.boot_values(files)
    assert values[sysctl.normalize("net.ipv4.conf.all.arp_ignore")] == ("0", "/run/sysctl.d/99-late.conf")
    assert values[sysctl.normalize("net.ipv4.conf.all.rp_filter")] == ("1", "/etc/sysctl.conf")


def test_read_config_files_under_a_root(tmp_path: Path) -> None:
    (tmp_path / "etc/sysctl.d").mkdir(parents=True)
    (tmp_path / "etc/sysctl.d/10-a.conf").write_text("a.b = 1\n")
    (tmp_path / "etc/sysctl.d/README").write_text("not a conf file\n")
    (tmp_path / "etc/sysctl.conf").write_text("a.b = 2\n")
    assert sysctl.read_config_files(tmp_path) == {"/etc/sysctl.d/10-a.conf": "a.b = 1\n",
                                                  "/etc/sysctl.conf": "a.b = 2\n"}


def test_snippets() -> None:
    vips = ["192.168.5.55", "192.168.5.56", "2001:db8::55"]
    [ifupdown] = netconf.snippets("ifupdown", vips)
    assert ifupdown.path == "/etc/network/interfaces.d/saru-realserver"
    assert "auto lo:saru1\niface lo:saru1 inet static\n    address 192.168.5.56/32\n" in ifupdown.content
    assert "iface lo inet6 static\n    address 2001:db8::55/128\n" in ifupdown.content
    [nm] = netconf.snippets("networkmanager", vips)
    assert nm.mode == 0o600 and nm.path.endswith(".nmconnection")
    assert "type=loopback" in nm.content and "address2=192.168.5.56/32" in nm.content
    assert "[ipv6]\nmethod=manual\naddress1=2001:db8::55/128" in nm.content
    assert netconf.snippets("none", vips) == []
    ifcfg = netconf.snippets("network-scripts", vips)
    assert [s.path for s in ifcfg] == ["/etc/sysconfig/network-scripts/ifcfg-lo:saru0",
                                       "/etc/sysconfig/network-scripts/ifcfg-lo:saru1"]
    assert ifcfg[1].content.endswith("DEVICE=lo:saru1\nIPADDR=192.168.5.56\nNETMASK=255.255.255.255\n"
                                     "ONBOOT=yes\nNAME=saru-realserver\n")
    with pytest.raises(ValueError):
        netconf.snippets("wicked", vips)


@pytest.mark.parametrize(("files", "expected"), [
    ({"etc/network/interfaces": "auto lo\niface lo inet loopback\n"}, "ifupdown"),
    ({"etc/network/interfaces": "# only comments\n", "etc/systemd/network/eth0.network": "[Match]\n"}, "networkd"),
    ({"etc/netplan/50.yaml": "network:\n  version: 2\n"}, "networkd"),
    ({"etc/sysconfig/network-scripts/ifcfg-lo": "DEVICE=lo\n"}, "network-scripts"),
    ({"etc/netplan/50.yaml": "network:\n  renderer: NetworkManager\n"}, "networkmanager"),
    ({"etc/systemd/system/multi-user.target.wants/NetworkManager.service": ""}, "networkmanager"),
    ({}, "none"),
])
def test_detect(tmp_path: Path, files: dict[str, str], expected: str) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert netconf.detect(tmp_path)[0] == expected


def test_ifupdown_source_line(tmp_path: Path) -> None:
    (tmp_path / "etc/network").mkdir(parents=True)
    (tmp_path / "etc/network/interfaces").write_text("auto lo\n#source /etc/network/interfaces.d/*\n")
    assert not netconf.ifupdown_sources_snippets(tmp_path)
    (tmp_path / "etc/network/interfaces").write_text("source /etc/network/interfaces.d/*\n")
    assert netconf.ifupdown_sources_snippets(tmp_path)


def test_render_and_exit_status() -> None:
    items = [Item("a", "ok", "fine", "never shown"), Item("b", "fail", "broken", "fix b"), Item("c", "standby")]
    assert render(items) == "[ ok ] a: fine\n[fail] b: broken\n       fix: fix b\n[stby] c"
    assert exit_status(items) == 1 and exit_status([items[0], items[2], Item("d", "warn")]) == 0
    assert Item("m", "missing").to_dict() == {"name": "m", "status": "missing", "detail": "", "fix": "", "ok": False}
