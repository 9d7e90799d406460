"""saru.net.smtp: the EHLO → HELO fallback rule both SMTP users share, reply parsing, DATA stuffing,
and the client's conversation against a scripted server on loopback (what was said, in order)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from saru.net.smtp import (
    Reply,
    SMTPClient,
    SMTPError,
    dot_stuff,
    falls_back_to_helo,
    parse_reply_line,
    stream_lines,
)


@pytest.mark.parametrize("code", [500, 502])
def test_helo_after_ehlo_not_recognized_or_not_implemented(code: int) -> None:
    assert falls_back_to_helo(code)


@pytest.mark.parametrize("code", [250, 421, 450, 451, 501, 503, 504, 550, 554])
def test_no_helo_after_other_answers(code: int) -> None:
    assert not falls_back_to_helo(code)


def test_reply_lines() -> None:
    assert parse_reply_line(b"250-mx Hello") == (250, False)
    assert parse_reply_line(b"250 OK") == (250, True)
    assert parse_reply_line(b"221") == (221, True)
    for bad in (b"", b"25", b"+OK ready", b"250x", b"abc def"):
        with pytest.raises(SMTPError, match="malformed SMTP reply"):
            parse_reply_line(bad)


def test_refusal_text_names_the_command() -> None:
    reply = Reply(550, (b"550-5.7.1 go", b"550 away"), "RCPT TO:<a@b>")
    assert str(reply.refusal()) == "SMTP RCPT TO: 550 5.7.1 go away"
    assert str(Reply(554, (b"554 no",)).refusal()) == "SMTP greeting: 554 no"
    assert reply.first == b"550-5.7.1 go" and not reply.positive


def test_dot_stuffing() -> None:
    assert dot_stuff(b"a\r\n.b\r\n..c\r\n") == b"a\r\n..b\r\n...c\r\n"
    assert dot_stuff(b"no newline") == b"no newline\r\n"



@asynccontextmanager
async def server(script: Callable[[bytes], bytes | None]) -> AsyncIterator[tuple[int, list[bytes]]]:
    """A loopback server greeting ``220``, answering each command line with ``script(line)`` (None:
    hang up); yields (port, the lines it received)."""
    heard: list[bytes] = []

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 test ESMTP\r\n")
        while line := (await reader.readline()).rstrip(b"\r\n"):
            heard.append(line)
            answer = script(line)
            if answer is None:
                break
            writer.write(answer)
            await writer.drain()
        writer.close()

    srv = await asyncio.start_server(session, "127.0.0.1", 0)
    async with srv:
        yield srv.sockets[0].getsockname()[1], heard


async def hello_through(script: Callable[[bytes], bytes | None]) -> tuple[Reply, list[bytes]]:
    async with server(script) as (port, heard):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            client = SMTPClient(stream_lines(reader), writer)
            assert (await client.reply()).code == 220
            return await client.hello("director.example"), heard
        finally:
            writer.close()


def answering(ehlo: bytes) -> Callable[[bytes], bytes | None]:
    return lambda line: ehlo if line.startswith(b"EHLO") else b"250 hello\r\n"


@pytest.mark.parametrize("ehlo", [b"500 5.5.1 unrecognized\r\n", b"502 5.5.1 not implemented\r\n"])
async def test_hello_falls_back_to_helo(ehlo: bytes) -> None:
    reply, heard = await hello_through(answering(ehlo))
    assert heard == [b"EHLO director.example", b"HELO director.example"]
    assert (reply.code, reply.command) == (250, "HELO director.example")


@pytest.mark.parametrize("ehlo", [b"550 5.7.1 go away\r\n", b"421 4.3.2 closing\r\n", b"501 5.5.4 bad\r\n"])
async def test_hello_keeps_a_refusal(ehlo: bytes) -> None:
    reply, heard = await hello_through(answering(ehlo))
    assert heard == [b"EHLO director.example"]
    assert reply.code == int(ehlo[:3]) and reply.command == "EHLO director.example"


async def test_a_multiline_ehlo_answer_is_read_whole() -> None:
    reply, _ = await hello_through(answering(b"250-test\r\n250-PIPELINING\r\n250 8BITMIME\r\n"))
    assert reply.code == 250 and reply.text == "test PIPELINING 8BITMIME"


async def test_no_helo_when_the_server_hangs_up_on_ehlo() -> None:
    with pytest.raises(SMTPError, match="connection closed by the SMTP server"):
        await hello_through(lambda line: None)


async def test_send_mail_reports_refused_recipients() -> None:
    def script(line: bytes) -> bytes | None:
        if line.startswith(b"RCPT TO:<bad"):
            return b"550 5.1.1 no such user\r\n"
        return {b"DATA": b"354 go ahead\r\n", b".": b"250 queued\r\n", b"QUIT": b"221 bye\r\n"}.get(
            line, b"250 ok\r\n" if not line.startswith(b"body") else b"")

    async with server(script) as (port, heard):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            client = SMTPClient(stream_lines(reader), writer)
            await client.reply()
            refused = await client.send_mail("s@x", ["bad@x", "good@x"], b"body\r\n")
            await client.quit()
        finally:
            writer.close()
    assert refused == ["bad@x: SMTP RCPT TO: 550 5.1.1 no such user"]
    assert heard == [b"MAIL FROM:<s@x>", b"RCPT TO:<bad@x>", b"RCPT TO:<good@x>", b"DATA", b"body", b".",
                     b"QUIT"]
