"""Pure parts of the mail and news checks: IMAP quoting, SMTP reply lines, safe server text."""

from __future__ import annotations

import pytest

from saru.checks.base import CheckFailed
from saru.checks.lineproto import printable, single_line
from saru.checks.mail import (
    address_literal,
    imap_status,
    imap_string,
    login_chunks,
    parse_reply_line,
)


def test_imap_quoted_string_escapes_backslashes_and_quotes():
    assert imap_string('a"b\\c d', "login") == (b'"a\\"b\\\\c d"', None)
    assert imap_string("", "passwd") == (b'""', None)


def test_imap_literal_for_non_ascii_and_control_characters():
    assert imap_string("pä", "passwd") == (b"{3}", "pä".encode())
    assert imap_string("a\tb", "passwd") == (b"{3}", b"a\tb")
    assert imap_string("a\r\nb", "passwd") == (b"{4}", b"a\r\nb")


def test_imap_string_refuses_nul():
    with pytest.raises(CheckFailed, match="passwd contains NUL"):
        imap_string("a\0b", "passwd")


def test_login_chunks_quoted():
    assert login_chunks("saru", 'p"w') == [b'a1 LOGIN "saru" "p\\"w"']


def test_login_chunks_with_literals_wait_for_continuations():
    assert login_chunks("ü", "pw") == [b"a1 LOGIN {2}", "ü".encode() + b' "pw"']
    assert login_chunks("u", "pä") == [b'a1 LOGIN "u" {3}', "pä".encode()]
    assert login_chunks("ü", "ä") == [b"a1 LOGIN {2}", "ü".encode() + b" {2}", "ä".encode()]


def test_imap_status():
    assert imap_status(b"* OK [CAPABILITY IMAP4rev1] ready", b"*") == b"OK"
    assert imap_status(b"a1 no bad password", b"a1") == b"NO"
    assert imap_status(b"a10 OK", b"a1") == b""
    assert imap_status(b"*", b"*") == b""


@pytest.mark.parametrize(("line", "parsed"), [
    (b"220 mx ESMTP", (220, True)),
    (b"250-mx Hello", (250, False)),
    (b"250", (250, True)),
])
def test_smtp_reply_lines(line: bytes, parsed: tuple[int, bool]):
    assert parse_reply_line(line) == parsed


@pytest.mark.parametrize("line", [b"", b"22", b"+OK ready", b"250x", b"abc def"])
def test_malformed_smtp_reply_lines(line: bytes):
    with pytest.raises(CheckFailed, match="malformed SMTP reply"):
        parse_reply_line(line)


def test_address_literals():
    assert address_literal("192.0.2.1") == "[192.0.2.1]"
    assert address_literal("2001:db8::1") == "[IPv6:2001:db8::1]"
    assert address_literal("fe80::1%eth0") == "[IPv6:fe80::1]"


def test_printable_server_text():
    assert printable(b"+OK ready\r\n") == "+OK ready"
    assert printable("a\x1b[31mb\x00") == "a?[31mb?"
    assert printable("x" * 500, limit=10) == "x" * 9 + "…"
    assert printable(b"\xff") == "\ufffd"


def test_single_line_refuses_line_breaks_without_echoing_the_value():
    assert single_line("user", "login") == "user"
    for bad in ("a\rb", "a\nb", "a\0b"):
        with pytest.raises(CheckFailed) as info:
            single_line(bad, "passwd")
        assert str(info.value) == "passwd contains a line break or NUL: not sent"
