"""The checks' pure response parsers fed generated, split and mutated input: the HTTP response parser
(however a response is cut into reads, the same result; anything else is ``CheckFailed``), the BER/LDAP
message decoder and the SMTP reply-line parser (their own error types, nothing else)."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from saru.checks import ber, ldap, sip
from saru.checks.base import CheckFailed
from saru.checks.http import MAX_CHUNKS, ResponseParser
from saru.net.smtp import SMTPError, parse_reply_line
from tests.fuzz.budget import fuzz
from tests.fuzz.mutate import mutated_bytes


@st.composite
def responses(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """(a whole valid response, its body)."""
    body = draw(st.binary(max_size=3000))
    kind = draw(st.sampled_from(["length", "chunked", "close"]))
    head = b"HTTP/1.1 200 OK\r\nServer: x\r\n"
    if draw(st.booleans()):
        head = b"HTTP/1.1 100 Continue\r\n\r\n" + head
    if kind == "length":
        return head + b"Content-Length: %d\r\n\r\n" % len(body) + body, body
    if kind == "close":
        return head + b"\r\n" + body, body
    out, rest = b"", body
    while rest:
        size = draw(st.integers(1, max(1, len(rest))))
        ext = draw(st.sampled_from([b"", b";name=value", b" "]))
        out += b"%x%s\r\n%s\r\n" % (size, ext, rest[:size])
        rest = rest[size:]
    return head + b"Transfer-Encoding: chunked\r\n\r\n" + out + b"0\r\nTrailer: t\r\n\r\n", body


def parse(data: bytes, cuts: list[int]) -> tuple[int, bytes, bool]:
    parser = ResponseParser()
    last = 0
    for cut in [*sorted(set(cuts)), len(data)]:
        if parser.feed(data[last:cut]):
            break
        last = cut
    else:
        parser.finish()
    assert parser.complete
    return parser.status, bytes(parser.body), parser.truncated


@fuzz(200)
@given(responses(), st.lists(st.integers(0, 4000), max_size=12))
def test_http_responses_parse_the_same_however_they_are_cut(case: tuple[bytes, bytes], cuts: list[int]) -> None:
    data, body = case
    assert parse(data, cuts) == (200, body, False)
    assert parse(data, []) == (200, body, False)


def feed_all(data: bytes, cuts: list[int]) -> None:
    parser = ResponseParser()
    try:
        last = 0
        for cut in [*sorted(set(cuts)), len(data)]:
            if parser.feed(data[last:cut]):
                return
            last = cut
        parser.finish()
    except CheckFailed as exc:
        assert str(exc)


@fuzz(300)
@given(responses().flatmap(lambda r: mutated_bytes(r[0])), st.lists(st.integers(0, 4000), max_size=6))
@example(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\nabc\r\n0\r\n\r\n", [])
@example(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1_0\r\n" + b"a" * 16 + b"\r\n0\r\n\r\n", [])
@example(b"HTTP/1.1 200 OK\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n", [])
@example(b"HTTP/1.1 \xb200 OK\r\nServer: x\r\nContent-Length: 0\r\n\r\n", [])  # "²00": ValueError
@example(b"HTTP/1.1 200 OK\r\nContent-Length: 1_0\r\n\r\n" + b"a" * 10, [])
def test_mutated_http_responses(data: bytes, cuts: list[int]) -> None:
    feed_all(data, cuts)


def test_a_negative_chunk_size_is_refused() -> None:
    """``int(b"-1", 16)`` is -1: the parser took it and appended the buffer minus its last byte."""
    parser = ResponseParser()
    data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\nabc\r\n0\r\n\r\n"
    try:
        parser.feed(data)
    except CheckFailed as exc:
        assert "chunked" in str(exc)
    else:
        raise AssertionError(f"accepted, body {bytes(parser.body)!r}")


def test_one_byte_chunks_are_cut_like_a_long_body() -> None:
    parser = ResponseParser()
    done = parser.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1\r\na\r\n" * (MAX_CHUNKS + 10))
    assert done and parser.truncated and len(parser.body) == MAX_CHUNKS


@fuzz(100)
@given(st.sampled_from(["SIP/2.0 200 OK", "SIP/2.0 \u00b200 OK", "SIP/2.0 200 OK\r\nContent-Length: \u00b2"]).flatmap(
    lambda s: mutated_bytes(s.encode() + b"\r\n\r\n")))
@example("SIP/2.0 \u00b200 OK\r\n\r\n".encode())
@example(b"SIP/2.0 200 OK\r\nl: -1_0\r\n\r\n")
def test_sip_responses(data: bytes) -> None:
    try:
        _status, _line, headers = sip.parse_response(data)
        sip.content_length(headers)
    except CheckFailed as exc:
        assert str(exc)


LDAP_BIND_OK = bytes.fromhex("300c02010161070a010004000400")


@fuzz(300)
@given(mutated_bytes(LDAP_BIND_OK) | st.binary(max_size=64))
def test_ldap_messages(data: bytes) -> None:
    try:
        ldap.parse_message(data)
    except ber.BerError:
        pass


@fuzz(200)
@given(st.binary(max_size=80))
@example(b"250")
@example(b"25")
@example(b"\xff\xfe-x")
def test_smtp_reply_lines(line: bytes) -> None:
    try:
        code, _last = parse_reply_line(line)
    except SMTPError:
        return
    assert 0 <= code <= 999  # three digits (what the code means is judged by the caller)
