"""``negotiate`` for the mail services: smtp, submission, pop, pops, imap, imaps.

What goes on the wire (compare ldirectord's Net::SMTP, Mail::POP3Client and Net::IMAP::Simple checks,
research §2.2); each exchange is a few lines over ``LineStream``, nothing blocks the loop::

    smtp, submission   <- 220 banner           (any 2xx; multi-line replies are read whole)
                       -> EHLO <our name>      <- 250  (500/502 "unknown command": HELO; saru.net.smtp)
                       -> QUIT
    pop, pops          <- +OK greeting
                       -> USER <login>         <- +OK   } only when login is set
                       -> PASS <passwd>        <- +OK   }
                       -> QUIT
    imap, imaps        <- * OK greeting        (* PREAUTH too)
                       -> a1 LOGIN "<login>" "<passwd>"   <- a1 OK   (only when login is set)
                       -> a2 LOGOUT

* ``pops`` and ``imaps`` speak TLS from the first byte; the certificate is not verified (ldirectord).
  No STARTTLS and no SMTP AUTH, like ldirectord. ``request``/``receive`` are not used.
* Unlike ldirectord, POP without ``login`` really connects and requires the ``+OK`` greeting
  (ldirectord's Mail::POP3Client constructor never fails, so such a check was always up: W8).
* ``<our name>`` is this host's name when it is a dotted domain name, else the address literal of our
  end of the connection (``[127.0.0.1]``, ``[IPv6:::1]``) — the two forms RFC 5321 allows.
* IMAP credentials are sent as quoted strings (``\\`` and ``"`` escaped); values with non-ASCII or
  control characters go as synchronizing literals (``{n}`` + continuation). A login or password with
  a line break (POP3) or NUL is refused before anything is sent.
* The closing command is best effort (``LineStream.goodbye``): its answer is awaited (briefly), but
  once the verdict is made a server that does not answer QUIT/LOGOUT cannot turn the check down.
"""

from __future__ import annotations

import functools
import re
import socket

from saru.checks.base import CheckFailed, register
from saru.checks.lineproto import LineStream, check_deadline, printable, single_line
from saru.model import CheckResult, CheckSpec
from saru.net import smtp

# --------------------------------------------------------------------------------------------------
# SMTP, submission
# --------------------------------------------------------------------------------------------------

_DOMAIN = re.compile(r"(?=.{1,253}\Z)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                     r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+")


@functools.cache
def host_domain() -> str:
    """This host's name if it is a dotted domain name (usable in EHLO), else ""."""
    name = socket.gethostname()
    return name if _DOMAIN.fullmatch(name) else ""


def address_literal(address: str) -> str:
    """The RFC 5321 address literal of an IP address: ``[192.0.2.1]`` / ``[IPv6:2001:db8::1]``."""
    address = address.split("%", 1)[0]
    return f"[IPv6:{address}]" if ":" in address else f"[{address}]"


def parse_reply_line(line: bytes) -> tuple[int, bool]:
    """(code, last) of one SMTP reply line (``saru.net.smtp``); CheckFailed for a line that is not SMTP."""
    try:
        return smtp.parse_reply_line(line)
    except smtp.SMTPError as exc:
        raise CheckFailed(str(exc)) from None


async def smtp_probe(stream: LineStream, deadline: float) -> str:
    """Banner, EHLO (HELO fallback), QUIT; the banner. CheckFailed when the server refuses."""
    client = smtp.SMTPClient(stream.read_line, stream.writer)
    try:
        greeting = await client.reply()
        if not greeting.positive:
            raise CheckFailed(f"SMTP banner: {printable(greeting.first)}")
        name = host_domain() or address_literal(str(stream.writer.get_extra_info("sockname")[0]))
        reply = await client.hello(name)
    except smtp.SMTPError as exc:  # a malformed reply
        raise CheckFailed(str(exc)) from None
    if not reply.positive:
        raise CheckFailed(f"EHLO refused: {printable(reply.first)}")
    await stream.goodbye("QUIT", deadline, final=lambda line: line[3:4] != b"-")
    return printable(greeting.first)


@register("negotiate", "smtp", "submission")
async def check_smtp(spec: CheckSpec) -> CheckResult:
    """Up when the banner is 2xx and EHLO (or HELO) is accepted."""
    deadline = check_deadline(spec)
    async with await LineStream.open(spec.address, spec.port) as stream:
        banner = await smtp_probe(stream, deadline)
    return CheckResult(ok=True, message=f"EHLO accepted: {banner}")


# --------------------------------------------------------------------------------------------------
# POP3
# --------------------------------------------------------------------------------------------------


def pop_ok(reply: bytes, what: str) -> None:
    """CheckFailed unless a POP3 status line is ``+OK``."""
    if not reply.startswith(b"+OK"):
        raise CheckFailed(f"{what}: {printable(reply) or 'empty reply'}")


async def pop_probe(stream: LineStream, login: str, passwd: str, deadline: float) -> str:
    """Greeting, USER/PASS when ``login`` is set, QUIT; a short description of what succeeded."""
    pop_ok(await stream.read_line(), "unexpected POP3 greeting")
    if login:
        user = f"USER {single_line(login, 'login')}"
        password = f"PASS {single_line(passwd, 'passwd')}"
        pop_ok(await stream.command(user), "USER refused")
        pop_ok(await stream.command(password), "PASS refused")
    await stream.goodbye("QUIT", deadline)
    return f"logged in as {login!r}" if login else "+OK greeting"


@register("negotiate", "pop", "pops")
async def check_pop(spec: CheckSpec) -> CheckResult:
    """Up on the ``+OK`` greeting and, when ``login`` is set, ``+OK`` to USER and PASS."""
    deadline = check_deadline(spec)
    async with await LineStream.open(spec.address, spec.port, tls=spec.service == "pops") as stream:
        message = await pop_probe(stream, spec.login, spec.passwd, deadline)
    return CheckResult(ok=True, message=message)


# --------------------------------------------------------------------------------------------------
# IMAP4rev1
# --------------------------------------------------------------------------------------------------

#: the largest literal accepted inside a server response
MAX_LITERAL = 64 << 10
_LITERAL_AT_END = re.compile(rb"\{(\d{1,10})\+?\}\Z")


def imap_string(value: str, what: str) -> tuple[bytes, bytes | None]:
    """``(text, None)`` for a quoted string, ``(b"{n}", data)`` for a synchronizing literal."""
    if "\0" in value:
        raise CheckFailed(f"{what} contains NUL: not sent")
    if all(" " <= c <= "~" for c in value):
        return b'"' + value.replace("\\", "\\\\").replace('"', '\\"').encode() + b'"', None
    data = value.encode()
    return b"{%d}" % len(data), data


def login_chunks(login: str, passwd: str, tag: str = "a1") -> list[bytes]:
    """``a1 LOGIN user pass`` as command lines; every chunk but the last ends with a literal's ``{n}``
    and is followed by the server's ``+`` continuation before the next chunk (the literal's data)."""
    chunks: list[bytes] = []
    current = f"{tag} LOGIN".encode()
    for value, what in ((login, "login"), (passwd, "passwd")):
        text, data = imap_string(value, what)
        current += b" " + text
        if data is not None:
            chunks.append(current)
            current = data
    chunks.append(current)
    return chunks


def imap_status(response: bytes, tag: bytes) -> bytes:
    """The status word (``OK``, ``NO``, ``BAD``, ``BYE``, ``PREAUTH`` …) of a ``<tag> <word> …`` line."""
    parts = response.split(b" ", 2)
    if len(parts) < 2 or parts[0] != tag:
        return b""
    return parts[1].upper()


async def read_response(stream: LineStream) -> bytes:
    """One IMAP response line, with any literals it carries inlined."""
    line = await stream.read_line()
    total = len(line)
    while (match := _LITERAL_AT_END.search(line)) is not None:
        size = int(match.group(1))
        total += size
        if total > MAX_LITERAL:
            raise CheckFailed(f"IMAP response larger than {MAX_LITERAL} bytes")
        line += b"\r\n" + await stream.read_exactly(size)
        line += await stream.read_line()
    return line


#: untagged responses skipped while waiting for the tagged one (a LOGIN gets a few: CAPABILITY…)
MAX_UNTAGGED = 256


async def read_tagged(stream: LineStream, tag: bytes, continuation: bool = False) -> bytes | None:
    """Skip untagged responses until the tagged one (returned), or a ``+`` continuation (None) if
    ``continuation``; CheckFailed on ``* BYE`` or after ``MAX_UNTAGGED`` untagged responses."""
    for _ in range(MAX_UNTAGGED + 1):
        response = await read_response(stream)
        if imap_status(response, b"*") == b"BYE":
            raise CheckFailed(f"server closing: {printable(response)}")
        if continuation and response.startswith(b"+"):
            return None
        if response.startswith(tag + b" "):
            return response
    raise CheckFailed(f"no tagged {tag.decode()} response after {MAX_UNTAGGED} untagged ones")


async def imap_login(stream: LineStream, login: str, passwd: str) -> None:
    """``a1 LOGIN``; CheckFailed unless the server answers ``a1 OK``."""
    chunks = login_chunks(login, passwd)
    for i, chunk in enumerate(chunks):
        stream.send(chunk)
        await stream.writer.drain()
        answer = await read_tagged(stream, b"a1", continuation=i < len(chunks) - 1)
        if answer is not None:
            break
    if imap_status(answer or b"", b"a1") != b"OK":
        raise CheckFailed(f"LOGIN refused: {printable(answer or b'')}")


async def imap_probe(stream: LineStream, login: str, passwd: str, deadline: float) -> str:
    """Greeting, LOGIN when ``login`` is set, LOGOUT; a short description of what succeeded."""
    greeting = await read_response(stream)
    status = imap_status(greeting, b"*")
    if status == b"BYE":
        raise CheckFailed(f"server refused the connection: {printable(greeting)}")
    if status not in (b"OK", b"PREAUTH"):
        raise CheckFailed(f"unexpected IMAP greeting: {printable(greeting) or 'empty line'}")
    if login:
        await imap_login(stream, login, passwd)
    await stream.goodbye("a2 LOGOUT", deadline, final=lambda line: line.startswith(b"a2 "))
    return f"logged in as {login!r}" if login else f"* {status.decode()} greeting"


@register("negotiate", "imap", "imaps")
async def check_imap(spec: CheckSpec) -> CheckResult:
    """Up on the ``* OK`` greeting and, when ``login`` is set, ``a1 OK`` to LOGIN."""
    deadline = check_deadline(spec)
    async with await LineStream.open(spec.address, spec.port, tls=spec.service == "imaps") as stream:
        message = await imap_probe(stream, spec.login, spec.passwd, deadline)
    return CheckResult(ok=True, message=message)
