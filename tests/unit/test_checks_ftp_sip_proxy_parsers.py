"""Pure parts of the ftp, sip, simpletcp and http_proxy checks (the wire tests are in integration/)."""

from __future__ import annotations

import asyncio

import pytest

from saru.checks.base import CheckFailed
from saru.checks.ftp import Control, parse_epsv, parse_pasv
from saru.checks.http_proxy import proxy_target
from saru.checks.simpletcp import LineMatcher
from saru.checks.sip import build_options, parse_response, sip_host


def test_parse_pasv():
    assert parse_pasv("227 Entering Passive Mode (127,0,0,1,117,48).") == ("127.0.0.1", 30000)
    assert parse_pasv("227 =10,1,2,3,0,21") == ("10.1.2.3", 21)
    for bad in ("227 Entering Passive Mode", "227 (300,0,0,1,1,1)"):
        with pytest.raises(CheckFailed, match="cannot parse PASV"):
            parse_pasv(bad)


def test_parse_epsv():
    assert parse_epsv("229 Entering Extended Passive Mode (|||30001|)") == 30001
    assert parse_epsv("229 ok (!!!21!)") == 21
    for bad in ("229 Entering Extended Passive Mode", "229 (|||0|)", "229 (|||70000|)"):
        with pytest.raises(CheckFailed, match="cannot parse EPSV"):
            parse_epsv(bad)


async def test_ftp_multiline_reply():
    reader = asyncio.StreamReader()
    reader.feed_data(b"220-Welcome\r\n 220 is not the end\r\n220 ready\r\n230 next\r\n")
    control = Control(reader, None)  # type: ignore[arg-type]
    assert await control.reply() == (220, "220 ready")
    assert await control.reply() == (230, "230 next")


async def test_ftp_invalid_and_truncated_replies():
    reader = asyncio.StreamReader()
    reader.feed_data(b"hello\r\n")
    with pytest.raises(CheckFailed, match="invalid FTP reply 'hello'"):
        await Control(reader, None).reply()  # type: ignore[arg-type]
    reader = asyncio.StreamReader()
    reader.feed_data(b"220-partial\r\n")
    reader.feed_eof()
    with pytest.raises(CheckFailed, match="connection closed by the FTP server"):
        await Control(reader, None).reply()  # type: ignore[arg-type]


async def test_ftp_refuses_line_breaks_in_arguments():
    control = Control(asyncio.StreamReader(), None)  # type: ignore[arg-type]
    with pytest.raises(CheckFailed) as failure:
        await control.command("PASS secret\r\nDELE x")
    assert str(failure.value) == "line break in the FTP PASS argument"


def test_sip_options_request():
    wire = build_options("ldirectord@lb1", "10.0.0.5:5060", "TCP", "10.0.0.1:40000", "cid@saru",
                         "z9hG4bKabc", "tag1").decode()
    lines = wire.split("\r\n")
    assert lines[0] == "OPTIONS sip:ldirectord@lb1 SIP/2.0"
    assert "Via: SIP/2.0/TCP 10.0.0.1:40000;branch=z9hG4bKabc;rport" in lines
    assert "From: <sip:ldirectord@lb1>;tag=tag1" in lines
    assert "Call-ID: cid@saru" in lines and "CSeq: 1 OPTIONS" in lines
    assert wire.endswith("Content-Length: 0\r\n\r\n")
    anonymous = build_options("", "10.0.0.5:5060", "UDP", "x", "c", "b", "t")
    assert anonymous.startswith(b"OPTIONS sip:10.0.0.5:5060 ")


def test_sip_host_brackets_ipv6():
    assert sip_host("::1", 5060) == "[::1]:5060"
    assert sip_host("[::1]", 5060) == "[::1]:5060"
    assert sip_host("192.0.2.1", 5060) == "192.0.2.1:5060"


def test_sip_response_parsing():
    status, line, headers = parse_response(b"SIP/2.0 200 OK\r\ni: abc\r\nl: 0\r\n\r\n")
    assert (status, line) == (200, "SIP/2.0 200 OK")
    assert headers == {"call-id": "abc", "content-length": "0"}
    with pytest.raises(CheckFailed, match="not a SIP response"):
        parse_response(b"HTTP/1.1 200 OK\r\n\r\n")


def test_proxy_target_uses_the_absolute_url():
    target = proxy_target("http://origin.example/status?x=1", "10.0.0.5", 3128)
    assert (target.connect_host, target.port) == ("10.0.0.5", 3128)
    assert (target.path, target.host_header) == ("http://origin.example/status?x=1", "origin.example")
    v6 = proxy_target("http://[2001:db8::1]:8080", "10.0.0.5", 3128)
    assert (v6.path, v6.host_header) == ("http://[2001:db8::1]:8080/", "[2001:db8::1]:8080")
    with pytest.raises(CheckFailed, match="absolute http:// URL"):
        proxy_target("https://origin.example/", "10.0.0.5", 3128)


def test_line_matcher_reads_lines_like_perl():
    matcher = LineMatcher("OK$")
    assert not asyncio.run(matcher.feed(b"first\nsecond OK"))  # an unterminated line waits for more input
    assert asyncio.run(matcher.finish())  # ... or for the end of input
    assert matcher.matched == b"second OK"
    newline = LineMatcher("^OK$")
    assert asyncio.run(newline.feed(b"OK\n"))  # "$" matches before the line's newline, as in Perl
