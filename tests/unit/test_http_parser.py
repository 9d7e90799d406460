"""The HTTP check's pure parts: response parser, URL/Host/SNI choices, Perl regex translation."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from saru.checks.base import CheckFailed
from saru.checks.http import (
    ResponseParser,
    Target,
    build_request,
    evaluate,
    initial_target,
    perl_to_python,
    redirect_target,
)
from saru.model import CheckSpec


def parse(data: bytes, head_only: bool = False, pieces: int = 1, eof: bool = False) -> ResponseParser:
    parser = ResponseParser(head_only=head_only)
    size = max(1, len(data) // pieces)
    for i in range(0, len(data), size):
        parser.feed(data[i : i + size])
    if eof:
        parser.finish()
    return parser


def test_content_length():
    p = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello")
    assert (p.complete, p.status, p.reason, bytes(p.body)) == (True, 200, "OK", b"hello")
    assert p.headers["x-a"] == "b"


def test_content_length_waits_for_the_whole_body():
    p = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello")
    assert not p.complete
    with pytest.raises(CheckFailed, match="before the end"):
        p.finish()


def test_chunked():
    data = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n")
    for pieces in (1, 3, len(data)):
        p = parse(data, pieces=pieces)
        assert p.complete and bytes(p.body) == b"hello world"


def test_read_until_close():
    p = parse(b"HTTP/1.0 200 OK\r\n\r\nall of it", eof=True)
    assert p.complete and bytes(p.body) == b"all of it"


def test_head_and_204_have_no_body():
    assert parse(b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", head_only=True).complete
    assert parse(b"HTTP/1.1 204 No Content\r\n\r\n").complete


def test_interim_100_is_skipped():
    p = parse(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n")
    assert (p.complete, p.status, p.reason) == (True, 503, "Busy")


def test_body_is_capped():
    parser = ResponseParser(max_body=10)
    assert parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 50)
    assert len(parser.body) == 10 and parser.truncated


@pytest.mark.parametrize("data", [b"SSH-2.0-OpenSSH\r\n\r\n", b"HTTP/1.1 abc\r\n\r\n"])
def test_garbage_is_rejected(data):
    with pytest.raises(CheckFailed, match="invalid HTTP response"):
        parse(data)


def test_closed_without_response():
    with pytest.raises(CheckFailed, match="without a response"):
        ResponseParser().finish()


@given(st.binary(max_size=3000), st.integers(1, 50))
def test_chunked_roundtrip_any_split(body, chunk):
    encoded = b"".join(b"%x\r\n%s\r\n" % (len(body[i : i + chunk]), body[i : i + chunk])
                       for i in range(0, len(body), chunk))
    data = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + encoded + b"0\r\n\r\n"
    for pieces in (1, 7):
        p = parse(data, pieces=pieces)
        assert p.complete and bytes(p.body) == body


# ---- request, Host, SNI ----------------------------------------------------------------------------

def spec(**kw) -> CheckSpec:
    base = {"checktype": "negotiate", "service": "http", "protocol": "tcp", "address": "10.0.0.5", "port": 80}
    return CheckSpec(**{**base, **kw})


def test_request_line_and_headers():
    target = initial_target(spec(request="/status?x=1"))
    text = build_request("GET", target).decode()
    assert text.startswith("GET /status?x=1 HTTP/1.1\r\nHost: 10.0.0.5\r\n")
    assert "Connection: close\r\n" in text and "User-Agent: saru/" in text and text.endswith("\r\n\r\n")


def test_host_header_has_the_port_when_not_default():
    assert initial_target(spec(port=8080)).host_header == "10.0.0.5:8080"
    assert initial_target(spec(service="https", port=443)).host_header == "10.0.0.5"
    assert initial_target(spec(address="2001:db8::1", port=8080)).host_header == "[2001:db8::1]:8080"


def test_virtualhost_sets_host_and_sni():
    target = initial_target(spec(service="https", port=8443, virtualhost="www.example.test"))
    assert (target.connect_host, target.host_header, target.sni) == ("10.0.0.5", "www.example.test",
                                                                      "www.example.test")
    assert initial_target(spec(service="https", port=8443)).sni == ""  # no SNI for an IP
    assert initial_target(spec(service="https", virtualhost="10.1.1.1")).sni == ""


def test_absolute_request_url_is_used_verbatim():
    target = initial_target(spec(request="/http://127.0.0.9:81/probe?a=b"))
    assert (target.scheme, target.connect_host, target.port, target.path) == ("http", "127.0.0.9", 81,
                                                                               "/probe?a=b")


def test_redirects_stay_on_the_real_for_its_own_names():
    first = Target("http", "10.0.0.5", 8080, "/a", "www.example.test", "")
    same = frozenset({"10.0.0.5", "www.example.test"})
    nxt = redirect_target(first, "http://www.example.test:8080/b/", same)
    assert (nxt.connect_host, nxt.port, nxt.path, nxt.host_header) == ("10.0.0.5", 8080, "/b/",
                                                                        "www.example.test:8080")
    rel = redirect_target(first, "/c?d=1", same)
    assert (rel.connect_host, rel.path) == ("10.0.0.5", "/c?d=1")
    # a relative redirect keeps the virtual host and the real port
    vhost = initial_target(spec(port=8080, virtualhost="www.example.test"))
    rel2 = redirect_target(vhost, "/d", same)
    assert (rel2.connect_host, rel2.port, rel2.host_header) == ("10.0.0.5", 8080, "www.example.test:8080")
    plain = redirect_target(initial_target(spec(port=8080)), "/e", frozenset({"10.0.0.5"}))
    assert (plain.connect_host, plain.port, plain.host_header) == ("10.0.0.5", 8080, "10.0.0.5:8080")
    away = redirect_target(first, "https://elsewhere.test/", same)
    assert (away.connect_host, away.port, away.sni) == ("elsewhere.test", 443, "elsewhere.test")
    with pytest.raises(CheckFailed):
        redirect_target(first, "ftp://x/", same)


# ---- verdict and receive ------------------------------------------------------------------------------

def test_evaluate():
    ok = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nOK alive")
    assert evaluate(ok, "al+ive", "GET").ok
    assert evaluate(ok, "", "GET").ok
    miss = evaluate(ok, "dead", "GET")
    assert not miss.ok and miss.message.startswith("receive pattern 'dead' not found")
    bad = parse(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
    assert evaluate(bad, "", "GET").message == "HTTP 503 Service Unavailable"
    head = parse(b"HTTP/1.1 200 OK\r\n\r\n", head_only=True)
    assert evaluate(head, "anything", "HEAD").ok


@pytest.mark.parametrize(("perl", "text", "matches"), [
    (r"alive\z", "alive", True),
    (r"alive\z", "alive\n", False),
    (r"alive\Z", "alive\n", True),
    (r"(?<word>ab)\k<word>", "abab", True),
    (r"(?<=x)y", "xy", True),
    (r"\d+ ok", "12 ok", True),
])
def test_perl_regex_translation(perl, text, matches):
    assert bool(re.search(perl_to_python(perl), text)) is matches


def test_the_fields_that_frame_the_body_are_found_however_they_are_written():
    # spaces around the name and the colon, any case, a list of lengths, a later repeat
    p = parse(b"HTTP/1.1 200 OK\r\nX-Content-Length: 99\r\n  cOnTeNt-LeNgTh : 5, 5\r\n"
              b"Content-Length: 7\r\n\r\nhelloEXTRA")
    assert p.complete and bytes(p.body) == b"hello"
    p = parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\ntransfer-encoding :  Chunked\r\n"
              b"Content-Length: 99\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    assert p.complete and bytes(p.body) == b"abc"  # chunked wins over a length, as before
    p = parse(b"HTTP/1.1 200 OK\r\nContent-Lengthy: 5\r\n\r\nread until close", eof=True)
    assert p.complete and bytes(p.body) == b"read until close"  # not a Content-Length field


def test_headers_are_worked_out_when_asked_and_repeated_fields_joined():
    p = parse(b"HTTP/1.1 302 Found\r\nLocation: /a\r\nSet-Cookie: x=1\r\nset-cookie: y=2\r\n"
              b"Content-Length: 0\r\n\r\n")
    assert p.complete and p.status == 302
    assert p.headers == {"location": "/a", "set-cookie": "x=1, y=2", "content-length": "0"}


def test_the_headers_are_the_final_responses_not_an_interim_ones():
    p = parse(b"HTTP/1.1 100 Continue\r\nX-Interim: 1\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert p.complete and p.headers == {"content-length": "2"}


def test_an_invalid_content_length_still_fails():
    with pytest.raises(CheckFailed, match="invalid Content-Length"):
        parse(b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n")
