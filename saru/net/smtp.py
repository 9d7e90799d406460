"""The client side of SMTP (RFC 5321), shared by the smtp/submission checks and the e-mail alerts.

``SMTPClient(read_line, writer)`` reads whole replies (``Reply``: multi-line replies are read to their
last line, whose code counts), sends commands, greets with ``hello`` (EHLO, HELO as a fallback) and,
for the alerts, hands a message over with ``send_mail`` (MAIL, RCPT, DATA with ``dot_stuff``). Lines
come from ``read_line``: the checks pass their ``LineStream``'s (its line limit and error texts),
``stream_lines(reader)`` reads a plain asyncio stream. No TLS, no AUTH: neither ldirectord's checks
nor its alerts (Net::SMTP) used them. Errors are ``SMTPError`` (a refusal carries its ``Reply``).

**When EHLO falls back to HELO** (``falls_back_to_helo``): only when EHLO is answered 500 ("command
unrecognized") or 502 ("command not implemented"). RFC 5321 §3.2: "if the server returns a 'command
not recognized' response to EHLO, the client SHOULD be able to fall back and send HELO"; RFC 1869,
which introduced EHLO, names 500 as the answer of a server without extensions and 502 as that of one
that recognises EHLO without implementing it. Those two say "this server does not speak ESMTP", and
HELO is then the right next command. No fallback on:

* 501 (EHLO's argument refused) or 504: HELO would carry the same argument;
* 550, 554 and other refusals: policy, which HELO must not slip past (and would meet again);
* 4xx, e.g. 421 "closing transmission channel": the server is going away or busy;
* a closed connection, a timeout or a malformed reply: there is no conversation left to continue.

The checks always followed this rule; the alerts used to send HELO after any failure, a closed
connection included, and then reported HELO's failure instead of EHLO's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from saru.net.text import printable

#: EHLO answers after which a client sends HELO (command unrecognized / not implemented)
EHLO_FALLBACK = frozenset({500, 502})
#: longest error message built from a server's reply
MAX_MESSAGE = 200
#: lines of one (multi-line) reply: an EHLO answer has a dozen
MAX_REPLY_LINES = 200

ReadLine = Callable[[], Awaitable[bytes]]


class SMTPError(Exception):
    """The conversation failed; ``reply`` is the server's refusal, ``None`` for a broken conversation."""

    def __init__(self, message: str, reply: Reply | None = None) -> None:
        super().__init__(message)
        self.reply = reply


@dataclass(frozen=True)
class Reply:
    """One whole reply: the code of its last line, its lines (line endings stripped), and the command
    it answers (``""``: the greeting)."""

    code: int
    lines: tuple[bytes, ...]
    command: str = ""

    @property
    def first(self) -> bytes:
        """The first line, code included (what a check quotes)."""
        return self.lines[0]

    @property
    def text(self) -> str:
        """The text of every line after its code, joined by spaces."""
        return " ".join(line[4:].decode("utf-8", "replace") for line in self.lines)

    @property
    def positive(self) -> bool:
        """A 2xx completion reply."""
        return 200 <= self.code < 300

    def refusal(self) -> SMTPError:
        """The error for this reply when it is not the one expected: ``SMTP <command>: <code> <text>``."""
        what = self.command.split(":")[0] if self.command else "greeting"
        return SMTPError(f"SMTP {what}: {self.code} {self.text}"[:MAX_MESSAGE], self)


def falls_back_to_helo(code: int) -> bool:
    """Whether an EHLO answered ``code`` is followed by HELO (see the module docstring)."""
    return code in EHLO_FALLBACK


def parse_reply_line(line: bytes) -> tuple[int, bool]:
    """(code, last) of one reply line (``250-…`` continues, ``250 …``/``250`` ends); ``SMTPError`` for
    a line that is not SMTP."""
    if len(line) < 3 or not line[:3].isdigit() or line[3:4] not in (b"", b" ", b"-"):
        raise SMTPError(f"malformed SMTP reply: {printable(line)}")
    return int(line[:3]), line[3:4] != b"-"


def dot_stuff(message: bytes) -> bytes:
    """SMTP DATA transparency (RFC 5321 §4.5.2): a leading dot is doubled; ends with CRLF."""
    lines = message.split(b"\r\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines)


def stream_lines(reader: asyncio.StreamReader) -> ReadLine:
    """``read_line`` for a plain asyncio stream: one line without its ending; ``SMTPError`` at the end
    of the stream or for a line longer than the stream's limit."""

    async def read_line() -> bytes:
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError:
            raise SMTPError("connection closed by the SMTP server") from None
        except asyncio.LimitOverrunError:
            raise SMTPError("SMTP reply line too long") from None
        return line.rstrip(b"\r\n")

    return read_line


class SMTPClient:
    """One SMTP conversation over an open connection (see the module docstring)."""

    def __init__(self, read_line: ReadLine, writer: asyncio.StreamWriter) -> None:
        self._read_line = read_line
        self._writer = writer

    async def reply(self, command: str = "") -> Reply:
        """The next whole reply (the answer to ``command``, or the greeting); ``SMTPError`` past
        ``MAX_REPLY_LINES`` lines (a server sending ``250-…`` without end would fill the memory)."""
        lines: list[bytes] = []
        while len(lines) < MAX_REPLY_LINES:
            line = await self._read_line()
            code, last = parse_reply_line(line)
            lines.append(line)
            if last:
                return Reply(code, tuple(lines), command)
        raise SMTPError(f"SMTP reply longer than {MAX_REPLY_LINES} lines")

    async def command(self, line: str) -> Reply:
        """Send one command line and read its reply."""
        self._writer.write(line.encode("utf-8") + b"\r\n")
        await self._writer.drain()
        return await self.reply(line)

    async def hello(self, name: str) -> Reply:
        """``EHLO name``, and ``HELO name`` when EHLO is not understood; the last reply (not judged)."""
        reply = await self.command(f"EHLO {name}")
        if falls_back_to_helo(reply.code):
            reply = await self.command(f"HELO {name}")
        return reply

    @staticmethod
    def require(reply: Reply, *codes: int) -> Reply:
        """``reply`` if its code is one of ``codes``, else its ``refusal()`` is raised."""
        if reply.code not in codes:
            raise reply.refusal()
        return reply

    async def send_mail(self, sender: str, recipients: Sequence[str], message: bytes) -> list[str]:
        """MAIL, RCPT for each recipient, DATA; the recipients refused (``"<address>: <reason>"``).
        ``SMTPError`` when no recipient or the message is refused."""
        self.require(await self.command(f"MAIL FROM:<{sender}>"), 250)
        refused: list[str] = []
        for address in recipients:
            reply = await self.command(f"RCPT TO:<{address}>")
            if reply.code not in (250, 251):
                refused.append(f"{address}: {reply.refusal()}")
        if len(refused) == len(recipients):
            raise SMTPError("no recipient accepted: " + "; ".join(refused))
        self.require(await self.command("DATA"), 354)
        self._writer.write(dot_stuff(message) + b".\r\n")
        await self._writer.drain()
        self.require(await self.reply("end of DATA"), 250)
        return refused

    async def quit(self) -> None:
        """QUIT, best effort: a server that does not answer it changes nothing."""
        with contextlib.suppress(SMTPError, OSError):
            self.require(await self.command("QUIT"), 221)
