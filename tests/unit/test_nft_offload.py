"""``[nft] flowtable`` (saru.dataplane.nft.offload): the rendered flowtable and forward rule, the
transactions that keep them, reading them back, the setting and its refusals (pure; the kernel
test is tests/vm/guest/test_nft_flowtable.py, in the QEMU guest: the host kernel has no flowtable)."""

from __future__ import annotations

from pathlib import Path

import pytest

from saru.cli.main import main
from saru.config.diagnostics import ConfigError
from saru.config.native import parse_settings
from saru.dataplane.base import DataplaneError
from saru.dataplane.nft.environment import Environment
from saru.dataplane.nft.offload import flowtable_spec, listed_spec
from saru.dataplane.nft.parse import parse
from saru.dataplane.nft.plane import NftDataplane
from saru.dataplane.nft.render import build
from saru.dataplane.nft.transaction import UNKNOWN, Existing, transaction, unknown_script
from saru.dataplane.select import capabilities, unsupported
from saru.model import Dest, NftSettings, Table
from tests.unit.doubles import config as parse_cf
from tests.unit.test_nft_render import svc

FT = Environment(flowtable=("eth1", "eth0"))
WEB = svc("tcp", "192.168.6.240", 80, [Dest("192.168.7.11", 80, "masq"), Dest("192.168.7.12", 8080, "masq")])
DNS6 = svc("udp", "2001:db8:6::240", 53, [Dest("2001:db8:7::11", 53, "masq")], family=6)
OFFLOAD4 = ("ct state established ct status dnat ct original ip daddr @ft_v4 ct reply ip saddr @ft_r4 "
            "flow add @ft")


def test_flowtable_and_forward_rule_only_for_the_planes_nat_flows() -> None:
    nat = build(Table.of([WEB, DNS6]), FT).scripts["inet"]
    assert nat.flowtables == {"ft": 'hook ingress priority filter; devices = { "eth0", "eth1" };'}
    assert nat.chains["ft_fwd"] == "type filter hook forward priority filter; policy accept;"
    assert nat.rules["ft_fwd"] == [OFFLOAD4, OFFLOAD4.replace(" ip ", " ip6 ").replace("4", "6")]
    assert nat.elements["ft_v4"] == {"192.168.6.240": "192.168.6.240"}
    assert nat.elements["ft_r4"] == {"192.168.7.11": "192.168.7.11", "192.168.7.12": "192.168.7.12"}
    assert nat.elements["ft_r6"] == {"2001:db8:7::11": "2001:db8:7::11"}
    # without the setting nothing of it; nor when there is nothing to offload (local reals, fwmarks)
    assert not build(Table.of([WEB]), Environment()).scripts["inet"].flowtables
    local = svc("tcp", "192.168.6.240", 81, [Dest("127.0.0.1", 81, "masq")])
    marked = svc("fwm", "", 0, [Dest("192.168.7.11", 0, "masq")], fwmark=1)
    nothing = build(Table.of([local, marked]), FT).scripts["inet"]
    assert not nothing.flowtables and "ft_fwd" not in nothing.chains


def test_changes_of_reals_are_set_elements_and_the_flowtable_stays() -> None:
    before = build(Table.of([WEB]), FT).scripts["inet"]
    one = svc("tcp", "192.168.6.240", 80, [Dest("192.168.7.11", 80, "masq")])
    after = build(Table.of([one]), FT).scripts["inet"]
    commands = transaction(before, after)
    assert "delete element inet saru ft_r4 { 192.168.7.12 }" in commands
    assert not [c for c in commands if "flowtable" in c or "ft_fwd" in c]


def test_device_change_recreates_the_flowtable_after_its_rules_are_flushed() -> None:
    before = build(Table.of([WEB]), FT).scripts["inet"]
    after = build(Table.of([WEB]), Environment(flowtable=("eth0",))).scripts["inet"]
    commands = transaction(before, after)
    assert commands == [
        "flush chain inet saru ft_fwd",
        "delete flowtable inet saru ft",
        'add flowtable inet saru ft { hook ingress priority filter; devices = { "eth0" }; }',
        f"add rule inet saru ft_fwd {OFFLOAD4}",
    ]
    # the setting removed: rules first, then the chain, sets and flowtable; the rest stays
    plain = build(Table.of([WEB]), Environment()).scripts["inet"]
    gone = transaction(before, plain)
    assert gone.index("flush chain inet saru ft_fwd") < gone.index("delete flowtable inet saru ft")
    assert gone.index("delete chain inet saru ft_fwd") < gone.index("delete flowtable inet saru ft")
    assert not [c for c in gone if c.startswith("add ")]


def test_adoption_reads_the_flowtable_back_and_keeps_it() -> None:
    listed = {"family": "inet", "name": "ft", "table": "saru", "hook": "ingress", "prio": 0, "dev": ["eth1", "eth0"]}
    assert listed_spec(listed) == flowtable_spec(["eth0", "eth1"])
    assert listed_spec({**listed, "dev": "eth0"}) == flowtable_spec(["eth0"])
    assert listed_spec({**listed, "prio": 10}) is None
    listing = parse([{"nftables": [{"table": {"family": "inet", "name": "saru"}}, {"flowtable": listed},
                                   {"chain": {"family": "inet", "table": "saru", "name": "ft_fwd"}}]}])
    assert listing.existing.flowtables == {"inet": {"ft": flowtable_spec(["eth0", "eth1"])}}
    old = unknown_script("inet", listing.existing)
    new = build(Table.of([WEB]), FT).scripts["inet"]
    assert not [c for c in transaction(old, new) if "flowtable" in c]  # the same devices: kept
    strange = Existing({"inet": frozenset()}, flowtables={"inet": {"ft": UNKNOWN}})
    assert "delete flowtable inet saru ft" in transaction(unknown_script("inet", strange), new)


def test_setting_and_its_refusals() -> None:
    assert parse_settings("").nft.flowtable == ()
    wanted = NftSettings(flowtable=("eth0", "bond0.12"))
    assert parse_settings('[nft]\nflowtable = ["eth0", "bond0.12"]\n').nft == wanted
    with pytest.raises(ConfigError, match=r"<string>:3: \[nft\] flowtable: offloads conntrack's NAT flows, and "
                                          r'nat = "stateless" has none'):
        parse_settings('[nft]\nnat = "stateless"\nflowtable = ["eth0"]\n')
    with pytest.raises(ConfigError, match=r"<string>:2: \[nft\] flowtable: 'eth 0' is not a network interface"):
        parse_settings('[nft]\nflowtable = ["eth 0"]\n')
    with pytest.raises(ConfigError, match=r"<string>:2: \[nft\] flowtable: 'eth0' is listed twice"):
        parse_settings('[nft]\nflowtable = ["eth0", "eth0"]\n')
    with pytest.raises(DataplaneError, match="stateless NAT has none"):
        NftDataplane(nat="stateless", flowtable=("eth0",))


def test_the_plane_is_built_with_it() -> None:
    caps = capabilities("nft", NftSettings(flowtable=("eth0",)))
    assert caps.flowtable == ("eth0",)
    assert capabilities("nft", NftSettings()).flowtable == ()


DR_ONLY = """\
virtual=192.168.6.240:80
\treal=192.168.6.11:80 gate
\tchecktype=on
"""


def test_direct_routing_only_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    caps = capabilities("nft", NftSettings(flowtable=("eth0",)))
    (problem,) = unsupported(parse_cf(DR_ONLY, "/x/ld.cf"), caps)
    assert str(problem).startswith("/x/ld.cf:1: virtual 192.168.6.240:80: [nft] flowtable offloads NAT (masq) flows")
    mixed = DR_ONLY + "virtual=192.168.6.240:81\n\treal=192.168.7.11:81 masq\n\tchecktype=on\n"
    assert unsupported(parse_cf(mixed), caps) == []
    # saru check-config says the same, FILE:LINE
    cf = tmp_path / "ld.cf"
    cf.write_text(DR_ONLY)
    toml = tmp_path / "saru.toml"
    toml.write_text(f'[director]\nconfig = "{cf.name}"\ndataplane = "nft"\n[nft]\nflowtable = ["eth0"]\n')
    assert main(["check-config", str(toml)]) == 2
    assert f"{cf}:1: virtual 192.168.6.240:80: [nft] flowtable offloads NAT" in capsys.readouterr().err
    cf.write_text(mixed)
    assert main(["check-config", str(toml)]) == 0
    toml.write_text(toml.read_text().replace("[nft]\n", '[nft]\nnat = "stateless"\n'))
    assert main(["check-config", str(toml)]) == 2
    assert f"{toml}:6: [nft] flowtable: offloads conntrack's NAT flows" in capsys.readouterr().err
