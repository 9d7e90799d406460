"""``saru.setup.firewalld``'s pure part: what saru.toml needs opened, firewall-cmd's text, the verdicts.
(The real firewalld is asked in tests/kernel/test_doctor_firewalld.py.)"""

from __future__ import annotations

from saru.model import Settings
from saru.model.settings import APISettings, HASettings, IPVSSyncSettings
from saru.setup.firewalld import Opening, ServiceInfo, judge, openings, parse_service, parse_zones, port_covered

ZONES = """\
public (active)
  target: default
  icmp-block-inversion: no
  interfaces: eth0
  sources:
  services: ssh web
  ports: 9000-9200/tcp 53/udp
  protocols:
  forward: yes
  rich rules:
\trule family="ipv4" source address="10.0.0.0/8" accept
trusted
  target: ACCEPT
  interfaces:
  services:
  ports:
  protocols:
  rich rules:
"""


def test_parse_zones_and_services() -> None:
    zones = parse_zones(ZONES)
    assert zones["public"].interfaces == ["eth0"] and zones["public"].services == ["ssh", "web"]
    assert zones["public"].rich_rules == ['rule family="ipv4" source address="10.0.0.0/8" accept']
    assert zones["trusted"].target == "ACCEPT" and zones["trusted"].rich_rules == []
    info = parse_service("web\n  ports: 80/tcp\n  protocols: vrrp\n  includes: https\n")
    assert info == ServiceInfo(("80/tcp",), ("vrrp",), ("https",))


def test_port_ranges_and_protocols() -> None:
    assert port_covered("9180/tcp", ["9000-9200/tcp"]) and not port_covered("9180/udp", ["9000-9200/tcp"])
    assert port_covered("8848/udp", ["8848/udp"]) and not port_covered("8849/udp", ["8848/udp"])


def test_openings_follow_the_settings() -> None:
    assert openings(None) == () and openings(Settings()) == ()
    loopback = Settings(api=APISettings(listen="127.0.0.1:9180"))
    assert openings(loopback) == ()  # only this host reaches it
    full = Settings(ha=HASettings(interface="eth1", vips=()), api=APISettings(listen="0.0.0.0:9443", insecure=True),
                    ipvs_sync=IPVSSyncSettings(interface="eth2", port=9000))
    assert [(o.kind, o.value, o.interface, o.address) for o in openings(full)] == [
        ("protocol", "vrrp", "eth1", None), ("port", "9443/tcp", None, None), ("port", "9000/udp", "eth2", None)]


def test_a_service_included_by_another_counts() -> None:
    zones = parse_zones(ZONES.replace('\trule family="ipv4" source address="10.0.0.0/8" accept\n', ""))
    infos = {"ssh": ServiceInfo(("22/tcp",)), "web": ServiceInfo(("80/tcp",), (), ("lb",)),
             "lb": ServiceInfo((), ("vrrp",))}
    [item] = judge([Opening("VRRP", "protocol", "vrrp", interface="eth0")], zones, "public", {}, infos.get)
    assert (item.status, item.detail) == ("ok", "zone public: service lb")
    [item] = judge([Opening("sync", "port", "8848/udp", interface="eth9")], zones, "public", {}, infos.get)
    assert item.status == "fail" and item.fix == ("firewall-cmd --permanent --zone=public --add-port=8848/udp && "
                                                  "firewall-cmd --reload")
