"""``negotiate`` for service ``dns``: one query to the real as name server, with dnspython.

What goes on the wire (ldirectord's Net::DNS check, research §2.2): the real is the name server,
queried at the check port (53 by default) over TCP when the virtual is TCP, else over UDP (retried
over TCP when the UDP answer is truncated, like Net::DNS; UDP queries are retransmitted after 1, 2,
4 … s within the timeout, and a closed UDP port is "connection refused" at once). The name is
``request`` without its leading "/":

* an IPv4 or IPv6 address → a PTR query for its reverse name (``10.2.0.192.in-addr.arpa``);
* anything else → an A query (like ldirectord: no AAAA), for the name as given — no resolver
  search list is appended.

Up when any A address or PTR name of the answer section matches ``receive`` (a Perl regular
expression). As in ldirectord, an empty ``receive`` is always down — the message says why.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Container

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.reversename

from saru.checks.base import CheckFailed, register
from saru.checks.receive import compile_receive_text, receive_matches
from saru.checks.tcp import resolve
from saru.model import CheckResult, CheckSpec

FIRST_RETRANSMIT = 1.0
EMPTY_RECEIVE = "receive is empty: ldirectord's dns check needs receive"


def query_for(request: str) -> tuple[dns.name.Name, dns.rdatatype.RdataType]:
    """(name, type) to ask: PTR of the reverse name for an IP address, else A for the name."""
    text = (request[1:] if request.startswith("/") else request).strip()
    if not text:
        raise CheckFailed("request is empty: the dns check needs a name or an address to look up")
    try:
        ipaddress.ip_address(text)
    except ValueError:
        try:
            return dns.name.from_text(text), dns.rdatatype.A
        except dns.exception.DNSException as exc:
            raise CheckFailed(f"invalid name '{text}': {exc}") from None
    return dns.reversename.from_address(text), dns.rdatatype.PTR


def answers(response: dns.message.Message) -> list[str]:
    """The A addresses and PTR names of the answer section (names without the final dot)."""
    found: list[str] = []
    for rrset in response.answer:
        for rdata in rrset:
            if rdata.rdtype == dns.rdatatype.A:
                found.append(rdata.address)
            elif rdata.rdtype == dns.rdatatype.PTR:
                found.append(rdata.target.to_text(omit_final_dot=True))
    return found


def evaluate(response: dns.message.Message, receive: str, matching: Container[str] | None = None) -> CheckResult:
    """Up when an A address or PTR name of the answer matches ``receive`` (``matching``: the answers
    it was found in, under a time limit, ``receive_matches``; else it is searched here)."""
    rcode = response.rcode()
    if rcode != dns.rcode.NOERROR:
        return CheckResult(ok=False, message=f"answer {dns.rcode.to_text(rcode)}")
    found = answers(response)
    if not found:
        return CheckResult(ok=False, message="no A or PTR record in the answer")
    pattern = compile_receive_text(receive)
    for value in found:
        if value in matching if matching is not None else pattern.search(value):
            return CheckResult(ok=True, message=f"answer {value}")
    listed = ", ".join(found)
    return CheckResult(ok=False, message=f"receive pattern '{receive}' matches no answer ({listed})")


async def udp_exchange(ip: str, port: int, family: int, query: dns.message.Message) -> dns.message.Message:
    """One query over a connected UDP socket, retransmitted after 1, 2, 4 … s.

    Connected, so that only the real's datagrams reach us and an ICMP port unreachable ends the
    check at once as "connection refused" (dnspython's UDP query would wait for the timeout).
    """
    loop = asyncio.get_running_loop()
    wire = query.to_wire()
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.connect((ip, port))
        wait = FIRST_RETRANSMIT
        while True:
            sock.send(wire)
            try:
                async with asyncio.timeout(wait):
                    while True:
                        data = await loop.sock_recv(sock, 65535)
                        try:
                            response = dns.message.from_wire(data, ignore_trailing=True)
                        except dns.exception.DNSException:
                            continue  # not a DNS message: keep waiting for ours
                        if query.is_response(response):
                            return response
            except TimeoutError:
                wait *= 2


async def dns_query(address: str, port: int, query: dns.message.Message, tcp: bool) -> dns.message.Message:
    """Send ``query`` to address:port over TCP, or UDP with a TCP retry when the answer is truncated."""
    if port <= 0:
        raise CheckFailed("no port to check")
    family, (ip, _) = await resolve(address, port, socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM)
    try:
        if not tcp:
            response = await udp_exchange(ip, port, family, query)
            if not response.flags & dns.flags.TC:
                return response
        return await dns.asyncquery.tcp(query, ip, port=port)
    except dns.exception.DNSException as exc:
        raise CheckFailed(f"DNS error: {exc}") from None


@register("negotiate", "dns")
async def check_dns(spec: CheckSpec) -> CheckResult:
    """Query the real for ``request`` (A, or PTR for an address) and match ``receive``."""
    if not spec.receive:
        raise CheckFailed(EMPTY_RECEIVE)
    compile_receive_text(spec.receive)  # a bad pattern fails before any I/O
    name, rdtype = query_for(spec.request)
    query = dns.message.make_query(name, rdtype)
    response = await dns_query(spec.address, spec.port, query, spec.protocol == "tcp")
    matching = await receive_matches(compile_receive_text(spec.receive), answers(response))
    return evaluate(response, spec.receive, matching)
