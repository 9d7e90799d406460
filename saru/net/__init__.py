"""Wire code written once: the bytes Saru puts on (and reads off) the network, without I/O.

What it offers (import from ``saru.net``):

* ``checksum`` — the Internet checksum (RFC 1071, ``saru.net.checksum``) and ``pseudo_header``, the
  IPv4/IPv6 pseudo-header that TCP, ICMPv6 and VRRP checksums cover;
* ``icmp`` — ICMP/ICMPv6 echo messages: ``icmp_echo``, ``icmpv6_echo``, ``echo_request``, the parsers
  ``parse_ipv4_icmp_echo`` / ``parse_icmpv6_echo`` (an ``Echo``), ``echo_header`` and ``is_echo_reply``;
* ``mac`` — Ethernet addresses: ``mac_bytes`` (text to 6 bytes), ``mac_str`` (and back), ``normal_mac``;
* ``netlink`` — netlink attributes: ``nla`` (pack one), ``parse_attrs`` (a chain by type);
* ``route`` — ``ip route get`` over rtnetlink: ``has_route`` (one request to the kernel, imported as
  ``saru.net.route``), so the checks tell a local routing error from a router's ICMP unreachable;
* ``smtp`` — the SMTP client of the mail checks and the e-mail alerts (``SMTPClient``, the EHLO → HELO
  fallback rule, ``dot_stuff``), imported as ``saru.net.smtp`` (it needs asyncio; the rest does not);
* ``text`` — ``printable``: server text made safe for a log line; ``is_number``: ASCII digits only.

Builders raise ``PacketError`` (a ``ValueError``) for input they cannot encode; parsers return ``None``
for bytes that are not what was asked for. Nothing here imports the rest of Saru.
"""

from __future__ import annotations

from saru.net.checksum import checksum, packed_address, pseudo_header
from saru.net.errors import PacketError
from saru.net.icmp import (
    ECHO_REPLY,
    ECHO_REQUEST,
    ICMP6_ECHO_REPLY,
    ICMP6_ECHO_REQUEST,
    ICMP_ECHO_REPLY,
    ICMP_ECHO_REQUEST,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    PROTO,
    Echo,
    echo_header,
    echo_request,
    icmp_echo,
    icmpv6_echo,
    is_echo_reply,
    parse_icmpv6_echo,
    parse_ipv4_icmp_echo,
)
from saru.net.mac import BROADCAST_MAC, ZERO_MAC, mac_bytes, mac_str, normal_mac
from saru.net.netlink import NLA_TYPE_MASK, nla, parse_attrs
from saru.net.text import is_number, printable

__all__ = [
    "BROADCAST_MAC",
    "ECHO_REPLY",
    "ECHO_REQUEST",
    "ICMP6_ECHO_REPLY",
    "ICMP6_ECHO_REQUEST",
    "ICMP_ECHO_REPLY",
    "ICMP_ECHO_REQUEST",
    "IPPROTO_ICMP",
    "IPPROTO_ICMPV6",
    "NLA_TYPE_MASK",
    "PROTO",
    "ZERO_MAC",
    "Echo",
    "PacketError",
    "checksum",
    "echo_header",
    "echo_request",
    "icmp_echo",
    "icmpv6_echo",
    "is_echo_reply",
    "is_number",
    "mac_bytes",
    "mac_str",
    "nla",
    "normal_mac",
    "packed_address",
    "parse_attrs",
    "parse_icmpv6_echo",
    "parse_ipv4_icmp_echo",
    "printable",
    "pseudo_header",
]
