"""ldirectord.cf fuzzing: generated from the grammar (parses, and the model says what was written) and
mutated from every real config in the tree (parses, or a ``ConfigError`` whose every diagnostic is
``FILE:LINE: message`` with a line of the file). Never another exception, never a hang (the profile's
deadline)."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from saru.config.diagnostics import ConfigError
from saru.config.ldirectord import parse_text
from saru.config.ldirectord.directives import ALL_DIRECTIVES
from saru.model import Config
from tests.fuzz.budget import fuzz
from tests.fuzz.corpus import ldirectord_configs
from tests.fuzz.mutate import mutated_text

SEEDS = [text for _, text in ldirectord_configs()]
ALPHABET = ' \t\n#"[]:=->,.0123456789abcdefghilmnopqrstuvwxyz6/\\'
FILE = "fuzz.cf"


class StaticResolver:
    """Names without the network: a few hosts, services from /etc/services (a local file)."""

    HOSTS = {("localhost", 4): "127.0.0.1", ("localhost", 6): "::1", ("web1", 4): "10.0.0.1"}

    def host(self, name: str, family: int) -> str | None:
        return self.HOSTS.get((name, family))

    def service(self, name: str, protocol: str | None) -> int | None:
        for proto in (protocol,) if protocol else ("tcp", "udp"):
            try:
                return socket.getservbyname(name, proto)
            except (OSError, UnicodeError):
                continue
        return None

    def hostname(self) -> str:
        return "director"


def parse_or_clean_error(text: str) -> Config | None:
    """The parser's contract on any text: a Config, or ConfigError with located diagnostics."""
    lines = max(1, len(text.split("\n")))
    try:
        config = parse_text(text, FILE, resolver=StaticResolver())
    except ConfigError as exc:
        assert exc.errors, "a ConfigError without an error"
        for d in exc.diagnostics:
            assert d.file == FILE and 1 <= d.line <= lines and d.message.strip(), d
            assert str(d).startswith(f"{FILE}:{d.line}: "), str(d)
        return None
    for d in config.warnings:
        assert d.file == FILE and 1 <= d.line <= lines and d.message.strip(), d
    return config


def test_the_corpus_is_there_and_mostly_valid() -> None:
    names = [name for name, _ in ldirectord_configs()]
    assert "packaging/examples/guide.cf" in names and "packaging/etc/ldirectord.cf" in names
    assert len(names) >= 40, names
    parsed = {name: parse_or_clean_error(text) for name, text in ldirectord_configs()}
    assert parsed["packaging/examples/guide.cf"] is not None  # the guide's LD1 (the shipped /etc one names
    # a logfile in /var/log/saru, which the package creates: refused here with that line)
    assert sum(c is not None for c in parsed.values()) >= len(SEEDS) // 3  # many tests write broken ones


@fuzz(150)
@given(mutated_text(SEEDS, ALPHABET))
def test_mutated_real_configs(text: str) -> None:
    parse_or_clean_error(text)


@fuzz(100)
@given(st.binary(max_size=400).map(lambda b: b.decode("latin-1")))
@example("virtual=1.2.3.4:80\n\treal=" + "1" * 5000 + "\n")
@example("virtual=" + "[" * 3000 + "\n")
@example("checktimeout=" + "9" * 5000 + "\n")
def test_binary_garbage(text: str) -> None:
    parse_or_clean_error(text)


# -- from the grammar ------------------------------------------------------------------------------

SCHEDULERS = ("rr", "wrr", "lc", "wlc", "sh", "dh", "sed", "nq", "mh")
FORWARDS = {"gate": "gate", "masq": "masq", "ipip": "ipip"}


@st.composite
def generated(draw: st.DrawFn) -> tuple[str, list[dict[str, object]]]:
    """A valid config and what each of its virtuals must come out as."""
    lines = [f"checktimeout={draw(st.integers(1, 60))}", f"checkinterval={draw(st.integers(1, 60))}",
             f"quiescent={draw(st.sampled_from(('yes', 'no')))}"]
    expected: list[dict[str, object]] = []
    used: set[tuple[str, int]] = set()
    for _ in range(draw(st.integers(1, 4))):
        ipv6 = draw(st.booleans())
        host = draw(st.integers(1, 254))
        port = draw(st.integers(1, 65535))
        address = f"2001:db8::{host:x}" if ipv6 else f"192.0.2.{host}"
        if (address, port) in used:
            continue
        used.add((address, port))
        scheduler = draw(st.sampled_from(SCHEDULERS))
        shown = f"[{address}]:{port}" if ipv6 else f"{address}:{port}"
        lines.append(f"virtual{'6' if ipv6 else ''}={shown}")
        reals = []
        seen: set[tuple[str, int]] = set()
        for _ in range(draw(st.integers(0, 5))):
            rhost, rport = draw(st.integers(1, 254)), draw(st.integers(1, 65535))
            raddr = f"2001:db8:1::{rhost:x}" if ipv6 else f"10.0.0.{rhost}"
            if (raddr, rport) in seen:
                continue
            seen.add((raddr, rport))
            forward = draw(st.sampled_from(sorted(FORWARDS)))
            weight = draw(st.integers(0, 65535))
            rshown = f"[{raddr}]:{rport}" if ipv6 else f"{raddr}:{rport}"
            indent = draw(st.sampled_from(("\t", "    ", "  ")))
            lines.append(f"{indent}real{'6' if ipv6 else ''}={rshown} {forward} {weight}")
            reals.append((raddr, rport, FORWARDS[forward], weight))
        lines += [f"\tscheduler={scheduler}", "\tchecktype=on", "\tprotocol=tcp"]
        if draw(st.booleans()):
            lines.append(draw(st.sampled_from(("# a comment", "", "\t# indented comment"))))
        expected.append({"address": address, "port": port, "ipv6": ipv6, "scheduler": scheduler,
                         "reals": reals})
    return "\n".join(lines) + "\n", expected


@fuzz(100)
@given(generated())
def test_generated_configs_parse_to_what_was_written(case: tuple[str, list[dict[str, object]]]) -> None:
    text, expected = case
    config = parse_or_clean_error(text)
    assert config is not None, text
    got = [{"address": v.address, "port": v.port, "ipv6": v.ipv6, "scheduler": v.scheduler,
            "reals": [(r.address, r.port, r.forward, r.weight) for r in v.reals]} for v in config.virtuals]
    for item in got:  # the model's addresses are canonical: compare as addresses
        item["address"] = str(ipaddress.ip_address(str(item["address"])))
    assert got == expected


@pytest.mark.parametrize("size", [20_000])
def test_a_long_file_is_linear_not_a_hang(size: int) -> None:
    """Many sections and a very long line parse (or fail cleanly) within the deadline pytest gives."""
    text = "".join(f"virtual=192.0.2.1:{i + 1}\n\treal=10.0.0.1:80 gate\n\tchecktype=on\n" for i in range(size // 3))
    assert parse_or_clean_error(text) is not None
    parse_or_clean_error("virtual=192.0.2.1:80\n\treal=10.0.0.1:80 gate " + "x " * 200_000 + "\n")

# -- moved from tests/unit/test_config_ldirectord_fuzz.py: a reference config, its alphabet, directive lines

VALID = """\
# sample
checktimeout=3
negotiatetimeout=10
checkinterval=5
fallback=127.0.0.1:80 masq
fallback6=[::1]:80
emailalert="ops@example.com"
emailalertstatus=starting,running
quiescent=no
virtual=192.0.2.1:80
\treal=10.0.0.1->10.0.0.3:80 masq 2 "/alt" "ok" l:1 u:9
\treal=localhost:http gate
\tfallback=127.0.0.1:8080 gate
\tservice=http
\tscheduler=rr
\tpersistent=300
\tnetmask=255.255.255.0
\trequest="index.html"
\treceive="Test Page"
\tvirtualhost=www.example.com

virtual6=[2001:db8::5]:443
        real6=[2001:db8::1]:443 masq
        checktype=connect
virtual=7
\treal=10.0.0.7 gate
\tchecktype=3
\tcheckport=80
virtual=localhost:53
\treal=10.0.0.9:53 ipip
\tprotocol=udp
\tops=yes
"""

NAMES = sorted(ALL_DIRECTIVES | {"connecttimeout", "timeout", "bogus"})
VALUES = [
    "", "yes", "no", "0", "1", "3", "2.5", "-1", "abc", '"x"', '""', '"/a#b"', "all", "none", "running,none",
    "192.0.2.1:80", "192.0.2.1", "[::1]:80", "::1", "7", "localhost:http", "web1->web2:80 gate",
    "10.0.0.1:80 gate 5 \"a\" \"b\" l:1 u:2", "10.0.0.[2-5]:80 masq", "10.0.0.9->10.0.0.1 gate",
    "10.0.0.1 route", "http", "ftp", "sip", "tcp", "udp", "fwm", "255.255.255.0", "64", "rr",
    '"/tmp/x.log"', '"local0"', "/nonexistent/x", "\x00", "9" * 40, "4294967296", "65536",
]  # fmt: skip




def test_valid_base_config_parses() -> None:
    config = parse_or_clean_error(VALID)
    assert config is not None and len(config.virtuals) == 4


@fuzz(150)
@given(st.text())
def test_arbitrary_text(text: str) -> None:
    parse_or_clean_error(text)


@fuzz(150)
@given(st.text(alphabet=ALPHABET, max_size=300))
def test_text_from_the_config_alphabet(text: str) -> None:
    parse_or_clean_error(text)


@fuzz(150)
@given(mutated_text([VALID], ALPHABET))
def test_mutations_of_the_reference_config(text: str) -> None:
    parse_or_clean_error(text)


@st.composite
def directive_lines(draw: st.DrawFn) -> str:
    out = []
    for _ in range(draw(st.integers(1, 12))):
        indent = draw(st.sampled_from(["", "", "\t", "    ", " "]))
        name = draw(st.sampled_from(NAMES))
        sep = draw(st.sampled_from(["=", " = ", "", "=="]))
        value = draw(st.sampled_from(VALUES) | st.text(alphabet=ALPHABET, max_size=12))
        comment = draw(st.sampled_from(["", " # c", "#c"]))
        out.append(f"{indent}{name}{sep}{value}{comment}")
    return "\n".join(out) + draw(st.sampled_from(["", "\n", "\r\n"]))


@fuzz(100)
@given(directive_lines())
def test_random_directive_lines(text: str) -> None:
    parse_or_clean_error(text)
