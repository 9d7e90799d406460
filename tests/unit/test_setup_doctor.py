"""``saru doctor``'s pure checks (hand-made ``Facts``) and the frame codec of its probes."""

from __future__ import annotations

import ipaddress
import struct

from saru.config.ldirectord import parse_text
from saru.config.native import parse_settings
from saru.setup import doctor, frames
from saru.setup.doctor import ArpSeen, Facts, RealRef, judge_accepts, judge_arp, judge_return_path, make_plan
from saru.setup.netinfo import Route

GUIDE = """\
virtual=192.168.5.55:80
\treal=192.168.5.33:80 gate
\treal=192.168.5.43:80 gate
\tfallback=127.0.0.1:80 gate
\tscheduler=rr
"""
NAT = "virtual=192.168.5.55:80\n\treal=10.0.7.11:80 masq\n\treal=127.0.0.1:80 masq\n"


def facts(**sysctls: str) -> Facts:
    base = {"net.ipv4.ip_forward": "1", "net.ipv4.conf.all.send_redirects": "0",
            "net.ipv4.conf.eth2.send_redirects": "0", "net.ipv4.conf.all.rp_filter": "0",
            "net.ipv4.conf.eth2.rp_filter": "1"}
    base.update(sysctls)
    return Facts(sysctls=dict(base), local={"192.168.5.55": "eth2", "192.168.5.35": "eth2"},
                 routes={"192.168.5.33": Route("eth2", None, "192.168.5.35"),
                         "192.168.5.43": Route("eth2", None, "192.168.5.35"),
                         "10.0.7.11": Route("eth2", None, "10.0.7.1"),
                         "192.168.5.55": Route("lo", None, "192.168.5.55", "local")},
                 default_interface="eth2", ipvs=(False, "no IPVS"), nft=(True, "nf_tables"),
                 conntrack=(True, "loaded"))


def test_plan_from_the_guides_config_skips_loopback_reals() -> None:
    plan = make_plan(parse_text(GUIDE), None)
    assert plan.vips == ("192.168.5.55",) and plan.dr and not plan.nat
    assert [r.address for r in plan.reals] == ["192.168.5.33", "192.168.5.43"]
    nat = make_plan(parse_text(NAT), parse_settings('[ha]\ninterface = "eth2"\nvips = ["192.168.5.55/24"]\n'))
    assert [r.address for r in nat.reals] == ["10.0.7.11"] and nat.ha_vips == {"192.168.5.55"}


def test_forwarding_is_required_for_nat_and_recommended_for_dr() -> None:
    off = facts(**{"net.ipv4.ip_forward": "0"})
    dr = doctor.check_forwarding(make_plan(parse_text(GUIDE), None), off)
    assert [i.status for i in dr] == ["warn"] and "direct routing works without it" in dr[0].detail
    nat = doctor.check_forwarding(make_plan(parse_text(NAT), None), off)
    assert nat[0].status == "fail" and nat[0].fix.startswith("sysctl -w net.ipv4.ip_forward=1")
    assert doctor.check_forwarding(make_plan(parse_text(NAT), None), facts())[0].status == "ok"


def test_redirects_on_a_one_armed_nat_director_fail() -> None:
    plan = make_plan(parse_text(NAT), None)
    on = facts(**{"net.ipv4.conf.eth2.send_redirects": "1"})
    item = doctor.check_redirects(plan, on)[0]
    assert item.status == "fail" and "net.ipv4.conf.eth2.send_redirects=0" in item.fix
    assert "net.ipv4.conf.all.send_redirects=0" in item.fix
    assert doctor.check_redirects(make_plan(parse_text(GUIDE), None), on)[0].status == "warn"
    assert doctor.check_redirects(plan, facts())[0].status == "ok"


def test_strict_rp_filter_fails_only_when_clients_are_routed_back_elsewhere() -> None:
    plan = make_plan(parse_text(GUIDE), None)
    assert doctor.check_rp_filter(plan, facts())[0].status == "ok"
    asymmetric = facts()
    asymmetric.default_interface = "eth0"
    item = doctor.check_rp_filter(plan, asymmetric)[0]
    assert item.status == "fail" and "net.ipv4.conf.eth2.rp_filter=2" in item.fix


def test_dataplane_choice() -> None:
    plan = make_plan(parse_text(GUIDE), None)
    assert doctor.check_dataplane(plan, facts()).status == "ok"
    none = facts()
    none.nft = (False, "no nftables")
    assert doctor.check_dataplane(plan, none).status == "fail"
    ipvs_wanted = make_plan(parse_text(GUIDE), parse_settings('[director]\ndataplane = "ipvs"\n'))
    assert doctor.check_dataplane(ipvs_wanted, facts()).fix == "modprobe ip_vs"


def test_vip_ownership_local_standby_nowhere_and_missing() -> None:
    ha = make_plan(parse_text(GUIDE), parse_settings('[ha]\ninterface = "eth2"\nvips = ["192.168.5.55/24"]\n'))
    here = facts()
    assert doctor.check_vip(ha, here, "192.168.5.55", []).status == "ok"
    away = facts()
    away.local = {"192.168.5.45": "eth2"}
    assert doctor.check_vip(ha, away, "192.168.5.55", ["aa:bb:cc:dd:ee:ff"]).status == "standby"
    assert doctor.check_vip(ha, away, "192.168.5.55", []).status == "fail"
    plain = make_plan(parse_text(GUIDE), None)
    item = doctor.check_vip(plain, away, "192.168.5.55", None)
    assert item.status == "fail" and item.fix.startswith("ip addr add 192.168.5.55/32 dev ")


def test_judge_arp_names_the_guilty_real() -> None:
    macs = {"192.168.5.33": "02:00:00:00:00:33", "192.168.5.43": "02:00:00:00:00:43"}
    item, others = judge_arp(ArpSeen("192.168.5.55", "eth2", ("02:00:00:00:00:43",), macs), True, False)
    assert item.status == "fail" and "real 192.168.5.43 (02:00:00:00:00:43)" in item.detail and others == []
    item, _ = judge_arp(ArpSeen("192.168.5.55", "eth2", (), macs), True, False)
    assert item.status == "ok"
    item, others = judge_arp(ArpSeen("192.168.5.55", "eth2", ("02:00:00:00:00:99",), macs), True, False)
    assert item.status == "fail" and "conflict" in item.detail
    item, others = judge_arp(ArpSeen("192.168.5.55", "eth2", ("02:00:00:00:00:99",), macs), False, True)
    assert item.status == "ok" and others == ["02:00:00:00:00:99"]  # the active peer
    item, _ = judge_arp(ArpSeen("192.168.5.55", "eth2", (), {"192.168.5.33": None}), True, False)
    assert item.status == "warn"


def test_judge_accepts_and_return_path() -> None:
    real = RealRef("192.168.5.33", 80, "gate", "tcp", "192.168.5.55")
    assert judge_accepts(real, "syn-ack").status == "ok"
    assert judge_accepts(real, "rst").status == "warn"
    assert judge_accepts(real, None).status == "fail"
    nat = RealRef("10.0.7.11", 80, "masq", "tcp", "192.168.5.55")
    mac = "02:00:00:00:07:11"
    assert judge_return_path(nat, "10.0.7.1", mac, mac, None, "203.0.113.254").status == "ok"
    other = judge_return_path(nat, "10.0.7.1", mac, "02:00:00:00:07:fe", None, "203.0.113.254")
    assert other.status == "fail" and "another host" in other.detail
    bypass = judge_return_path(nat, "10.0.7.1", mac, None, "syn-ack", "203.0.113.254")
    assert bypass.status == "fail" and bypass.fix == "on 10.0.7.11: ip route replace default via 10.0.7.1"
    assert judge_return_path(nat, "10.0.7.1", mac, None, None, "203.0.113.254").status == "warn"


def test_frames_round_trip_and_checksums() -> None:
    syn = frames.tcp("10.0.0.1", "10.0.0.2", 40000, 80, 7, 0, frames.TCP_SYN)
    pseudo = (ipaddress.IPv4Address("10.0.0.1").packed + ipaddress.IPv4Address("10.0.0.2").packed
              + struct.pack("!BBH", 0, 6, len(syn)))
    assert frames.checksum(pseudo + syn) == 0
    packet = frames.ipv4("10.0.0.2", "10.0.0.1", 6,
                         frames.tcp("10.0.0.2", "10.0.0.1", 80, 40000, 99, 8, frames.TCP_SYN | frames.TCP_ACK), 5)
    assert frames.checksum(packet[:20]) == 0
    frame = frames.ethernet("02:00:00:00:00:01", "02:00:00:00:00:02", frames.ETH_P_IP, packet)
    reply = frames.parse_ip(frame)
    assert reply is not None and (reply.kind, reply.src_mac, reply.src, reply.sport, reply.ack) == (
        "syn-ack", "02:00:00:00:00:02", "10.0.0.2", 80, 8)
    echo = frames.icmp_echo(0x1234, 1)
    assert frames.checksum(echo) == 0
    answer = bytes([0]) + echo[1:2] + b"\0\0" + echo[4:]
    answer = answer[:2] + struct.pack("!H", frames.checksum(answer)) + answer[4:]
    parsed = frames.parse_ip(frames.ethernet("02:00:00:00:00:01", "02:00:00:00:00:02", frames.ETH_P_IP,
                                               frames.ipv4("10.0.0.2", "10.0.0.1", 1, answer)))
    assert parsed is not None and parsed.kind == "echo-reply" and parsed.ident == 0x1234
    assert frames.parse_ip(b"\0" * 10) is None
    six = frames.tcp("2001:db8::1", "2001:db8::2", 40000, 80, 7, 0, frames.TCP_SYN)
    assert frames.checksum(frames.pseudo_header("2001:db8::1", "2001:db8::2", 6, len(six)) + six) == 0
    protocol, echo6 = frames.echo_request("2001:db8::1", "2001:db8::2", 9)
    assert protocol == 58 and frames.checksum(frames.pseudo_header("2001:db8::1", "2001:db8::2", 58, 19) + echo6) == 0
    reply6 = bytes([129]) + echo6[1:]
    got = frames.parse_ip(frames.ethernet("02:00:00:00:00:01", "02:00:00:00:00:02", frames.ETH_P_IPV6,
                                          frames.ip_packet("2001:db8::2", "2001:db8::1", 58, reply6)))
    assert got is not None and (got.kind, got.src, got.ident) == ("echo-reply", "2001:db8::2", 9)
