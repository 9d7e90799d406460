"""monitorfile lines: ldirectord's real id, squeezing and message escaping (pure functions)."""

from __future__ import annotations

import re
import time

from hypothesis import given
from hypothesis import strategies as st

from saru.events.monitorfile import escape_message, monitor_line, quotemeta, real_id, squeeze_id
from saru.model import RealConfig, VirtualConfig


def virtual(**kwargs) -> VirtualConfig:
    values = {"protocol": "tcp", "address": "127.0.0.10", "port": 18082, "service": "http"}
    values.update(kwargs)
    return VirtualConfig(**values)


def test_the_observed_ldirectord_line_is_reproduced():
    v = virtual(request="/health", receive="OK")
    real = RealConfig("127.0.0.2", 18082, forward="masq", weight=1)
    when = time.mktime((2026, 11, 24, 21, 1, 9, 0, 0, -1))
    line = monitor_line(when, 11790, real_id(v, real), False, "500 Can't connect to 127.0.0.2:18082 "
                        "(Connection refused)")
    assert line == ("[Tue Nov 24 21:01:09 2026] [11790] negotiate http tcp 127.0.0.2 18082 1 masq /health OK "
                    "[down] 500 Can't connect to 127.0.0.2:18082 (Connection refused)\n")


def test_real_id_fields():
    v = virtual(virtualhost="www.example.com", checkport=8080, request="/a b", receive="x|y")
    real = RealConfig("127.0.0.2", 80, forward="gate", weight=5)
    assert real_id(v, real) == "negotiate:http:tcp:127.0.0.2:80:www.example.com:8080:5:gate:\\/a\\ b:x\\|y"
    expected = "negotiate http tcp 127.0.0.2 80 www.example.com 8080 5 gate /a b x|y"
    assert squeeze_id(real_id(v, real)) == expected


def test_real_overrides_and_checktypes():
    real = RealConfig("127.0.0.2", 80, request="/own", receive="yes")
    connect = virtual(checktype="connect")
    assert squeeze_id(real_id(connect, real)) == "connect tcp 127.0.0.2 80 1 gate /own yes"
    assert squeeze_id(real_id(virtual(checktype="3"), real)).startswith("combined http tcp ")
    ext = virtual(checktype="external", checkcommand="/usr/local/bin/check --x")
    assert squeeze_id(real_id(ext, real)).startswith("external /usr/local/bin/check --x tcp 127.0.0.2 80 ")
    assert squeeze_id(real_id(virtual(checktype="external-perl", checkcommand="/c.pl"), real)).startswith(
        "external-perl /c.pl tcp")


def test_ipv6_real_is_bracketed_then_squeezed_like_ldirectord():
    v = virtual(address="2001:db8::10", ipv6=True, request="/", receive="")
    expected = "negotiate http tcp [2001 db8 1] 80 1 gate / "
    assert squeeze_id(real_id(v, RealConfig("2001:db8::1", 80))) == expected


def test_quotemeta_keeps_consecutive_colons_apart():
    # "a::b" → "a\:\:b" → "a\ \ b" → "a  b": the backslashes stop tr///s from squeezing
    v = virtual(request="a::b")
    assert squeeze_id(real_id(v, RealConfig("127.0.0.2", 80))).endswith(" gate a  b ")


def test_escape_message():
    assert escape_message("100% up|ok\r\nnext") == "100%25 up%7cok%0d%0anext"
    assert escape_message("") == "-"


@given(st.text())
def test_escaped_messages_are_one_line_and_reversible(text):
    escaped = escape_message(text)
    assert "\n" not in escaped and "\r" not in escaped and "|" not in escaped
    if text:
        assert re.sub("%([0-9a-f]{2})", lambda m: chr(int(m.group(1), 16)), escaped) == text


@given(st.text(alphabet=st.characters(codec="ascii")))
def test_quotemeta_then_backslash_removal_restores_text_without_backslashes(text):
    assert quotemeta(text).replace("\\", "") == text.replace("\\", "")
