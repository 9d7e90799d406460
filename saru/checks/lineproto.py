"""A line-oriented conversation over TCP or TLS, shared by the mail and news checks.

``LineStream.open(address, port, tls)`` connects (``open_tcp``; TLS from the first byte when asked,
without certificate verification, like ldirectord), ``read_line`` reads one CRLF/LF-terminated reply
line capped at ``MAX_LINE`` bytes, ``send`` writes one command line and ``goodbye`` sends the
closing command (QUIT, LOGOUT …) and, for a bounded grace, reads the server's answer before closing.

Text that came from a server goes into check messages only through ``printable`` (control
characters replaced, length capped). Commands carrying user data are refused when the data holds a
line break or NUL (``single_line``), so a ``login`` can never inject a second command.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable

from saru.checks.base import CheckFailed, timeout_for
from saru.checks.tcp import literal_family, open_tcp
from saru.checks.tlsclient import tls_context
from saru.model import CheckSpec
from saru.net.text import printable as printable  # the checks quote server text through this

#: longest reply line accepted (RFC 5321 allows 512, RFC 3501 has none: greetings carry capabilities)
MAX_LINE = 16 << 10
#: how long ``goodbye`` waits at most for the answer to the closing command
GOODBYE_GRACE = 1.0
#: ``goodbye`` reads at most this many lines before closing anyway
GOODBYE_LINES = 16


def single_line(value: str, what: str) -> str:
    """``value`` unchanged, or CheckFailed when it would break the command line it goes into."""
    if any(c in value for c in "\r\n\0"):
        raise CheckFailed(f"{what} contains a line break or NUL: not sent")
    return value


def check_deadline(spec: CheckSpec) -> float:
    """Loop time at which ``run_check`` gives up on ``spec`` (call at the start of the check)."""
    return asyncio.get_running_loop().time() + timeout_for(spec)


def _any_line(line: bytes) -> bool:
    return True


async def open_stream(
    address: str, port: int, tls: bool = False, limit: int = MAX_LINE
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """An asyncio stream to address:port; TLS from the first byte when ``tls`` (no certificate check).

    A host name (not an IP literal) is sent as TLS SNI; IP literals get none, like ldirectord.
    """
    sock = await open_tcp(address, port)
    try:
        if not tls:
            return await asyncio.open_connection(sock=sock, limit=limit)
        sni = "" if literal_family(address) else address
        try:
            return await asyncio.open_connection(sock=sock, limit=limit, ssl=tls_context(), server_hostname=sni)
        except ssl.SSLError as exc:
            raise CheckFailed(f"TLS handshake failed: {exc.reason or exc}", failure="tls") from None
        except ConnectionError:  # the peer hung up mid-handshake (e.g. not a TLS port)
            raise CheckFailed("TLS handshake failed: connection closed by peer", failure="tls") from None
    except BaseException:
        sock.close()
        raise


class LineStream:
    """One connection to a line-protocol server. Use ``async with`` or call ``close``/``abort``."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, address: str, port: int, tls: bool = False) -> LineStream:
        """Connect to address:port; TLS from the first byte when ``tls`` (no certificate check).

        A host name (not an IP literal) is sent as TLS SNI; IP literals get none, like ldirectord.
        """
        reader, writer = await open_stream(address, port, tls, MAX_LINE)
        return cls(reader, writer)

    async def __aenter__(self) -> LineStream:
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    async def read_line(self) -> bytes:
        """The next line without its line ending; CheckFailed on EOF or an over-long line."""
        try:
            line = await self.reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise CheckFailed(f"connection closed mid-line: {printable(exc.partial)!r}") from None
            raise CheckFailed("connection closed by peer") from None
        except asyncio.LimitOverrunError:
            raise CheckFailed(f"reply line longer than {MAX_LINE} bytes") from None
        return line.rstrip(b"\r\n")

    async def read_exactly(self, size: int) -> bytes:
        """Exactly ``size`` bytes (an IMAP literal); CheckFailed on EOF."""
        try:
            return await self.reader.readexactly(size)
        except asyncio.IncompleteReadError:
            raise CheckFailed("connection closed by peer") from None

    def send(self, line: str | bytes) -> None:
        """Queue one command line; CRLF is appended (a str is sent as UTF-8)."""
        data = line.encode() if isinstance(line, str) else line
        self.writer.write(data + b"\r\n")

    async def command(self, line: str | bytes) -> bytes:
        """Send one command line and read the first line of the answer."""
        self.send(line)
        await self.writer.drain()
        return await self.read_line()

    async def goodbye(self, line: str, deadline: float, final: Callable[[bytes], bool] = _any_line) -> None:
        """Send the closing command, read the server's answer up to the line ``final`` accepts, close.

        Best effort: the verdict is already made, so nothing here raises (except cancellation), and
        the wait ends after ``GOODBYE_GRACE`` or shortly before ``deadline`` (loop time: the end of
        the check's own timeout), whichever comes first. Waiting for the answer lets the server see
        the command before our FIN (no reset, a clean "logged out" in its log); waiting for its close
        as well would cost leafnode's one-second sleep after QUIT.
        """
        loop = asyncio.get_running_loop()
        until = min(loop.time() + GOODBYE_GRACE, deadline - 0.05)
        try:
            self.send(line)
            if until > loop.time():
                async with asyncio.timeout_at(until):
                    for _ in range(GOODBYE_LINES):
                        if final(await self.read_line()):
                            break
        except (OSError, TimeoutError, EOFError, CheckFailed):
            self.abort()
            return
        self.close()

    def close(self) -> None:
        """Close the connection (TLS: with a close_notify)."""
        self.writer.close()

    def abort(self) -> None:
        """Drop the connection at once (after errors and timeouts)."""
        self.writer.transport.abort()
