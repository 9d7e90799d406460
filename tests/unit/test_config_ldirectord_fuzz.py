"""Property tests: whatever the text, the ldirectord.cf parser returns a Config or raises ConfigError,
and every diagnostic points at a line of the file."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from saru.config.diagnostics import ConfigError
from saru.config.ldirectord import parse_text
from saru.config.ldirectord.directives import ALL_DIRECTIVES
from saru.model import Config
from tests.unit.test_config_support import FakeResolver

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

ALPHABET = ' \t\n#"[]:=->,0123456789abcdeflgmasqtuv.6'
NAMES = sorted(ALL_DIRECTIVES | {"connecttimeout", "timeout", "bogus"})
VALUES = [
    "", "yes", "no", "0", "1", "3", "2.5", "-1", "abc", '"x"', '""', '"/a#b"', "all", "none", "running,none",
    "192.0.2.1:80", "192.0.2.1", "[::1]:80", "::1", "7", "localhost:http", "web1->web2:80 gate",
    "10.0.0.1:80 gate 5 \"a\" \"b\" l:1 u:2", "10.0.0.[2-5]:80 masq", "10.0.0.9->10.0.0.1 gate",
    "10.0.0.1 route", "http", "ftp", "sip", "tcp", "udp", "fwm", "255.255.255.0", "64", "rr",
    '"/tmp/x.log"', '"local0"', "/nonexistent/x", "\x00", "9" * 40, "4294967296", "65536",
]  # fmt: skip


def check(text: str) -> None:
    lines = max(1, len(text.split("\n")))
    try:
        result = parse_text(text, "fuzz.cf", resolver=FakeResolver())
    except ConfigError as exc:
        assert exc.diagnostics and exc.errors
        diagnostics = exc.diagnostics
        assert str(exc)
    else:
        assert isinstance(result, Config)
        diagnostics = list(result.warnings)
    for d in diagnostics:
        assert 1 <= d.line <= lines, (d, lines)
        assert d.file == "fuzz.cf" and d.message


def test_valid_base_config_parses() -> None:
    config = parse_text(VALID, "fuzz.cf", resolver=FakeResolver())
    assert len(config.virtuals) == 4


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text())
def test_arbitrary_text(text: str) -> None:
    check(text)


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=ALPHABET, max_size=300))
def test_text_from_the_config_alphabet(text: str) -> None:
    check(text)


@st.composite
def mutated(draw: st.DrawFn) -> str:
    text = VALID
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["delete", "insert", "replace", "dup_line", "drop_line", "swap", "cut"]))
        pos = draw(st.integers(0, max(0, len(text) - 1)))
        lines = text.split("\n")
        i = draw(st.integers(0, len(lines) - 1))
        j = draw(st.integers(0, len(lines) - 1))
        if kind == "delete":
            text = text[:pos] + text[pos + draw(st.integers(1, 5)) :]
        elif kind == "insert":
            text = text[:pos] + draw(st.text(alphabet=ALPHABET, min_size=1, max_size=4)) + text[pos:]
        elif kind == "replace":
            text = text[:pos] + draw(st.sampled_from(ALPHABET)) + text[pos + 1 :]
        elif kind == "dup_line":
            lines.insert(i, lines[j])
            text = "\n".join(lines)
        elif kind == "drop_line":
            del lines[i]
            text = "\n".join(lines)
        elif kind == "swap":
            lines[i], lines[j] = lines[j], lines[i]
            text = "\n".join(lines)
        else:
            text = text[:pos]
    return text


@settings(max_examples=500, deadline=None)
@given(mutated())
def test_mutations_of_a_valid_config(text: str) -> None:
    check(text)


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


@settings(max_examples=600, deadline=None)
@given(directive_lines())
def test_random_directive_lines(text: str) -> None:
    check(text)
