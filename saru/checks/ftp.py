"""``negotiate`` for service ``ftp``: log in, fetch ``request`` in passive mode, match ``receive``.

The dialogue (compare ldirectord's Net::FTP ``check_ftp``, research §2.2)::

    <- 220 banner
    -> USER <login>            (default anonymous)        <- 230, or 331 then
    -> PASS <passwd>           (default ldirectord@host)  <- 230/202
    -> CWD /                   <- 250
    -> TYPE I                  <- 200
    -> PASV (IPv4) / EPSV (IPv6)   <- 227 (h1,h2,h3,h4,p1,p2) / 229 (|||port|)
       data connection to the real's own address and the given port
    -> RETR <request without its leading />   <- 150/125, data until EOF, 226
    -> QUIT

The data connection always goes to the real's address: a PASV reply naming another host is
ignored except for its port (Net::FTP followed it — the classic FTP bounce, and broken behind NAT).
At most 1 MiB is downloaded. Up when every step succeeded and the content matches ``receive`` (a Perl
regex searched in the whole file); with an empty ``receive``, up when the download succeeded.
Every failing step is reported ("login failed: 530 Login incorrect.", "RETR: 550 …").
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
from contextlib import suppress

from saru.checks.base import CheckFailed, register
from saru.checks.receive import compile_receive, receive_found
from saru.checks.tcp import literal_family, open_tcp
from saru.model import CheckResult, CheckSpec
from saru.net import is_number

MAX_CONTENT = 1 << 20
MAX_REPLY_LINES = 200
QUIT_WAIT = 1.0
DEFAULT_LOGIN = "anonymous"
_PASV = re.compile(r"(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3})")
_EPSV = re.compile(r"\((.)\1\1(\d{1,5})\1\)")


def default_passwd() -> str:
    """ldirectord's default password for anonymous FTP."""
    return f"ldirectord@{os.environ.get('HOSTNAME') or os.uname().nodename}"


def parse_pasv(text: str) -> tuple[str, int]:
    """(address, port) of a 227 reply."""
    found = _PASV.search(text)
    if not found:
        raise CheckFailed(f"cannot parse PASV reply '{text[:80]}'")
    h1, h2, h3, h4, p1, p2 = (int(n) for n in found.groups())
    if max(h1, h2, h3, h4, p1, p2) > 255:
        raise CheckFailed(f"cannot parse PASV reply '{text[:80]}'")
    return f"{h1}.{h2}.{h3}.{h4}", p1 * 256 + p2


def parse_epsv(text: str) -> int:
    """The port of a 229 reply (``(|||port|)``)."""
    found = _EPSV.search(text)
    if not found or not 0 < int(found.group(2)) < 65536:
        raise CheckFailed(f"cannot parse EPSV reply '{text[:80]}'")
    return int(found.group(2))


class Control:
    """The control connection: send commands, read (multi-line) replies."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def reply(self) -> tuple[int, str]:
        """(code, text of the last line) of the next reply."""
        first = await self._line()
        if len(first) < 3 or not is_number(first[:3]):
            raise CheckFailed(f"invalid FTP reply '{first[:80]}'")
        code, last = first[:3], first
        if first[3:4] == "-":
            for _ in range(MAX_REPLY_LINES):
                last = await self._line()
                if last.startswith(code + " ") or last == code:
                    break
            else:
                raise CheckFailed("FTP reply too long")
        return int(code), last

    async def command(self, line: str) -> tuple[int, str]:
        """Send one command and read its reply."""
        if "\r" in line or "\n" in line:  # would smuggle a second command (never echo it: PASS)
            raise CheckFailed(f"line break in the FTP {line.split(None, 1)[0]} argument")
        self.writer.write(line.encode("utf-8") + b"\r\n")
        await self.writer.drain()
        return await self.reply()

    async def expect(self, line: str, what: str, *codes: int) -> str:
        """Send a command; raise "<what>: <reply>" unless the reply code is one of ``codes``."""
        code, text = await self.command(line)
        if code not in codes:
            raise CheckFailed(f"{what}: {text[:100]}")
        return text

    async def _line(self) -> str:
        try:
            raw = await self.reader.readuntil(b"\n")
        except asyncio.IncompleteReadError:
            raise CheckFailed("connection closed by the FTP server") from None
        except asyncio.LimitOverrunError:
            raise CheckFailed("FTP reply line too long") from None
        return raw.decode("utf-8", "replace").rstrip("\r\n")


async def login(control: Control, user: str, passwd: str) -> None:
    code, text = await control.command(f"USER {user}")
    if code == 331:
        code, text = await control.command(f"PASS {passwd}")
    if code not in (230, 202):
        raise CheckFailed(f"login failed: {text[:100]}")


async def passive_port(control: Control, address: str, family: int) -> tuple[int, str]:
    """Enter passive mode (EPSV on IPv6, PASV on IPv4): (data port on the real, note for the message)."""
    if family == socket.AF_INET6:
        return parse_epsv(await control.expect("EPSV", "EPSV", 229)), ""
    host, port = parse_pasv(await control.expect("PASV", "PASV", 227))
    if literal_family(address) == socket.AF_INET and host != address:
        return port, f"; PASV named {host}, used {address}"
    return port, ""


async def read_data(reader: asyncio.StreamReader) -> tuple[bytes, bool]:
    """(content, truncated): the data connection's bytes until EOF, at most MAX_CONTENT."""
    content = bytearray()
    while len(content) <= MAX_CONTENT:
        chunk = await reader.read(65536)
        if not chunk:
            return bytes(content), False
        content += chunk
    return bytes(content[:MAX_CONTENT]), True


async def retrieve(control: Control, address: str, family: int, path: str) -> tuple[bytes, bool, str]:
    """PASV/EPSV, connect, RETR ``path``; (content, truncated, note about the data address)."""
    port, note = await passive_port(control, address, family)
    data_sock = await open_tcp(address, port)
    try:
        reader, writer = await asyncio.open_connection(sock=data_sock)
    except BaseException:
        data_sock.close()
        raise
    try:
        code, text = await control.command(f"RETR {path}")
        if code not in (125, 150) and not 200 <= code < 300:
            raise CheckFailed(f"RETR {path}: {text[:100]}")
        content, truncated = await read_data(reader)
    finally:
        writer.close()
    if truncated:
        return content, True, note  # the transfer was cut short by us: its final reply is an abort
    if code < 200:
        code, text = await control.reply()
        if not 200 <= code < 300:
            raise CheckFailed(f"RETR {path}: {text[:100]}")
    return content, False, note


async def quit_politely(control: Control) -> None:
    """QUIT and wait a moment for the 221 (failures here do not matter any more)."""
    with suppress(Exception):
        async with asyncio.timeout(QUIT_WAIT):
            await control.command("QUIT")


@register("negotiate", "ftp")
async def check_ftp(spec: CheckSpec) -> CheckResult:
    """Log in, download ``request`` and search ``receive`` in it."""
    pattern = compile_receive(spec.receive) if spec.receive else None  # fails before any I/O
    path = spec.request[1:] if spec.request.startswith("/") else spec.request
    if not path:
        raise CheckFailed("no file to download (request is empty)")
    user = spec.login or DEFAULT_LOGIN
    passwd = spec.passwd or default_passwd()
    sock = await open_tcp(spec.address, spec.port)
    reader, writer = await asyncio.open_connection(sock=sock)
    control = Control(reader, writer)
    try:
        code, text = await control.reply()
        if code != 220:
            raise CheckFailed(f"FTP banner: {text[:100]}")
        await login(control, user, passwd)
        await control.expect("CWD /", "CWD /", 250, 200)
        await control.expect("TYPE I", "TYPE I", 200)
        content, truncated, note = await retrieve(control, spec.address, sock.family, path)
        await quit_politely(control)
    finally:
        writer.close()
    size = f"{len(content)}{'+' if truncated else ''} bytes{note}"
    if pattern is not None and not await receive_found(pattern, content):
        raise CheckFailed(f"receive pattern '{spec.receive}' not found in {path} ({size})")
    return CheckResult(ok=True, message=f"retrieved {path} ({size})")
