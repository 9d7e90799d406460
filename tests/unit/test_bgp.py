"""``[bgp]``: the settings' reader, the pure announce decision and BIRD's configuration (issue 15; the
real thing runs in tests/bgp). Test 7 of the issue: ``[bgp]`` is opt-in and excludes ``[ha]``."""

from __future__ import annotations

from pathlib import Path

import pytest

from saru.bgp import announced_vips, decide, serving
from saru.bgp.bird import _bfd_lines, _session_lines, needed_caps, protocol_names, render
from saru.caps import CAP_NET_ADMIN, CAP_NET_BIND_SERVICE
from saru.config.diagnostics import ConfigError
from saru.config.ldirectord import parse_text
from saru.config.native import parse_settings
from saru.model import Dest, Service, Table

BGP = """\
[bgp]
asn = 65001
router_id = "10.0.0.2"
down = "med"
hold_time = 9

[[bgp.neighbors]]
address = "10.0.0.1"
asn = 65000
bfd = true
password = "s3cret"

[[bgp.neighbors]]
address = "fd00::1"
asn = 65000
"""

CF = """\
virtual=10.9.0.1:80
\treal=10.0.0.11:80 gate
\treal=10.0.0.12:80 gate
\tfallback=127.0.0.1:80 gate
virtual=10.9.0.1:443
\treal=10.0.0.11:443 gate
virtual=10.9.0.2:80
\treal=10.0.0.13:80 gate
"""


def test_settings_read_with_defaults() -> None:
    s = parse_settings(BGP).bgp
    assert s is not None
    assert (s.asn, s.router_id, s.down, s.hold_time, s.med, s.down_med, s.manage) == \
        (65001, "10.0.0.2", "med", 9, 0, 1000, True)
    assert [(n.address, n.asn, n.bfd, n.password) for n in s.neighbors] == \
        [("10.0.0.1", 65000, True, "s3cret"), ("fd00::1", 65000, False, None)]
    assert parse_settings("").bgp is None  # opt-in


@pytest.mark.parametrize(("text", "message"), [
    ("[bgp]\nrouter_id = \"10.0.0.2\"\n[[bgp.neighbors]]\naddress = \"10.0.0.1\"\nasn = 1\n", "asn is required"),
    (BGP.replace('"10.0.0.2"', '"fd00::2"'), "not an IPv4 address"),
    (BGP.replace('down = "med"', 'down = "lower"'), 'must be "withdraw" or "med"'),
    (BGP.replace("asn = 65001", "asn = 23456"), "not a usable AS number"),
    (BGP.replace("hold_time = 9", "hold_time = 2"), "hold time is 0"),
    (BGP.replace('"fd00::1"', '"10.0.0.1"'), "10.0.0.1 is given twice"),
    (BGP.replace("bfd = true", "bfd = 1"), "expected true or false"),
    (BGP.replace('password = "s3cret"', 'password = "a\\"b"'), "quote"),
    (BGP + "\n[ha]\ninterface = \"eth0\"\nvips = [\"10.9.0.1/24\"]\n", "[bgp] and [ha] are alternatives"),
    ("[bgp]\nasn = 65001\nrouter_id = \"10.0.0.2\"\n", "needs at least one [[bgp.neighbors]]"),
    (BGP.replace("bfd = true", "bfd = true\nport = 179"), "unknown key"),
])
def test_bad_settings_are_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_settings(text)
    assert message in str(err.value)


def table(*dests: tuple[str, int, str, int]) -> Table:
    config = parse_text(CF)
    services = []
    for v in config.virtuals:
        found = {(a, p): Dest(a, p, "gate", w) for vip, port, a, w in [(d[0], d[1], d[2], d[3]) for d in dests]
                 for p in [port] if vip == v.key.address and port == v.key.port}
        services.append(Service(v.key, dests=found))
    return Table.of(services)


def test_serving_counts_reals_with_weight_not_the_fallback() -> None:
    config = parse_text(CF)
    vips = ("10.9.0.1", "10.9.0.2")
    assert announced_vips(parse_settings(BGP).bgp, config) == vips  # type: ignore[arg-type]
    assert serving(config, table(), vips) == {"10.9.0.1": False, "10.9.0.2": False}
    # only the fallback, or a real at weight 0 (drained), is not serving
    assert serving(config, table(("10.9.0.1", 80, "127.0.0.1", 1), ("10.9.0.2", 80, "10.0.0.13", 0)),
                   vips) == {"10.9.0.1": False, "10.9.0.2": False}
    # one real of any virtual on the VIP is enough
    assert serving(config, table(("10.9.0.1", 443, "10.0.0.11", 1)), vips) == {"10.9.0.1": True, "10.9.0.2": False}


@pytest.mark.parametrize(("ready", "draining", "up", "down", "want"), [
    (True, False, True, "withdraw", "up"),
    (True, False, False, "withdraw", "withdrawn"),
    (True, False, False, "med", "down"),
    (False, False, True, "med", "withdrawn"),  # no table yet: never attract traffic
    (True, True, True, "med", "withdrawn"),  # draining withdraws whatever down says
])
def test_decide(ready: bool, draining: bool, up: bool, down: str, want: str) -> None:
    got = decide(["10.9.0.1"], {"10.9.0.1": up}, ready=ready, draining=draining, down=down)  # type: ignore[arg-type]
    assert got == {"10.9.0.1": want}


def test_bird_configuration() -> None:
    s = parse_settings(BGP).bgp
    assert s is not None
    text = render(s, ["10.9.0.1", "fd00:9::1"], managed=True, log_path="/run/saru/x.log")
    up, dn = protocol_names("10.9.0.1")
    assert f"protocol static {up} {{ disabled; ipv4; route 10.9.0.1/32 blackhole {{ bgp_med = 0; }}; }}" in text
    assert f"protocol static {dn} {{ disabled; ipv4; route 10.9.0.1/32 blackhole {{ bgp_med = 1000; }}; }}" in text
    assert "route fd00:9::1/128 blackhole" in text
    assert "protocol bfd saru_bfd" in text and text.count("bfd on;") == 1
    assert 'password "s3cret";' in text and "hold time 9; keepalive time 3;" in text
    assert "ipv6 { import none; export where proto ~ \"saru_*\"; next hop self; };" in text
    bare = render(s, ["10.9.0.1"], managed=False)
    assert "router id" not in bare and "protocol bfd" not in bare and "protocol bgp saru_peer0" in bare


def test_bird_gets_port_179_and_net_admin_only_for_bfd() -> None:
    """What a managed BIRD is given for its exec (tests/packaging/test_bgp.py checks it under the unit)."""
    with_bfd = parse_settings(BGP).bgp
    without = parse_settings(BGP.replace("bfd = true", "bfd = false")).bgp
    assert with_bfd is not None and without is not None
    assert needed_caps(with_bfd) == (CAP_NET_BIND_SERVICE, CAP_NET_ADMIN)
    assert needed_caps(without) == (CAP_NET_BIND_SERVICE,)  # TCP MD5 (password) needs none


def test_bird_replies_parsed() -> None:
    rows = _session_lines([(2002, "Name       Proto      Table      State  Since         Info"),
                           (1002, "saru_peer0 BGP        ---        up     03:20:00.123  Established"),
                           (1002, "saru_peer1 BGP        ---        start  03:20:00.123  Active        Socket: x")])
    assert rows == {"saru_peer0": ("up", "Established"), "saru_peer1": ("start", "Active Socket: x")}
    assert _bfd_lines([(1020, "10.0.0.1   eth0   Up   03:20:00.123   0.100   0.300")]) == {"10.0.0.1": "Up"}


def test_reload_applies_a_changed_bgp_and_holds_an_added_or_removed_one() -> None:
    from saru.daemon.configwatch import settings_for_reload

    running = parse_settings(BGP)
    changed = parse_settings(BGP.replace("hold_time = 9", "hold_time = 30"))
    taken, held = settings_for_reload(running, changed)
    assert taken.bgp is not None and taken.bgp.hold_time == 30 and held == []
    taken, held = settings_for_reload(running, parse_settings(""))
    assert taken.bgp == running.bgp and held == ["saru.toml [bgp] removed: it takes effect at the next restart"]
    taken, held = settings_for_reload(parse_settings(""), running)
    assert taken.bgp is None and held == ["saru.toml [bgp] added: it takes effect at the next restart"]


def test_bird_configuration_is_private(tmp_path: Path) -> None:
    from saru.bgp.bird import _write_private

    target = tmp_path / "saru-bird.conf"
    target.write_text("old")
    target.chmod(0o644)
    _write_private(target, 'password "s3cret";\n')
    assert target.read_text() == 'password "s3cret";\n' and target.stat().st_mode & 0o777 == 0o600


def test_status_lines() -> None:
    from saru.cli.daemon_cmds import bgp_lines

    doc = {"daemon": "bird", "running": True, "asn": 65001, "router_id": "10.0.0.2", "draining": True,
           "error": None, "neighbors": [{"address": "10.0.0.1", "asn": 65000, "state": "Established", "bfd": "Up"}],
           "routes": [{"vip": "10.9.0.1", "state": "withdrawn", "med": None}]}
    assert bgp_lines(doc) == ["BGP: AS65001 router id 10.0.0.2 via bird (running), draining",
                              "  neighbour 10.0.0.1 AS65000: Established, BFD Up", "  10.9.0.1: withdrawn"]


def test_a_real_panic_mode_keeps_does_not_count() -> None:
    from saru.model import RealRef

    config = parse_text(CF)
    vips = ("10.9.0.1", "10.9.0.2")
    t = table(("10.9.0.1", 80, "10.0.0.11", 1), ("10.9.0.2", 80, "10.0.0.13", 1))
    key80, key2 = config.virtuals[0].key, config.virtuals[2].key
    health = {RealRef(key80, "10.0.0.11", 80): False, RealRef(key2, "10.0.0.13", 80): None}
    assert serving(config, t, vips, health) == {"10.9.0.1": False, "10.9.0.2": True}


async def test_an_ipvs_director_is_warned_of_a_vip_that_is_not_its_own(caplog: pytest.LogCaptureFixture) -> None:
    """IPVS takes in only packets addressed to the host: a VIP the routers send here must be local (lo)."""
    from types import SimpleNamespace
    from typing import Any

    from saru.daemon.announcer import Announcer

    async def warnings(cf: str, plane: str) -> str:
        caplog.clear()
        nothing: Any = None
        announcer = Announcer(parse_settings(BGP).bgp, SimpleNamespace(config=parse_text(cf)),  # type: ignore[arg-type]
                              SimpleNamespace(capabilities=SimpleNamespace(name=plane)),  # type: ignore[arg-type]
                              SimpleNamespace(listeners=[]), nothing, nothing,  # type: ignore[arg-type]
                              lambda settings, vips: nothing)
        with caplog.at_level("WARNING", logger="saru"):
            await announcer._prepare_plane()
        return caplog.text

    not_local = "is not an address of this director"
    assert f"10.9.0.1 {not_local}" in await warnings(CF, "ipvs")  # 10.9.0.0/16: nowhere on this host
    assert not_local not in await warnings("virtual=127.0.0.1:80\n\treal=10.0.0.11:80 gate\n", "ipvs")  # on lo
    assert not_local not in await warnings(CF, "nft")  # netdev ingress: the VIP need not be local
