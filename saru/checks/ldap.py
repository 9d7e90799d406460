"""``negotiate`` for services ``ldap`` and ``ldaps``: a small asyncio LDAPv3 client of our own.

What goes on the wire (ldirectord's Net::LDAP check, research §2.2)::

    BindRequest    v3, simple: <login> / <passwd>   (anonymous — empty name and password — unless
                   login *and* passwd are both set)
    SearchRequest  base = request without its leading "/", scope baseObject, derefAliases never,
                   filter (objectClass=*), attributes "1.1" (no attributes: only the DN is used)
    UnbindRequest

* Bounded by ``checktimeout`` too, like ldirectord's ``alarm`` (see ``check_ldap``).
* Up when the bind succeeds, the search returns exactly one entry and ``receive`` is empty or
  matches the entry's DN (a Perl regular expression, searched anywhere in the DN).
* ``ldaps`` speaks TLS from the first byte (port 636 by default); the server's certificate is not
  verified, like ldirectord. IPv6 reals work (literal addresses, host names through the resolver).
* RFC 4511 forbids other operations while a bind is in progress, so the exchange is three strict
  round trips; each message is read by its BER header (``readexactly``), capped at 1 MiB.

The codec (pure functions: ``bind_request``, ``search_request``, ``unbind_request``, ``parse_message``)
is separate from the I/O (``ldap_probe``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Container
from dataclasses import dataclass

from saru.checks import ber
from saru.checks.base import CheckFailed, format_seconds, register
from saru.checks.lineproto import open_stream
from saru.checks.receive import compile_receive_text, receive_matches
from saru.model import CheckResult, CheckSpec

# protocolOp tags ([APPLICATION n], constructed unless noted)
BIND_REQUEST = 0x60
BIND_RESPONSE = 0x61
UNBIND_REQUEST = 0x42  # primitive NULL
SEARCH_REQUEST = 0x63
SEARCH_RESULT_ENTRY = 0x64
SEARCH_RESULT_DONE = 0x65
SEARCH_RESULT_REFERENCE = 0x73
EXTENDED_RESPONSE = 0x78

SIMPLE_AUTH = 0x80  # [0] simple password, primitive
FILTER_PRESENT = 0x87  # [7] present filter, primitive
SCOPE_BASE = 0
DEREF_NEVER = 0

#: RFC 4511 result codes worth a name in a message
RESULT_NAMES = {
    0: "success",
    1: "operationsError",
    2: "protocolError",
    3: "timeLimitExceeded",
    4: "sizeLimitExceeded",
    7: "authMethodNotSupported",
    8: "strongerAuthRequired",
    10: "referral",
    11: "adminLimitExceeded",
    13: "confidentialityRequired",
    32: "noSuchObject",
    34: "invalidDNSyntax",
    48: "inappropriateAuthentication",
    49: "invalidCredentials",
    50: "insufficientAccessRights",
    51: "busy",
    52: "unavailable",
    53: "unwillingToPerform",
    80: "other",
}


# --------------------------------------------------------------------------------------------------
# Codec (pure)
# --------------------------------------------------------------------------------------------------


def _message(message_id: int, op: bytes) -> bytes:
    return ber.encode_sequence(ber.encode_integer(message_id), op)


def bind_request(message_id: int, name: str = "", password: str = "") -> bytes:
    """An LDAPv3 simple BindRequest (anonymous with the empty name and password)."""
    op = ber.encode_sequence(
        ber.encode_integer(3),
        ber.encode_octets(name),
        ber.encode_octets(password, tag=SIMPLE_AUTH),
        tag=BIND_REQUEST,
    )
    return _message(message_id, op)


def search_request(message_id: int, base: str) -> bytes:
    """A base-scope SearchRequest for ``(objectClass=*)`` that asks for no attributes ("1.1")."""
    op = ber.encode_sequence(
        ber.encode_octets(base),
        ber.encode_integer(SCOPE_BASE, ber.ENUMERATED),
        ber.encode_integer(DEREF_NEVER, ber.ENUMERATED),
        ber.encode_integer(0),  # sizeLimit: none
        ber.encode_integer(0),  # timeLimit: none
        ber.encode_boolean(False),  # typesOnly
        ber.encode_octets("objectClass", tag=FILTER_PRESENT),
        ber.encode_sequence(ber.encode_octets("1.1")),
        tag=SEARCH_REQUEST,
    )
    return _message(message_id, op)


def unbind_request(message_id: int) -> bytes:
    return _message(message_id, ber.tlv(UNBIND_REQUEST))


@dataclass(frozen=True)
class Message:
    """A decoded LDAPMessage: its id, protocolOp tag, and what a health check needs from it."""

    message_id: int
    op: int
    dn: str = ""  # SearchResultEntry objectName / LDAPResult matchedDN
    result_code: int | None = None  # LDAPResult responses only
    diagnostic: str = ""


def parse_message(data: bytes) -> Message:
    """Decode one complete LDAPMessage."""
    tag, content, end = ber.decode(data)
    if tag != ber.SEQUENCE or end != len(data):
        raise ber.BerError("not an LDAPMessage")
    parts = ber.children(content)
    id_tag, id_value = next(parts, (0, b""))
    op_tag, op_value = next(parts, (0, b""))
    if id_tag != ber.INTEGER or not op_tag:
        raise ber.BerError("not an LDAPMessage")
    message_id = ber.decode_integer(id_value)
    fields = list(ber.children(op_value)) if op_tag & 0x20 else []
    if op_tag == SEARCH_RESULT_ENTRY:
        if not fields or fields[0][0] != ber.OCTET_STRING:
            raise ber.BerError("SearchResultEntry without objectName")
        return Message(message_id, op_tag, dn=fields[0][1].decode("utf-8", "replace"))
    if op_tag in (BIND_RESPONSE, SEARCH_RESULT_DONE, EXTENDED_RESPONSE):
        if len(fields) < 3 or fields[0][0] != ber.ENUMERATED:
            raise ber.BerError("malformed LDAPResult")
        return Message(
            message_id,
            op_tag,
            dn=fields[1][1].decode("utf-8", "replace"),
            result_code=ber.decode_integer(fields[0][1]),
            diagnostic=fields[2][1].decode("utf-8", "replace"),
        )
    return Message(message_id, op_tag)


def describe_result(message: Message) -> str:
    """``invalidCredentials (49)`` plus the server's diagnostic message, if any."""
    code = message.result_code if message.result_code is not None else -1
    text = f"{RESULT_NAMES.get(code, 'result')} ({code})"
    return f"{text}: {message.diagnostic}" if message.diagnostic else text


def search_base(request: str) -> str:
    """The search base: ``request`` without its leading "/" (ldirectord's ``$$v{request} =~ s/^\\///``)."""
    return request[1:] if request.startswith("/") else request


def evaluate(entries: list[str], receive: str, matching: Container[str] | None = None) -> CheckResult:
    """Up when exactly one entry came back and ``receive`` is empty or found in its DN (``matching``:
    the DNs it was found in, under a time limit, ``receive_matches``; else it is searched here)."""
    if len(entries) != 1:
        return CheckResult(ok=False, message=f"search returned {len(entries)} entries, expected 1")
    dn = entries[0]
    if receive and not (dn in matching if matching is not None else compile_receive_text(receive).search(dn)):
        return CheckResult(ok=False, message=f"receive pattern '{receive}' does not match DN '{dn}'")
    return CheckResult(ok=True, message=f"found {dn}" if dn else "found the root DSE")


# --------------------------------------------------------------------------------------------------
# I/O
# --------------------------------------------------------------------------------------------------


async def read_message(reader: asyncio.StreamReader) -> Message:
    """Read exactly one LDAPMessage from the stream."""
    head = await reader.readexactly(2)
    if head[1] & 0x80:
        head += await reader.readexactly(head[1] & 0x7F)
    size = ber.header_size(head)
    if size is None:  # pragma: no cover - header_size has all the bytes it asked for
        raise ber.BerError("truncated header")
    data = head + await reader.readexactly(size[1])
    message = parse_message(data)
    if message.message_id == 0 and message.op == EXTENDED_RESPONSE:  # notice of disconnection
        raise CheckFailed(f"server disconnected: {describe_result(message)}")
    return message


#: messages of other operations skipped while waiting for an answer (a server answers at once; one
#: sending messages without end held the event loop: they all came from the buffer without a pause)
MAX_OTHER_MESSAGES = 64


async def _response(reader: asyncio.StreamReader, message_id: int) -> Message:
    for _ in range(MAX_OTHER_MESSAGES + 1):
        message = await read_message(reader)
        if message.message_id == message_id:
            return message
    raise CheckFailed(f"no answer to LDAP request {message_id} among {MAX_OTHER_MESSAGES + 1} messages")


#: asyncio's default stream buffer limit (LDAP messages are read by length, not by line)
LDAP_STREAM_LIMIT = 2**16


async def ldap_probe(address: str, port: int, tls: bool, login: str, password: str, base: str) -> list[str]:
    """Bind, search ``base`` (scope base), unbind; the DNs of the entries found.

    Raises :class:`CheckFailed` when the bind or the search is refused by the server.
    """
    reader, writer = await open_stream(address, port, tls, limit=LDAP_STREAM_LIMIT)
    try:
        writer.write(bind_request(1, login, password))
        bound = await _response(reader, 1)
        if bound.op != BIND_RESPONSE:
            raise CheckFailed("unexpected answer to the bind request")
        if bound.result_code != 0:
            raise CheckFailed(f"bind failed: {describe_result(bound)}")
        writer.write(search_request(2, base))
        entries: list[str] = []
        while True:
            message = await _response(reader, 2)
            if message.op == SEARCH_RESULT_ENTRY:
                entries.append(message.dn)
            elif message.op == SEARCH_RESULT_DONE:
                break
        if message.result_code != 0:
            raise CheckFailed(f"search of '{base}' failed: {describe_result(message)}")
        writer.write(unbind_request(3))
    except BaseException:
        writer.transport.abort()
        raise
    writer.close()
    return entries


@register("negotiate", "ldap", "ldaps")
async def check_ldap(spec: CheckSpec) -> CheckResult:
    """Bind (anonymous unless login and passwd), base search of ``request``, match the DN.

    Bounded by ``checktimeout`` as well as ``negotiatetimeout`` (ldirectord wraps its LDAP check in
    ``alarm checktimeout``): with the defaults a hung server is down after 5 s, not 30 s.
    """
    authenticated = bool(spec.login and spec.passwd)
    alarm = asyncio.timeout(spec.checktimeout if spec.checktimeout < spec.negotiatetimeout else None)
    try:
        async with alarm:
            entries = await ldap_probe(
                spec.address,
                spec.port,
                spec.service == "ldaps",
                spec.login if authenticated else "",
                spec.passwd if authenticated else "",
                search_base(spec.request),
            )
    except ber.BerError as exc:
        raise CheckFailed(f"malformed LDAP response: {exc}") from None
    except TimeoutError:
        if alarm.expired():
            raise CheckFailed(f"timeout after {format_seconds(spec.checktimeout)}s", failure="timeout") from None
        raise
    matching = await receive_matches(compile_receive_text(spec.receive), entries) if spec.receive else None
    return evaluate(entries, spec.receive, matching)
