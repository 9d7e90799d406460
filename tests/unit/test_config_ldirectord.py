"""ldirectord.cf parser: every directive, default, error path and lexical rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from saru.config.diagnostics import ConfigError
from saru.config.ldirectord import SystemResolver, parse_file, parse_text
from saru.model import Diagnostic, FallbackConfig, GlobalConfig
from tests.unit.test_config_support import (
    FakeResolver,
    errors,
    failure,
    one,
    parse,
    vblock,
    warnings,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "packaging" / "examples"


# --------------------------------------------------------------------------------------------------
# samples
# --------------------------------------------------------------------------------------------------


def test_guide_sample_parses() -> None:
    config = parse_file(EXAMPLES / "guide.cf", resolver=FakeResolver())
    g = config.globals
    assert (g.checktimeout, g.checkinterval, g.autoreload, g.quiescent) == (5.0, 10.0, True, False)
    assert g.logfile == "/var/log/ldirectord.log"
    (v,) = config.virtuals
    assert (v.protocol, v.address, v.port, v.service, v.scheduler) == (
        "tcp",
        "192.168.5.55",
        80,
        "http",
        "rr",
    )
    assert [r.hostport for r in v.reals] == ["192.168.5.33:80", "192.168.5.43:80"]
    assert all(r.forward == "gate" and r.weight == 1 for r in v.reals)
    assert v.fallback == FallbackConfig("127.0.0.1", 80, "gate")
    assert (v.checktype, v.checkport) == ("negotiate", 80)
    assert (v.request, v.receive) == ("/haCheker/haCheck.html", "up and running")
    assert (v.checktimeout, v.negotiatetimeout, v.checkinterval) == (5.0, 5.0, 10.0)
    assert config.warnings == ()


def test_ldirectord_sample_parses() -> None:
    config = parse_file(EXAMPLES / "ldirectord-sample.cf", resolver=FakeResolver())
    (v,) = config.virtuals
    assert v.name == "192.168.6.240:80"
    assert (v.servicename, v.comment, v.virtualhost) == (
        "Web Site",
        "Test load balanced web site",
        "www.x.y.z",
    )
    assert len(v.reals) == 3 and v.request == "/index.html"
    assert (v.checktimeout, v.negotiatetimeout, v.checkinterval) == (3.0, 3.0, 1.0)


def test_ldirectord_sample_commented_sections_parse_when_enabled() -> None:
    """Uncomment every sample section of ldirectord's own file (except the broken SIP one)."""
    lines = (EXAMPLES / "ldirectord-sample.cf").read_text().splitlines()
    out: list[str] = []
    for line in lines:
        if line.startswith("#virtual") or (line.startswith("#\t") and not line.startswith("#\t#")):
            line = line[1:]
        out.append(line)
    text = "\n".join(out).replace("sql01->sql03", "web1->web2")
    text = text.replace("virtual=192.168.6.240:5060", "#")  # its reals are written "ip::port"
    text = "\n".join(line for line in text.splitlines() if "::5060" not in line)
    text = text.replace("virtualhost=x.y.z", "virtualhost=www.x.y.z")
    # the sample repeats virtual=192.168.6.240:80 (a range example): ldirectord rejects that too
    first = text.index("virtual=192.168.6.240:80")
    second = text.index("virtual=192.168.6.240:80", first + 1)
    text = text[:second] + "virtual=192.168.6.241:80" + text[second + len("virtual=192.168.6.240:80") :]
    config = parse_text(text, "sample", resolver=FakeResolver())
    kinds = {v.service for v in config.virtuals}
    assert {"http", "https", "ftp", "smtp", "pop", "imap", "ldap", "nntp", "dns", "mysql", "pgsql"} <= kinds
    ftp = next(v for v in config.virtuals if v.service == "ftp")
    assert (ftp.login, ftp.passwd, ftp.scheduler) == ("anonymous", "ldirectord@localhost", "rr")


def test_harness_parse_cf_minus_the_bracket_range() -> None:
    text = (
        "virtual=127.0.0.21:http\n\treal=10.0.0.1->10.0.0.3:8080 masq 5\n\treal=localhost:www gate\n"
        "\tchecktype=on\nvirtual=localhost:53\n\treal=10.0.0.9:53 ipip\n\tchecktype=on\n"
        "virtual6=[::1]:443\n\treal6=[2001:db8::1]:443 masq 2\n\tchecktype=on\n"
        "\tpersistent=60\n\tnetmask=64\n"
        "virtual=7\n\treal=10.0.0.7 gate\n\tchecktype=on\n\tpersistent=30\n\tnetmask=255.255.255.0\n"
        "virtual=127.0.0.22:5060\n\tprotocol=udp\n\tops=yes\n\tschedflags=flag-1,flag-2\n"
        "\treal=10.0.0.8:5060 masq 1 l:10 u:100\n\tchecktype=on\n"
    )
    config = parse_text(text, "parse.cf", resolver=FakeResolver())
    names = [str(v.key) for v in config.virtuals]
    assert names == [
        "tcp 127.0.0.21:80",
        "udp 127.0.0.1:53",
        "tcp [::1]:443",
        "fwm fwm:7",
        "udp 127.0.0.22:5060",
    ]
    a, dns, v6, fwm, sip = config.virtuals
    assert [r.hostport for r in a.reals] == [
        "10.0.0.1:8080",
        "10.0.0.2:8080",
        "10.0.0.3:8080",
        "127.0.0.1:80",
    ]
    assert [r.weight for r in a.reals] == [5, 5, 5, 1]
    assert (dns.service, dns.reals[0].forward) == ("dns", "ipip")
    assert (v6.ipv6, v6.persistent, v6.netmask, v6.reals[0].address) == (True, 60, "64", "2001:db8::1")
    assert (fwm.fwmark, fwm.address, fwm.port, fwm.service, fwm.reals[0].port) == (7, "", 0, "none", 0)
    assert (sip.ops, sip.schedflags, sip.service) == (True, "flag-1,flag-2", "sip")
    assert (sip.reals[0].lower_threshold, sip.reals[0].upper_threshold) == (10, 100)


# --------------------------------------------------------------------------------------------------
# global directives
# --------------------------------------------------------------------------------------------------


def test_global_defaults() -> None:
    config = parse(vblock("real=10.0.0.1:80 gate"))
    assert config.globals == GlobalConfig()


@pytest.mark.parametrize(
    ("line", "field", "value"),
    [
        ("checktimeout=3", "checktimeout", 3.0),
        ("checktimeout = 2.5", "checktimeout", 2.5),
        ("negotiatetimeout=20", "negotiatetimeout", 20.0),
        ("checkinterval=7", "checkinterval", 7.0),
        ("checkcount=3", "checkcount", 3),
        ("failurecount=4", "failurecount", 4),
        ("autoreload=yes", "autoreload", True),
        ("autoreload=no", "autoreload", False),
        ('callback="/usr/local/bin/cb"', "callback", "/usr/local/bin/cb"),
        ('logfile="local0"', "logfile", "local0"),
        ('logfile="daemon"', "logfile", "daemon"),
        ("fork=yes", "fork", True),
        ("supervised=yes", "supervised", True),
        ("supervised", "supervised", True),
        ("quiescent=yes", "quiescent", True),
        ("readdquiescent=yes", "readdquiescent", True),
        ('emailalert="a@b.example, c@d.example"', "emailalert", "a@b.example, c@d.example"),
        ("emailalert=ops@example.com", "emailalert", "ops@example.com"),
        ("emailalertfreq=3600", "emailalertfreq", 3600),
        ("emailalertfreq=0", "emailalertfreq", 0),
        ("emailalertstatus=all", "emailalertstatus", ("starting", "running", "stopping", "reloading")),
        ("emailalertstatus=none", "emailalertstatus", ()),
        ("emailalertstatus=stopping, starting", "emailalertstatus", ("starting", "stopping")),
        ('emailalertfrom="LD" <ld@x.example>', "emailalertfrom", '"LD" <ld@x.example>'),
        ("emailalertfrom=ops#team@x.example", "emailalertfrom", "ops#team@x.example"),
        ("smtp=mail.example.com", "smtp", "mail.example.com"),
        ("cleanstop=no", "cleanstop", False),
        ("fallbackcommand=/usr/local/bin/fb.sh", "fallbackcommand", "/usr/local/bin/fb.sh"),
        ('fallbackcommand="/usr/local/bin/fb.sh"', "fallbackcommand", '"/usr/local/bin/fb.sh"'),
        ("fallback=127.0.0.1:8080 masq", "fallback", FallbackConfig("127.0.0.1", 8080, "masq")),
        ("fallback=127.0.0.1", "fallback", FallbackConfig("127.0.0.1", 0, "gate")),
        ("fallback=localhost:http", "fallback", FallbackConfig("127.0.0.1", 80, "gate")),
        ("fallback6=[::1]:80 ipip", "fallback6", FallbackConfig("::1", 80, "ipip")),
        ("checkinterval=5 # trailing comment", "checkinterval", 5.0),
        ("checkinterval=5#glued comment", "checkinterval", 5.0),
        ("checkinterval=10s", "checkinterval", 10.0),
        ("emailalert=ops#team@x.example # c", "emailalert", "ops#team@x.example"),
        ("fallbackcommand=/bin/fb#1", "fallbackcommand", "/bin/fb#1"),
        ("maintenancedir=/nonexistent/#maint", "maintenancedir", "/nonexistent/#maint"),
        ("quiescent=yes   # Saru strips this comment", "quiescent", True),
        ("quiescent=yes\r", "quiescent", True),
    ],
)
def test_global_directive(line: str, field: str, value: object) -> None:
    config = parse(f"{line}\n" + vblock("real=10.0.0.1:80 gate"))
    assert getattr(config.globals, field) == value


def test_logfile_path_and_maintenancedir(tmp_path: Path) -> None:
    log = tmp_path / "ld.log"
    config = parse(f'logfile="{log}"\nmaintenancedir={tmp_path}\n' + vblock("real=10.0.0.1:80 gate"))
    assert config.globals.logfile == str(log)
    assert config.globals.maintenancedir == str(tmp_path)
    assert not log.exists(), "parsing must not create the log file"
    assert config.warnings == ()


def test_quoted_maintenancedir(tmp_path: Path) -> None:
    config = parse(f'maintenancedir="{tmp_path}"\n' + vblock("real=10.0.0.1:80 gate"))
    assert config.globals.maintenancedir == str(tmp_path) and config.warnings == ()


def test_bad_logfile_path_is_only_a_warning_when_supervised() -> None:
    text = 'logfile="/nonexistent-dir/x.log"\n' + vblock("real=10.0.0.1 gate")
    assert errors(text) == [
        '1: unable to open logfile /nonexistent-dir/x.log: directory "/nonexistent-dir" does not exist'
    ]
    assert warnings(text + "supervised=yes\n") == [
        '1: unable to open logfile /nonexistent-dir/x.log: directory "/nonexistent-dir" does not exist '
        "(not used: supervised=yes logs to stdout)"
    ]
    # a later valid logfile replaces the bad one
    assert warnings(text + 'logfile="local0"\n') == []


def test_missing_maintenancedir_is_a_warning(tmp_path: Path) -> None:
    ws = warnings(f"maintenancedir={tmp_path}/nope\n" + vblock("real=10.0.0.1:80 gate"))
    assert ws == [f"1: maintenance directory {tmp_path}/nope does not exist"]


def test_execute_repeats_and_deduplicates() -> None:
    config = parse(
        'execute=other.cf\nexecute = "third.cf"\nexecute=other.cf\n' + vblock("real=10.0.0.1 gate")
    )
    assert config.globals.execute == ("other.cf", "third.cf")


def test_last_global_value_wins() -> None:
    config = parse("checkinterval=3\n" + vblock("real=10.0.0.1:80 gate") + "checkinterval=9\n")
    assert config.globals.checkinterval == 9.0
    assert config.virtuals[0].checkinterval == 9.0


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("checktimeout=0", 'invalid check timeout "0": expected a number of seconds greater than 0'),
        ("checktimeout=abc", 'invalid check timeout "abc"'),
        ("checktimeout=3m", 'invalid check timeout "3m"'),
        ("checktimeout=abc3", 'invalid check timeout "abc3"'),
        ("negotiatetimeout=-1", 'invalid negotiate timeout "-1"'),
        ("checkinterval=0", 'invalid check interval "0"'),
        ("checkcount=0", 'invalid check count "0": expected an integer >= 1'),
        ("failurecount=x", 'invalid failure count "x"'),
        ("connecttimeout=5", "connecttimeout directive deprecated in favour of negotiatetimeout"),
        ("timeout=5", "timeout directive deprecated in favour of checktimeout and negotiatetimeout"),
        ("autoreload=true", "autoreload must be 'yes' or 'no'"),
        ("fork=1", "fork must be 'yes' or 'no'"),
        ("supervised=maybe", "supervised must be 'yes' or 'no'"),
        ("quiescent=yes please", "quiescent must be 'yes' or 'no'"),
        ("readdquiescent=", "readdquiescent must be 'yes' or 'no'"),
        ("cleanstop=off", "cleanstop must be 'yes' or 'no'"),
        ("callback=/bin/cb", 'callback must be in double quotes, e.g. callback="/path/to/callback"'),
        ('callback=""', "callback: empty path"),
        ("logfile=/var/log/x.log", "logfile must be in double quotes"),
        (
            'logfile="relative.log"',
            'invalid logfile "relative.log": expected an absolute path or a syslog facility',
        ),
        ('logfile="/nonexistent-dir/x.log"', 'directory "/nonexistent-dir" does not exist'),
        ('logfile="/tmp"', 'logfile "/tmp" is a directory'),
        ('logfile="/var/log/x.log', "logfile: missing closing double quote"),
        ('logfile="/tmp/x.log" extra', 'logfile: unexpected text "extra" after the closing double quote'),
        ("execute=", "execute: configuration name missing"),
        ("emailalert=", "no email address specified"),
        ('emailalert=""', "no email address specified"),
        ("emailalertfreq=soon", 'invalid email alert frequency "soon"'),
        ("emailalertstatus=sometimes", 'invalid email alert status at: "sometimes"'),
        ("emailalertstatus=none,running", 'invalid email alert status: "running" specified with "none"'),
        ("emailalertstatus=", "invalid email alert status"),
        ("emailalertfrom=", "no email from address specified"),
        ("smtp=mail.example.com:587", "give a host only; ldirectord always uses port 25"),
        ("smtp=bad host", 'invalid SMTP server address "bad host"'),
        ("maintenancedir=", "maintenance directory not specified"),
        ("fallbackcommand=", "invalid fallback command: empty"),
        ("fallback=127.0.0.1:80 route", 'forward method must be gate, masq or ipip (got "route")'),
        ("fallback=127.0.0.1:80 gate extra", 'unexpected text "extra"'),
        ("fallback=nowhere:80", 'could not resolve host "nowhere" to an IPv4 address'),
        ("fallback=[::1]:80", 'cannot use the IPv6 address [::1] with "fallback": use "fallback6" instead'),
        ("fallback6=127.0.0.1:80", 'cannot use the IPv4 address 127.0.0.1 with "fallback6": use "fallback"'),
        ("fallback6=::1", "IPv6 addresses must be written in brackets"),
        ("fallback=127.0.0.1:nosuch", 'could not resolve port "nosuch"'),
        ("fallback=", "invalid fallback server"),
        ("frobnicate=yes", 'unknown directive "frobnicate"'),
        ("checktimout=3", 'unknown directive "checktimout" (did you mean "checktimeout"?)'),
        ("Checktimeout=3", 'unknown directive "Checktimeout"'),
        ("this is not a directive", 'syntax error at "this is not a directive": expected directive=value'),
        ("real=10.0.0.1:80 gate", '"real" belongs to a virtual section: indent it under a virtual= line'),
        ("service=http", '"service" belongs to a virtual section'),
        ("checktimeout", 'checktimeout: "=" and a value expected'),
    ],
)
def test_global_errors(line: str, message: str) -> None:
    found = errors(f"{line}\n" + vblock("real=10.0.0.1:80 gate"))
    assert len(found) == 1, found
    assert found[0].startswith("1: ")
    assert message in found[0]


def test_global_warnings() -> None:
    ws = warnings("supervised\ncheckcount=2\n" + vblock("real=10.0.0.1:80 gate"))
    assert ws == [
        "1: please update your config not to use a bare supervised directive (supervised=yes)",
        "2: checkcount option is deprecated and slated for removal.  please see 'failurecount'",
    ]


def test_unwritable_logfile_is_a_warning(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        text = f'logfile="{ro}/x.log"\n' + vblock("real=10.0.0.1:80 gate")
        import os

        if os.access(ro, os.W_OK):  # running as root: everything is writable
            assert warnings(text) == []
        else:
            assert warnings(text) == [f"1: logfile {ro}/x.log is not writable by the current user"]
    finally:
        ro.chmod(0o700)


# --------------------------------------------------------------------------------------------------
# virtual= forms
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "protocol", "address", "port", "service"),
    [
        ("virtual=192.0.2.1:80", "tcp", "192.0.2.1", 80, "http"),
        ("virtual = 192.0.2.1:80", "tcp", "192.0.2.1", 80, "http"),
        ("virtual=192.0.2.1:53", "udp", "192.0.2.1", 53, "dns"),
        ("virtual=192.0.2.1:domain", "udp", "192.0.2.1", 53, "dns"),
        ("virtual=192.0.2.1:http", "tcp", "192.0.2.1", 80, "http"),
        ("virtual=www.example.com:www", "tcp", "192.0.2.10", 80, "http"),
        ("virtual=localhost:53", "udp", "127.0.0.1", 53, "dns"),
        ("virtual=192.0.2.1:8080", "tcp", "192.0.2.1", 8080, "none"),
        ("virtual=192.0.2.1:443", "tcp", "192.0.2.1", 443, "https"),
        ("virtual=192.0.2.1:080", "tcp", "192.0.2.1", 80, "http"),
        ("virtual=192.0.2.1:5060", "tcp", "192.0.2.1", 5060, "sip"),
        ("virtual=192.0.2.1:80 # web", "tcp", "192.0.2.1", 80, "http"),
        ("virtual6=[2001:db8::5]:119", "tcp", "2001:db8::5", 119, "nntp"),
        ("virtual6=[2001:DB8:0::5]:53", "udp", "2001:db8::5", 53, "dns"),
        ("virtual6=lb6:80", "tcp", "2001:db8::1", 80, "http"),
    ],
)
def test_virtual_forms(head: str, protocol: str, address: str, port: int, service: str) -> None:
    v = parse(
        vblock("real=10.0.0.1 gate" if "6" not in head.split("=")[0] else "real6=[::1] gate", head=head)
    )
    (v,) = v.virtuals
    assert (v.protocol, v.address, v.port, v.service, v.fwmark) == (protocol, address, port, service, None)
    assert v.ipv6 == head.startswith("virtual6")


@pytest.mark.parametrize("port", [21, 25, 53, 80, 110, 119, 143, 389, 443, 587, 636, 993, 995, 1521, 1812])
def test_service_from_port(port: int) -> None:
    from saru.config.services import PORT_SERVICES

    v = one(vblock("real=10.0.0.1 gate", "checktype=on", head=f"virtual=192.0.2.1:{port}"))
    assert v.service == PORT_SERVICES[port]


def test_fwmark_virtual() -> None:
    v = one(vblock("real=10.0.0.7 gate", "checktype=on", head="virtual=7"))
    assert (v.protocol, v.fwmark, v.address, v.port, v.service, v.name) == ("fwm", 7, "", 0, "none", "fwm:7")
    v6 = one(vblock("real6=[2001:db8::7] gate", "checktype=on", "protocol=fwm", head="virtual6=7"))
    assert (v6.protocol, v6.fwmark, v6.ipv6, v6.name) == ("fwm", 7, True, "fwm:7/6")


def test_protocol_directive() -> None:
    assert one(vblock("protocol=udp", "real=10.0.0.1 gate")).protocol == "udp"
    assert one(vblock("protocol=tcp", head="virtual=192.0.2.1:53")).protocol == "tcp"


def test_port_name_is_resolved_with_the_final_protocol() -> None:
    # tcponly exists only for tcp: fine for a tcp virtual, an error once protocol=udp
    assert one(vblock("real=10.0.0.1 gate", head="virtual=192.0.2.1:tcponly")).port == 4000
    found = errors(vblock("protocol=udp", head="virtual=192.0.2.1:tcponly"))
    assert found == [
        '1: invalid address for virtual server: could not resolve port "tcponly" (no such service for udp '
        "in /etc/services)"
    ]


@pytest.mark.parametrize(
    ("head", "message"),
    [
        ("virtual=", "virtual: address missing"),
        ("virtual", "virtual: address missing"),
        ("virtual=192.0.2.1", 'invalid address for virtual server "192.0.2.1": port missing'),
        ("virtual=192.0.2.1:80 junk", 'unexpected text "junk" after the virtual address 192.0.2.1:80'),
        ("virtual=192.0.2.1:99999", 'invalid port "99999": ports are 0..65535'),
        ("virtual=192.0.2.1:", "port missing after ':'"),
        ("virtual=192.0.2.1:nosuch", 'could not resolve port "nosuch"'),
        ("virtual=999.0.2.1:80", 'invalid IPv4 address "999.0.2.1"'),
        ("virtual=10.1:80", 'invalid IPv4 address "10.1": write all four parts'),
        ("virtual=010.0.0.1:80", 'invalid IPv4 address "010.0.0.1"'),
        ("virtual=nowhere:80", 'could not resolve host "nowhere" to an IPv4 address'),
        ("virtual=bogus:80", 'could not resolve host "bogus"'),
        (
            "virtual=[2001:db8::5]:80",
            'cannot use the IPv6 address [2001:db8::5] with "virtual": use "virtual6"',
        ),
        ("virtual6=2001:db8::5:80", "IPv6 addresses must be written in brackets"),
        ("virtual6=[2001:db8::zz]:80", 'invalid IPv6 address "[2001:db8::zz]"'),
        ("virtual6=192.0.2.1:80", 'cannot use the IPv4 address 192.0.2.1 with "virtual6": use "virtual"'),
        ("virtual6=[::1", 'missing "]"'),
        ("virtual=0", "invalid firewall mark 0"),
        ("virtual=99999999999999", "invalid firewall mark"),
        ("virtual=a b", 'unexpected text "b"'),
        ("virtual=ex@mple:80", 'invalid host "ex@mple"'),
    ],
)
def test_virtual_errors(head: str, message: str) -> None:
    found = errors(vblock("real=10.0.0.1 gate", head=head))
    assert len(found) == 1, found
    assert found[0].startswith("1: ") and message in found[0], found


def test_duplicate_virtual() -> None:
    text = vblock("real=10.0.0.1 gate") + vblock("real=10.0.0.2 gate", head="virtual=192.0.2.1:http")
    assert errors(text) == ["3: duplicate virtual server tcp 192.0.2.1:80 (first defined on line 1)"]
    # same address, other protocol: fine
    text = vblock("real=10.0.0.1 gate") + vblock("protocol=udp", "real=10.0.0.2 gate")
    assert len(parse(text).virtuals) == 2


def test_fwmark_protocol_errors() -> None:
    assert errors(vblock("protocol=tcp", head="virtual=5")) == [
        "2: protocol must be fwm if the virtual service is a fwmark (a number)"
    ]
    assert "protocol must be tcp or udp" in errors(vblock("protocol=fwm"))[0]
    assert "protocol must be tcp or udp" in errors(vblock("protocol=sctp"))[0]


# --------------------------------------------------------------------------------------------------
# virtual section directives and defaults
# --------------------------------------------------------------------------------------------------


def test_virtual_defaults() -> None:
    v = one(vblock("real=10.0.0.1:80 gate"))
    assert v.checktype == "negotiate" and v.scheduler == "wrr" and v.service == "http"
    assert (v.request, v.receive, v.virtualhost, v.httpmethod) == ("/", "", None, "GET")
    assert (v.login, v.passwd, v.database, v.secret, v.checkcommand) == ("", "", "", "", "/bin/true")
    assert (v.persistent, v.netmask, v.schedflags, v.ops, v.checkport) == (None, None, None, False, None)
    assert (v.checktimeout, v.negotiatetimeout, v.checkinterval, v.checkcount, v.failurecount) == (
        5,
        30,
        10,
        1,
        1,
    )
    assert (v.quiescent, v.cleanstop, v.fallback, v.fallbackcommand, v.monitorfile) == (
        False,
        True,
        None,
        None,
        None,
    )
    assert (v.emailalert, v.emailalertfreq, v.smtp) == ("", 0, None)
    assert v.emailalertstatus == ("starting", "running", "stopping", "reloading")
    assert (v.servicename, v.comment, v.line) == (None, None, 1)


@pytest.mark.parametrize(
    ("line", "field", "value"),
    [
        ('request="index.html"', "request", "/index.html"),
        ('request="/status?x=1"', "request", "/status?x=1"),
        ('request = "a "quoted" word"', "request", '/a "quoted" word'),
        ('receive="^OK"', "receive", "^OK"),
        ('receive="a#b"', "receive", "a#b"),
        ('receive="up and running"  # comment', "receive", "up and running"),
        ("checktype=connect", "checktype", "connect"),
        ("checktype=negotiate", "checktype", "negotiate"),
        ("checktype=on", "checktype", "on"),
        ("checktype=off", "checktype", "off"),
        ("checktype=ping", "checktype", "ping"),
        ("checktype=external", "checktype", "external"),
        ("checktype=external-perl", "checktype", "external-perl"),
        ("checktype=5", "checktype", "5"),
        ("checktype=05", "checktype", "5"),
        ("checktype=0", "checktype", "0"),
        ('checkcommand="/usr/local/bin/check"', "checkcommand", "/usr/local/bin/check"),
        ("checkcommand=/usr/local/bin/check", "checkcommand", "/usr/local/bin/check"),
        ("checkport=8080", "checkport", 8080),
        ('login="user"', "login", "user"),
        ('passwd="p#ss word"', "passwd", "p#ss word"),
        ('database="db"', "database", "db"),
        ('secret="s3cret"', "secret", "s3cret"),
        ("scheduler=rr", "scheduler", "rr"),
        ("scheduler=mh", "scheduler", "mh"),
        ("persistent=300", "persistent", 300),
        ("schedflags=sh-port,sh-fallback", "schedflags", "sh-port,sh-fallback"),
        ("ops=yes", "ops", True),
        ("service=simpletcp", "service", "simpletcp"),
        ("service=none", "service", "none"),
        ("httpmethod=head", "httpmethod", "HEAD"),
        ("httpmethod=GET", "httpmethod", "GET"),
        ("virtualhost=www.example.com", "virtualhost", "www.example.com"),
        ('virtualhost="www.example.com"', "virtualhost", "www.example.com"),
        ("checktimeout=3", "checktimeout", 3.0),
        ("negotiatetimeout=12", "negotiatetimeout", 12.0),
        ("checkcount=2", "checkcount", 2),
        ("failurecount=3", "failurecount", 3),
        ("quiescent=yes", "quiescent", True),
        ("cleanstop=no", "cleanstop", False),
        ('fallbackcommand="/usr/local/bin/fb.sh"', "fallbackcommand", "/usr/local/bin/fb.sh"),
        ("fallbackcommand=/bin/fb arg", "fallbackcommand", "/bin/fb arg"),
        ('emailalert="ops@example.com"', "emailalert", "ops@example.com"),
        ("emailalertfreq=60", "emailalertfreq", 60),
        ("emailalertstatus=running,running", "emailalertstatus", ("running",)),
        (
            "emailalertstatus=all,starting",
            "emailalertstatus",
            ("starting", "running", "stopping", "reloading"),
        ),
        ("smtp=192.0.2.25", "smtp", "192.0.2.25"),
        ("servicename=Web Site", "servicename", "Web Site"),
        ("comment=Test load balanced web site", "comment", "Test load balanced web site"),
        ("service=http#inline comment", "service", "http"),
    ],
)
def test_virtual_directive(line: str, field: str, value: object) -> None:
    v = one(vblock("real=10.0.0.1:80 gate", line, "checkinterval=10"))
    assert getattr(v, field) == value


def test_monitorfile(tmp_path: Path) -> None:
    mon = tmp_path / "monitor.log"
    v = one(vblock("real=10.0.0.1:80 gate", f'monitorfile="{mon}"'))
    assert v.monitorfile == str(mon)
    assert not mon.exists()
    assert "must be an absolute path" in errors(vblock('monitorfile="rel.log"'))[0]
    assert (
        'directory "/nonexistent-dir" does not exist' in errors(vblock("monitorfile=/nonexistent-dir/m"))[0]
    )


def test_netmask() -> None:
    assert one(vblock("persistent=60", "netmask=255.255.255.0")).netmask == "255.255.255.0"
    v6 = one(vblock("persistent=60", "netmask=48", head="virtual6=[2001:db8::5]:80"))
    assert v6.netmask == "48"
    assert "dotted quad notation is required" in errors(vblock("netmask=24"))[0]
    assert "dotted quad notation is required" in errors(vblock("netmask=300.0.0.0"))[0]
    assert "prefix length between 1 and 128" in errors(vblock("netmask=129", head="virtual6=[::1]:80"))[0]
    assert "prefix length between 1 and 128" in errors(vblock("netmask=ffff::", head="virtual6=[::1]:80"))[0]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('request=""', "no request string specified"),
        ("request=index.html", 'request must be in double quotes, e.g. request="/index.html"'),
        ('request="index.html', "request: missing closing double quote"),
        ('receive=""', "invalid receive string: empty"),
        ("receive=OK", "receive must be in double quotes"),
        ("checktype=sometimes", 'invalid checktype "sometimes": checktype must be "connect", "negotiate"'),
        ("checktype=connect2", 'invalid checktype "connect2"'),
        ("checktype=-1", 'invalid checktype "-1"'),
        ("checkcommand=", "invalid check command: empty"),
        ("checkport=0", 'invalid checkport "0": expected an integer in 1..65535'),
        ("checkport=65536", 'invalid checkport "65536"'),
        ("login=user", "login must be in double quotes"),
        ('login=""', "invalid login string: empty"),
        ('passwd=""', "invalid password: empty"),
        ('database=""', "invalid database: empty"),
        ('secret=""', "invalid secret: empty"),
        ("scheduler=Wrr", 'invalid scheduler "Wrr", should be only lowercase letters (a-z)'),
        ("scheduler=", "invalid scheduler"),
        ("persistent=0", 'invalid persistent timeout "0"'),
        ("persistent=abc", 'invalid persistent timeout "abc"'),
        ("schedflags=flag-1, flag-2", 'invalid sched-flags "flag-1, flag-2"'),
        ("ops=1", "ops must be 'yes' or 'no'"),
        ("service=gopher", 'invalid service "gopher": service must be one of dns, ftp'),
        ("httpmethod=POST", 'httpmethod must be GET or HEAD (got "POST")'),
        ("virtualhost=", "invalid virtualhost: empty"),
        ("quiescent=maybe", "quiescent must be 'yes' or 'no'"),
        ("checktimeout=0", 'invalid check timeout "0"'),
        ("checkinterval=never", 'invalid check interval "never"'),
        ("connecttimeout=3", "connecttimeout directive deprecated in favour of negotiatetimeout"),
        ("timeout=3", "timeout directive deprecated"),
        (
            "autoreload=yes",
            '"autoreload" is a global directive: write it in column 0, outside virtual sections',
        ),
        ('logfile="/tmp/x"', '"logfile" is a global directive'),
        ("maintenancedir=/tmp", '"maintenancedir" is a global directive'),
        ("emailalertfrom=x@y", '"emailalertfrom" is a global directive'),
        ("readdquiescent=yes", '"readdquiescent" is a global directive'),
        ("virtual=192.0.2.9:80", "virtual= must start in column 0"),
        ("reel=10.0.0.1 gate", 'unknown directive "reel" (did you mean "real"?)'),
        ("fallback6=[::1]:80", 'cannot specify "fallback6" here.  please use "fallback" instead'),
        ("real6=[::1]:80 gate", 'cannot specify "real6" here.  please use "real" instead'),
        ("fallback=127.0.0.1:80 bridge", "forward method must be gate, masq or ipip"),
        ("real", 'real: "=" and a value expected'),
    ],
)
def test_virtual_errors_per_line(line: str, message: str) -> None:
    found = errors(vblock(line))
    assert len(found) == 1, found
    assert found[0].startswith("2: ") and message in found[0], found


def test_ftp_and_sip_login_defaults() -> None:
    v = one(vblock("service=ftp", head="virtual=192.0.2.1:21"))
    assert (v.login, v.passwd) == ("anonymous", "ldirectord@lb1")
    v = one(vblock('login="bob"', "service=ftp", head="virtual=192.0.2.1:21"))
    assert (v.login, v.passwd) == ("bob", "ldirectord@lb1")
    v = one(vblock("service=ftp", 'login="bob"', 'passwd="pw"', head="virtual=192.0.2.1:21"))
    assert (v.login, v.passwd) == ("bob", "pw")
    v = one(vblock("service=sip", head="virtual=192.0.2.1:5060"))
    assert (v.login, v.passwd) == ("ldirectord@lb1", "")
    # ldirectord only fills them when it reads service=: a port-21 virtual without service= gets none
    v = one(vblock("real=10.0.0.1 gate", head="virtual=192.0.2.1:21"))
    assert (v.service, v.login, v.passwd) == ("ftp", "", "")


def test_last_value_in_a_section_wins() -> None:
    assert one(vblock("scheduler=wlc", "scheduler=rr")).scheduler == "rr"


def test_per_virtual_values_override_globals() -> None:
    pre = (
        "quiescent=yes\ncleanstop=no\nemailalert=a@x\nemailalertfreq=5\nemailalertstatus=running\n"
        "smtp=mx\nfallbackcommand=/bin/g\ncheckcount=2\nfailurecount=3\ncheckinterval=4\n"
    )
    inherited = parse(vblock("real=10.0.0.1 gate", pre=pre)).virtuals[0]
    assert (inherited.quiescent, inherited.cleanstop, inherited.emailalert) == (True, False, "a@x")
    assert (inherited.emailalertfreq, inherited.emailalertstatus, inherited.smtp) == (5, ("running",), "mx")
    assert (inherited.fallbackcommand, inherited.checkcount, inherited.failurecount) == ("/bin/g", 2, 3)
    assert inherited.checkinterval == 4.0
    own = parse(
        vblock(
            "real=10.0.0.1 gate", "quiescent=no", "cleanstop=yes", "emailalert=b@x", "emailalertfreq=0",
            "emailalertstatus=none", "smtp=mx2", "fallbackcommand=/bin/v", "checkcount=1", "failurecount=1",
            "checkinterval=2", pre=pre,
        )
    ).virtuals[0]  # fmt: skip
    assert (own.quiescent, own.cleanstop, own.emailalert) == (False, True, "b@x")
    assert (own.emailalertfreq, own.emailalertstatus, own.smtp) == (0, (), "mx2")
    assert (own.fallbackcommand, own.checkcount, own.failurecount, own.checkinterval) == ("/bin/v", 1, 1, 2.0)


# --------------------------------------------------------------------------------------------------
# timeouts (ld_setup's resolution order)
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("g_check", "g_neg", "v_check", "v_neg", "check", "neg"),
    [
        (None, None, None, None, 5, 30),
        (3, None, None, None, 3, 3),
        (None, 20, None, None, 20, 20),
        (3, 20, None, None, 3, 20),
        (None, None, 2, None, 2, 2),
        (None, None, None, 9, 9, 9),
        (None, None, 2, 9, 2, 9),
        (3, 20, 2, None, 2, 2),
        (3, 20, None, 9, 9, 9),
        (3, None, None, 9, 9, 9),
        (None, 20, 2, None, 2, 2),
        (3, 20, 1.5, 7.5, 1.5, 7.5),
    ],
)
def test_timeout_resolution(
    g_check: float | None,
    g_neg: float | None,
    v_check: float | None,
    v_neg: float | None,
    check: float,
    neg: float,
) -> None:
    pre = (f"checktimeout={g_check}\n" if g_check else "") + (f"negotiatetimeout={g_neg}\n" if g_neg else "")
    lines = ["real=10.0.0.1 gate"]
    lines += [f"checktimeout={v_check}"] if v_check else []
    lines += [f"negotiatetimeout={v_neg}"] if v_neg else []
    v = parse(vblock(*lines, pre=pre)).virtuals[0]
    assert (v.checktimeout, v.negotiatetimeout) == (check, neg)


# --------------------------------------------------------------------------------------------------
# real=
# --------------------------------------------------------------------------------------------------


def reals(*lines: str, head: str = "virtual=192.0.2.1:80") -> list[tuple[object, ...]]:
    v = one(vblock(*lines, head=head))
    return [
        (r.hostport, r.forward, r.weight, r.request, r.receive, r.lower_threshold, r.upper_threshold, r.line)
        for r in v.reals
    ]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("real=10.0.0.1:80 gate", ("10.0.0.1:80", "gate", 1, None, None, None, None)),
        ("real = 10.0.0.1:80  masq  3", ("10.0.0.1:80", "masq", 3, None, None, None, None)),
        ("real=10.0.0.1:80 ipip 0", ("10.0.0.1:80", "ipip", 0, None, None, None, None)),
        ("real=10.0.0.1 gate", ("10.0.0.1:0", "gate", 1, None, None, None, None)),
        ("real=10.0.0.1:http gate", ("10.0.0.1:80", "gate", 1, None, None, None, None)),
        ("real=web1:www masq 2", ("10.0.0.1:80", "masq", 2, None, None, None, None)),
        ("real=localhost:80 gate", ("127.0.0.1:80", "gate", 1, None, None, None, None)),
        (
            'real=10.0.0.1:80 gate 1 "alt" "OK from 2"',
            ("10.0.0.1:80", "gate", 1, "/alt", "OK from 2", None, None),
        ),
        ('real=10.0.0.1:80 gate 5 "/x","y"', ("10.0.0.1:80", "gate", 5, "/x", "y", None, None)),
        ('real=10.0.0.1:80 gate 5 "/x", "y"', ("10.0.0.1:80", "gate", 5, "/x", "y", None, None)),
        ('real=10.0.0.1:80 gate "/x" "y"', ("10.0.0.1:80", "gate", 1, "/x", "y", None, None)),
        ('real=10.0.0.1:80 gate 1 "/x" ""', ("10.0.0.1:80", "gate", 1, "/x", "", None, None)),
        ('real=10.0.0.1:80 gate 1 "/a#b" "c#d"', ("10.0.0.1:80", "gate", 1, "/a#b", "c#d", None, None)),
        ("real=10.0.0.1:80 masq 1 l:10 u:100", ("10.0.0.1:80", "masq", 1, None, None, 10, 100)),
        ("real=10.0.0.1:80 masq u:100 l:10", ("10.0.0.1:80", "masq", 1, None, None, 10, 100)),
        ("real=10.0.0.1:80 masq u:100", ("10.0.0.1:80", "masq", 1, None, None, None, 100)),
        ('real=10.0.0.1:80 masq 2 "/r" "ok" l:1 u:5', ("10.0.0.1:80", "masq", 2, "/r", "ok", 1, 5)),
        ("real=10.0.0.1:80 gate # comment", ("10.0.0.1:80", "gate", 1, None, None, None, None)),
        ("real=10.0.0.1:80\tgate 4", ("10.0.0.1:80", "gate", 4, None, None, None, None)),
    ],
)
def test_real_forms(line: str, expected: tuple[object, ...]) -> None:
    assert reals(line) == [(*expected, 2)]


def test_real_range() -> None:
    found = reals("real=10.0.0.254->10.0.1.1:8080 masq 5")
    assert [r[0] for r in found] == ["10.0.0.254:8080", "10.0.0.255:8080", "10.0.1.0:8080", "10.0.1.1:8080"]
    assert {r[1:] for r in found} == {("masq", 5, None, None, None, None, 2)}
    assert [r[0] for r in reals("real=web1->web2:80 gate")] == ["10.0.0.1:80", "10.0.0.2:80"]
    assert [r[0] for r in reals("real=10.0.0.3->10.0.0.3 gate")] == ["10.0.0.3:0"]


def test_real6() -> None:
    found = reals("real6=[2001:db8::1]:443 masq 2", "real6=web6 gate", head="virtual6=[2001:db8::5]:443")
    assert [(r[0], r[1], r[2]) for r in found] == [
        ("[2001:db8::1]:443", "masq", 2),
        ("[2001:db8::10]:0", "gate", 1),
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "real=10.0.0.[2-5]:80 masq",
            'invalid real server "10.0.0.[2-5]:80 masq": ranges are written 10.0.0.2->10.0.0.5',
        ),
        ("real=192.168.6.2::5060 gate", 'invalid port ":5060": write address:port with a single colon'),
        ("real=10.0.0.1:80", "forwarding method missing: expected gate, masq or ipip"),
        ("real=10.0.0.1:80 route", 'forward method must be gate, masq or ipip (got "route")'),
        ("real=10.0.0.1:80 gate foo 5", 'unexpected text around "foo 5"'),
        ("real=10.0.0.1:80 gate 5x", 'unexpected text around "5x"'),
        ("real=10.0.0.1:80 gate 70000", 'invalid weight "70000": expected an integer in 0..65535'),
        ('real=10.0.0.1:80 gate 1 "only-request"', "a per-real request and receive must both be given"),
        ("real=10.0.0.1:80 gate 1 l:x", 'invalid l: threshold "x"'),
        ("real=10.0.0.1:80 gate 1 l:1 l:2", "l: threshold given twice"),
        ('real=10.0.0.1:80 gate "<l:10>"', "a per-real request and receive must both be given"),
        ("real=10.0.0.5->10.0.0.1:80 gate", "invalid range 10.0.0.5->10.0.0.1"),
        ("real=10.0.0.1:80->10.0.0.3:80 gate", "the port goes after the last address of a range"),
        ("real=10.0.0.0->10.2.0.0 gate", "at most 65536 are allowed"),
        ("real=nowhere:80 gate", 'invalid real server "nowhere:80 gate": could not resolve host "nowhere"'),
        ("real=web1->nowhere:80 gate", 'could not resolve host "nowhere"'),
        ("real=10.0.0.1:nosuch gate", 'could not resolve port "nosuch"'),
        ("real=10.0.0.1:70000 gate", 'invalid port "70000"'),
        ("real=[2001:db8::1]:80 gate", 'cannot use the IPv6 address [2001:db8::1] with "real": use "real6"'),
        ("real=", "address missing"),
        ("real=10.1:80 gate", 'invalid IPv4 address "10.1"'),
        ("real=5060 gate", 'invalid IPv4 address "5060"'),
    ],
)
def test_real_errors(line: str, message: str) -> None:
    found = errors(vblock(line))
    assert len(found) == 1, found
    assert found[0].startswith("2: ") and message in found[0], found


def test_bracket_range_message_is_exact() -> None:
    err = failure(vblock("checktype=on", "real=10.0.0.[2-5]:80 masq", head="virtual=10.0.0.1:80"), "ld.cf")
    assert str(err).splitlines()[0] == (
        'ld.cf:3: invalid real server "10.0.0.[2-5]:80 masq": ranges are written 10.0.0.2->10.0.0.5'
    )


def test_real6_errors() -> None:
    head = "virtual6=[2001:db8::5]:80"
    assert (
        "address ranges are not supported for IPv6" in errors(vblock("real6=[::1]->[::2] gate", head=head))[0]
    )
    assert (
        'cannot use the IPv4 address 10.0.0.1 with "real6"'
        in errors(vblock("real6=10.0.0.1 gate", head=head))[0]
    )
    assert (
        'cannot specify "real" here.  please use "real6" instead'
        in errors(vblock("real=web1 gate", head=head))[0]
    )


def test_duplicate_reals() -> None:
    ws = warnings(vblock("real=10.0.0.1:80 gate", "real=10.0.0.1:80 gate"))
    assert ws == ["3: real server 10.0.0.1:80 listed twice (also on line 2); ignored"]
    assert one(vblock("real=10.0.0.1:80 gate", "real=10.0.0.1:80 gate")).reals[0].line == 2
    assert errors(vblock("real=10.0.0.1:80 gate", "real=10.0.0.1->10.0.0.2:80 gate 3")) == [
        "3: real server 10.0.0.1:80 is already defined on line 2 with other settings"
    ]


# --------------------------------------------------------------------------------------------------
# fallback resolution
# --------------------------------------------------------------------------------------------------


def test_fallback_resolution() -> None:
    # per-virtual, port omitted → the virtual's port; forward omitted → gate
    assert one(vblock("fallback=127.0.0.1")).fallback == FallbackConfig("127.0.0.1", 80, "gate")
    assert one(vblock("fallback=localhost:http masq")).fallback == FallbackConfig("127.0.0.1", 80, "masq")
    # global applies by family; the per-virtual one wins
    text = "fallback=127.0.0.2:8080 masq\nfallback6=[::1]\n" + vblock("real=10.0.0.1 gate")
    text += vblock("fallback=127.0.0.3", head="virtual=192.0.2.2:443")
    text += vblock("real6=[::2] gate", head="virtual6=[2001:db8::5]:443")
    a, b, c = parse(text).virtuals
    assert a.fallback == FallbackConfig("127.0.0.2", 8080, "masq")
    assert b.fallback == FallbackConfig("127.0.0.3", 443, "gate")
    assert c.fallback == FallbackConfig("::1", 443, "gate")
    # global without port → each virtual's own port
    v = parse("fallback=127.0.0.9\n" + vblock("real=10.0.0.1 gate", head="virtual=192.0.2.3:25")).virtuals[0]
    assert v.fallback == FallbackConfig("127.0.0.9", 25, "gate")
    # no IPv6 global: an IPv6 virtual has none
    v = parse("fallback=127.0.0.9\n" + vblock("real6=[::2] gate", head="virtual6=[::5]:80")).virtuals[0]
    assert v.fallback is None


def test_fallback_on_fwmark() -> None:
    v = one(vblock("real=10.0.0.1 gate", "checktype=on", "fallback=127.0.0.1", head="virtual=5"))
    assert v.fallback == FallbackConfig("127.0.0.1", 0, "gate")
    config = parse("fallback=127.0.0.1:80\n" + vblock("real=10.0.0.1 gate", "checktype=on", head="virtual=5"))
    assert config.virtuals[0].fallback == FallbackConfig("127.0.0.1", 80, "gate")
    assert "applied to firewall-mark virtual 5" in config.warnings[0].message


def test_fallback_errors_point_at_the_fallback_line() -> None:
    assert errors(vblock("real=10.0.0.1 gate", "fallback=nowhere")) == [
        '3: invalid fallback server: could not resolve host "nowhere" to an IPv4 address'
    ]


# --------------------------------------------------------------------------------------------------
# warnings about meaning
# --------------------------------------------------------------------------------------------------


def test_unchecked_virtual_warning_w7() -> None:
    ws = warnings(vblock("real=10.0.0.1 gate", head="virtual=192.0.2.1:8080"))
    assert len(ws) == 1 and ws[0].startswith("1: virtual 192.0.2.1:8080 is NEVER health-checked")
    assert "port 8080 has no default service" in ws[0]
    ws = warnings(vblock("real=10.0.0.1 gate", head="virtual=9"))
    assert "firewall-mark virtuals default to service none" in ws[0]
    assert warnings(vblock("real=10.0.0.1 gate", "checktype=on", head="virtual=192.0.2.1:8080")) == []
    assert warnings(vblock("real=10.0.0.1 gate", "checktype=connect", head="virtual=192.0.2.1:8080")) == []


def test_other_meaning_warnings() -> None:
    ws = warnings(
        vblock("real=10.0.0.1:8080 gate", "real=10.0.0.2:8080 masq", "real=10.0.0.3->10.0.0.4:81 ipip")
    )
    assert ws == [
        "2: real 10.0.0.1:8080 uses gate forwarding: LVS sends it traffic on port 80 "
        "(only masq can change the port); port 8080 is only used for health checks",
        "4: real 10.0.0.3:81 uses ipip forwarding: LVS sends it traffic on port 80 (only masq can change the "
        "port); port 81 is only used for health checks",
    ]
    assert warnings(vblock("ops=yes")) == [
        "2: ops=yes only applies to udp virtual services; ignored for 192.0.2.1:80"
    ]
    assert warnings(vblock("netmask=255.255.255.0")) == [
        "2: netmask is only used together with persistent=; ignored"
    ]
    assert warnings(vblock("checktype=external")) == [
        "1: checktype=external without checkcommand: /bin/true always succeeds"
    ]
    assert warnings(vblock("real=10.0.0.1 gate", "checktype=connect", head="virtual=3")) == [
        "2: connect check of real 10.0.0.1 has no port to check: set checkport="
    ]
    assert warnings(vblock('load="x"')) == ["2: load= has no effect (ldirectord reads and ignores it too)"]
    assert warnings(vblock("checkcount=2")) == [
        "2: checkcount option is deprecated and slated for removal.  please see 'failurecount'"
    ]


def test_checkinterval_per_virtual() -> None:
    v = parse(vblock("real=10.0.0.1 gate", "checkinterval=5", pre="checkinterval=3\n"))
    assert v.virtuals[0].checkinterval == 5.0
    assert [str(w) for w in v.warnings] == [
        "ld.cf:4: warning: checkinterval in virtual 192.0.2.1:80 is honoured by Saru "
        "(ldirectord ignores it unless fork=yes)"
    ]
    forked = parse(vblock("real=10.0.0.1 gate", "checkinterval=5", pre="fork=yes\n"))
    assert forked.virtuals[0].checkinterval == 5.0 and forked.warnings == ()


def test_empty_config_is_accepted_with_a_warning() -> None:
    config = parse_text("", "empty.cf", resolver=FakeResolver())
    assert config.virtuals == ()
    assert [str(w) for w in config.warnings] == [
        "empty.cf:1: warning: no virtual services defined: nothing will be load balanced"
    ]
    assert parse("# only a comment\nchecktimeout=3\n").warnings[0].line == 2


# --------------------------------------------------------------------------------------------------
# lexical rules
# --------------------------------------------------------------------------------------------------


def test_indentation_tab_spaces_and_short_indent() -> None:
    for indent in ("\t", "    ", "        ", " ", "  \t"):
        v = parse_text(f"virtual=192.0.2.1:80\n{indent}real=10.0.0.1:80 gate\n", resolver=FakeResolver())
        assert len(v.virtuals[0].reals) == 1, repr(indent)


def test_blank_lines_and_comments_inside_a_section() -> None:
    text = (
        "# header\n"
        "virtual=192.0.2.1:80\n"
        "\treal=10.0.0.1:80 gate\n"
        "\n"
        "# a column-0 comment does not end the section\n"
        "\t# nor does an indented one\n"
        "   \n"
        "\treal=10.0.0.2:80 gate\n"
        "\tservice=http # trailing comment\n"
        "checkinterval=3\n"
    )
    config = parse_text(text, resolver=FakeResolver())
    assert [r.address for r in config.virtuals[0].reals] == ["10.0.0.1", "10.0.0.2"]
    assert config.globals.checkinterval == 3.0


def test_column_zero_ends_the_section() -> None:
    text = "virtual=192.0.2.1:80\n\treal=10.0.0.1:80 gate\nquiescent=yes\n\treal=10.0.0.2:80 gate\n"
    # the indented line after a global line belongs to no section
    found = errors(text)
    assert found == [
        '4: indented line outside a virtual section: "real=10.0.0.2:80 gate" '
        "(global directives start in column 0; section lines follow a virtual= line)"
    ]


def test_indented_line_before_any_virtual() -> None:
    with pytest.raises(ConfigError) as info:
        parse_text("  checktimeout=3\n", resolver=FakeResolver())
    assert "<string>:1: indented line outside a virtual section" in str(info.value)


def test_lines_of_a_rejected_virtual_are_not_reported_again() -> None:
    assert errors("virtual=nonsense\n\treal=10.0.0.1 gate\n\tbogus=1\n") == [
        '1: invalid address for virtual server "nonsense": port missing '
        "(write virtual=HOST:PORT, or a firewall mark number)"
    ]


def test_lines_after_a_garbled_column_zero_line_are_not_reported_again() -> None:
    assert errors("virtual 192.0.2.1:80\n\treal=10.0.0.1 gate\n") == [
        '1: syntax error at "virtual 192.0.2.1:80": expected directive=value (near "virtual")'
    ]
    assert errors("virtul=192.0.2.1:80\n\treal=10.0.0.1 gate\n") == [
        '1: unknown directive "virtul" (did you mean "virtual"?)'
    ]


def test_crlf_and_trailing_whitespace() -> None:
    text = "quiescent=yes \r\nvirtual=192.0.2.1:80\r\n\treal=10.0.0.1:80 gate\t\r\n\tscheduler=rr  \r\n"
    config = parse_text(text, resolver=FakeResolver())
    assert config.globals.quiescent and config.virtuals[0].scheduler == "rr"


def test_hash_in_quotes_is_literal_and_trailing_hash_is_a_comment() -> None:
    v = one(vblock('request="/a#b"', 'receive="x # y"  # comment', "virtualhost=h.example#c"))
    assert (v.request, v.receive, v.virtualhost) == ("/a#b", "x # y", "h.example")
    config = parse('logfile="/tmp/a#b.log"\n' + vblock("real=10.0.0.1 gate"))
    assert config.globals.logfile == "/tmp/a#b.log"


def test_many_errors_are_collected_in_line_order() -> None:
    text = "checktimeout=x\nbogus=1\n" + vblock("real=10.0.0.1:80 route", "scheduler=RR", "checkport=0")
    found = errors(text)
    assert [f.split(":")[0] for f in found] == ["1", "2", "4", "5", "6"]


def test_config_error_str_format() -> None:
    err = failure("checktimeout=x\n" + vblock("checktype=on"), "my.cf")
    assert (
        str(err)
        == 'my.cf:1: invalid check timeout "x": expected a number of seconds greater than 0 (at most 2678400)'
    )
    assert err.diagnostics == [
        Diagnostic(
            "my.cf",
            1,
            'invalid check timeout "x": expected a number of seconds greater than 0 (at most 2678400)',
        )
    ]


def test_error_also_lists_warnings_after_the_errors() -> None:
    err = failure("checkcount=2\nchecktimeout=x\n" + vblock("checktype=on"))
    assert [d.severity for d in err.diagnostics] == ["error", "warning"]
    assert len(err.errors) == 1


# --------------------------------------------------------------------------------------------------
# files and the system resolver
# --------------------------------------------------------------------------------------------------


def test_parse_file_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        parse_file(tmp_path / "absent.cf")
    assert "can not open file" in str(info.value)


def test_parse_file_latin1_comment(tmp_path: Path) -> None:
    f = tmp_path / "ld.cf"
    f.write_bytes(b"# \xc6\xfc\xcb\xdc\xb8\xec comment in EUC-JP\n" + vblock("real=10.0.0.1 gate").encode())
    assert parse_file(f, resolver=FakeResolver()).path == str(f)


def test_system_resolver_localhost_and_services() -> None:
    config = parse_text(
        "virtual=localhost:www\n\treal=localhost:http gate\n\treal=127.0.0.2:domain masq\n", "sys.cf"
    )
    (v,) = config.virtuals
    assert (v.address, v.port) == ("127.0.0.1", 80)
    assert [r.hostport for r in v.reals] == ["127.0.0.1:80", "127.0.0.2:53"]
    resolver = SystemResolver()
    assert resolver.service("http", "tcp") == 80
    assert resolver.service("no-such-service-xyz", None) is None
    assert resolver.host("localhost", 4) == "127.0.0.1"
    assert resolver.hostname()


def test_names_are_resolved_once() -> None:
    resolver = FakeResolver()
    parse_text(
        vblock("real=web1:http gate", "real=web1:https gate", head="virtual=web1:http"), resolver=resolver
    )
    # the parser asks each distinct question (SystemResolver caches answers); nothing else is looked up
    hosts = [c for c in resolver.calls if c[0] == "host"]
    assert {c[1] for c in hosts} == {"web1"}
