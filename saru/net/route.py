"""``ip route get ADDRESS`` over rtnetlink: does this host have a usable route to an address?

``has_route(address)`` sends one ``RTM_GETROUTE`` request and reads the kernel's answer: True for a
unicast (or local) route, False when the kernel has none (``ENETUNREACH``/``EHOSTUNREACH`` in the
reply), the route is a ``blackhole``/``unreachable``/``prohibit`` one, or its outgoing link has no
carrier (this host's own cable or peer is gone: a second request, ``RTM_GETLINK``), None when the
question could not be asked (no netlink, a malformed reply). The check plane uses it to tell a local routing error
from an ICMP host-unreachable sent back by a router (``saru.checks.base.local_fault``).
``is_local(address)`` asks the same question and says whether the answer is a ``local`` route: the
address is this host's (in this network namespace), where IPVS takes a packet in (the BGP announcer
warns about a VIP that is not).
Synchronous and quick (one round trip to the kernel, no packet leaves the host).
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct

from saru.net.netlink import nla, parse_attrs

_NLMSG = struct.Struct("=IHHII")  # nlmsg_len, nlmsg_type, nlmsg_flags, nlmsg_seq, nlmsg_pid
_RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol, scope, type, flags
_IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
_NLMSG_ERROR = 2
_RTM_NEWLINK, _RTM_GETLINK = 16, 18
_RTM_NEWROUTE, _RTM_GETROUTE = 24, 26
_NLM_F_REQUEST = 1
_RTA_DST, _RTA_OIF = 1, 4
#: route types that carry no packet: RTN_BLACKHOLE, RTN_UNREACHABLE, RTN_PROHIBIT, RTN_THROW
_DEAD_TYPES = frozenset({6, 7, 8, 9})
_RTN_LOCAL = 2
_NO_ROUTE_ERRNOS = frozenset({errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EACCES, errno.EINVAL})
_RTNH_F_LINKDOWN = 16  # rtm_flags: the route's nexthop interface has no carrier
_IFF_LOWER_UP = 0x10000  # ifi_flags: the link has carrier


def route_request(address: str, seq: int = 1) -> bytes:
    """The ``RTM_GETROUTE`` message asking for the route to ``address``."""
    ip = ipaddress.ip_address(address.strip("[]").split("%")[0])
    family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
    body = _RTMSG.pack(family, ip.max_prefixlen, 0, 0, 0, 0, 0, 0, 0) + nla(_RTA_DST, ip.packed)
    return _NLMSG.pack(_NLMSG.size + len(body), _RTM_GETROUTE, _NLM_F_REQUEST, seq, 0) + body


def link_request(index: int, seq: int = 2) -> bytes:
    """The ``RTM_GETLINK`` message asking for the link with ifindex ``index``."""
    body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, 0, 0)
    return _NLMSG.pack(_NLMSG.size + len(body), _RTM_GETLINK, _NLM_F_REQUEST, seq, 0) + body


def _error(data: bytes) -> int | None:
    """The errno of an ``NLMSG_ERROR`` reply (0: an acknowledgement), None for another message."""
    _length, kind, _flags, _seq, _pid = _NLMSG.unpack_from(data)
    if kind != _NLMSG_ERROR or len(data) < _NLMSG.size + 4:
        return None
    (code,) = struct.unpack_from("=i", data, _NLMSG.size)
    return -int(code)


def parse_route_reply(data: bytes) -> tuple[bool | None, int]:
    """``(usable, oif)``: usable True for a route that carries packets, False for none (or a dead
    one), None when ``data`` is not an answer; ``oif`` the outgoing interface's index (0: unknown)."""
    if len(data) < _NLMSG.size:
        return None, 0
    code = _error(data)
    if code is not None:
        return (False if code in _NO_ROUTE_ERRNOS else None), 0
    if _NLMSG.unpack_from(data)[1] != _RTM_NEWROUTE or len(data) < _NLMSG.size + _RTMSG.size:
        return None, 0
    fields = _RTMSG.unpack_from(data, _NLMSG.size)
    route_type, flags = fields[7], fields[8]
    oif = parse_attrs(data, _NLMSG.size + _RTMSG.size).get(_RTA_OIF, b"")
    index = struct.unpack("=i", oif)[0] if len(oif) == 4 else 0
    return route_type not in _DEAD_TYPES and not flags & _RTNH_F_LINKDOWN, index


def parse_route_type(data: bytes) -> int | None:
    """The route type (``RTN_*``: 1 unicast, 2 local…) of an ``RTM_NEWROUTE`` reply; None for anything else."""
    if len(data) < _NLMSG.size + _RTMSG.size or _NLMSG.unpack_from(data)[1] != _RTM_NEWROUTE:
        return None
    return int(_RTMSG.unpack_from(data, _NLMSG.size)[7])


def parse_link_reply(data: bytes) -> bool | None:
    """Whether the link in an ``RTM_NEWLINK`` reply has carrier (None: not such a reply)."""
    if len(data) < _NLMSG.size + _IFINFOMSG.size or _NLMSG.unpack_from(data)[1] != _RTM_NEWLINK:
        return None
    flags = _IFINFOMSG.unpack_from(data, _NLMSG.size)[3]
    return bool(flags & _IFF_LOWER_UP)


def has_route(address: str, timeout: float = 0.5) -> bool | None:
    """Whether the kernel routes ``address`` through a link that has carrier (see the module
    docstring); never raises."""
    try:
        request = route_request(address)
    except ValueError:
        return None  # a host name: the resolver's business, not the routing table's
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
            sock.settimeout(timeout)
            sock.bind((0, 0))
            sock.send(request)
            usable, oif = parse_route_reply(sock.recv(65536))
            if not usable or not oif:
                return usable
            sock.send(link_request(oif))
            carrier = parse_link_reply(sock.recv(65536))
            return usable if carrier is None else carrier
    except OSError:
        return None


def is_local(address: str, timeout: float = 0.5) -> bool | None:
    """Whether ``address`` is one of this host's own (the kernel's route to it is ``local``); None
    when the question could not be asked; never raises."""
    try:
        request = route_request(address)
    except ValueError:
        return None
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
            sock.settimeout(timeout)
            sock.bind((0, 0))
            sock.send(request)
            reply = sock.recv(65536)
    except OSError:
        return None
    kind = parse_route_type(reply)
    if kind is None:
        return False if parse_route_reply(reply)[0] is False else None
    return kind == _RTN_LOCAL


__all__ = ["has_route", "is_local", "link_request", "parse_link_reply", "parse_route_reply", "parse_route_type",
           "route_request"]
