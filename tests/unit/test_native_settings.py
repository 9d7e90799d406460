"""saru.toml: defaults, every section, and bad input reported as FILE:LINE with nothing accepted."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import pytest

from saru.config.diagnostics import ConfigError
from saru.config.native import load_settings, parse_settings
from saru.model import Settings

GUIDE = """\
[director]
config = "ldirectord.cf"
dataplane = "nft"

[ha]
interface = "eth0"
vips = ["192.168.6.240/24", "fd00:6::240"]
virtual_router_id = 7
priority = 150
advert_interval = 0.05
unicast_peers = ["192.168.6.3"]
notify_master = "/usr/local/bin/page-me master"

[ha.ping]
hosts = ["192.168.6.1"]
multiplier = 100

[ipvs.sync]
interface = "eth1"
syncid = 9

[cluster]
agent = "ldirectord"
"""


def test_empty_file_is_ldirectord_cf_and_nothing_else() -> None:
    settings = parse_settings("")
    assert settings.ha is None and settings.ipvs_sync is None
    assert settings.director.dataplane == "auto"
    assert settings == Settings()


def test_expire_nodest_conn_is_unset_unless_written() -> None:
    assert parse_settings("").director.expire_nodest_conn is None
    assert parse_settings("[director]\nexpire_nodest_conn = true\n").director.expire_nodest_conn is True
    assert parse_settings("[director]\nexpire_nodest_conn = false\n").director.expire_nodest_conn is False


def test_guide_example(tmp_path: Path) -> None:
    path = tmp_path / "saru.toml"
    path.write_text(GUIDE)
    s = load_settings(path)
    assert s.director.config == str(tmp_path / "ldirectord.cf")
    assert s.director.dataplane == "nft"
    assert s.ha is not None
    assert s.ha.vips == (ipaddress.ip_interface("192.168.6.240/24"), ipaddress.ip_interface("fd00:6::240/128"))
    assert s.ha.vip_addresses == ("192.168.6.240", "fd00:6::240")
    assert (s.ha.virtual_router_id, s.ha.priority, s.ha.advert_interval) == (7, 150, 0.05)
    assert s.ha.preempt is False and s.ha.vipcheck is True and s.ha.warm_standby is False
    assert s.ha.unicast_peers == ("192.168.6.3",)
    assert s.ha.notify_master == ("/usr/local/bin/page-me", "master")
    assert s.ha.ping is not None and s.ha.ping.hosts == ("192.168.6.1",) and s.ha.ping.multiplier == 100
    assert s.ipvs_sync is not None
    assert (s.ipvs_sync.interface, s.ipvs_sync.syncid, s.ipvs_sync.port) == ("eth1", 9, 8848)
    assert s.cluster.agent == "ldirectord" and s.cluster.group == "GrpBalancer"


@pytest.mark.parametrize(("text", "line", "fragment"), [
    ('[ha]\ninterface = "eth0"\nvips = ["10.0.0.1"]\npriority = 255\n', 4, "reserved for the address owner"),
    ('[ha]\ninterface = "eth0"\nvips = ["10.0.0.1"]\nadvert_interval = 0.005\n', 4, "centiseconds"),
    ('[ha]\ninterface = "eth0"\nvips = ["10.0.0.1"]\nprempt = true\n', 4, "did you mean 'preempt'"),
    ('[ha]\ninterface = "eth0"\nvips = ["10.0.0.300"]\n', 3, "not an address"),
    ('[ha]\nvips = ["10.0.0.1"]\n', 1, "interface is required"),
    ('[ha]\ninterface = "eth0"\nvips = ["10.0.0.1"]\npreempt = "yes"\n', 4, "expected true or false"),
    ('[director]\ndataplane = "xdp"\n', 2, "must be one of auto, ipvs, nft, proxy"),
    ('[director]\nexpire_nodest_conn = 1\n', 2, "expected true or false"),
    ('[director\n', 1, "not valid TOML"),
    ('[ipvs.sync]\ninterface = "eth0"\nmcast_group = "10.0.0.1"\n', 3, "not a multicast address"),
    ('[cluster]\ngroup = "bad name"\n', 2, "not a valid Pacemaker resource id"),
    ('[bogus]\n', 1, "unknown key"),
])
def test_bad_input_is_file_line_message(text: str, line: int, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings(text, "/etc/saru/saru.toml")
    first = caught.value.diagnostics[0]
    assert first.file == "/etc/saru/saru.toml"
    assert first.line == line, str(caught.value)
    assert fragment in first.message, str(caught.value)


def test_every_problem_is_reported_in_line_order() -> None:
    text = '[ha]\ninterface = "eth0"\nvips = ["x"]\npriority = 0\ngarp_repeat = -1\n'
    with pytest.raises(ConfigError) as caught:
        parse_settings(text, "f.toml")
    assert [d.line for d in caught.value.diagnostics] == [3, 4, 5]


def test_world_readable_secret_is_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "saru.toml"
    path.write_text('[cluster]\n# token = "x"\n')
    os.chmod(path, 0o644)
    assert load_settings(path).warnings == ()
    path.write_text('[cluster]\n')
    path.write_text('[director]\ndataplane = "auto"\ntoken_file = "x"\n')
    with pytest.raises(ConfigError):  # unknown key still an error
        load_settings(path)


def test_unreadable_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path / "missing.toml")
    assert "cannot read settings" in str(caught.value)


def test_nft_nat_mode() -> None:
    assert parse_settings("").nft.nat == "stateful"
    assert parse_settings('[nft]\nnat = "stateless"\n').nft.nat == "stateless"
    with pytest.raises(ConfigError, match=r'<string>:2: \[nft\] nat: must be "stateful" or "stateless"'):
        parse_settings('[nft]\nnat = "conntrack"\n')
    with pytest.raises(ConfigError, match=r"\[nft\]"):
        parse_settings("[nft]\nflowtable = true\n")
