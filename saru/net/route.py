"""``ip route get ADDRESS`` over rtnetlink: does this host have a usable route to an address?

``has_route(address)`` sends one ``RTM_GETROUTE`` request and reads the kernel's answer: True for a
unicast (or local) route, False when the kernel has none (``ENETUNREACH``/``EHOSTUNREACH`` in the
reply) or the route is a ``blackhole``/``unreachable``/``prohibit`` one, None when the question could
not be asked (no netlink, a malformed reply). The check plane uses it to tell a local routing error
from an ICMP host-unreachable sent back by a router (``saru.checks.base.local_fault``).
Synchronous and quick (one round trip to the kernel, no packet leaves the host).
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct

from saru.net.netlink import nla

_NLMSG = struct.Struct("=IHHII")  # nlmsg_len, nlmsg_type, nlmsg_flags, nlmsg_seq, nlmsg_pid
_RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol, scope, type, flags
_NLMSG_ERROR = 2
_RTM_NEWROUTE = 24
_RTM_GETROUTE = 26
_NLM_F_REQUEST = 1
_RTA_DST = 1
#: route types that carry no packet: RTN_BLACKHOLE, RTN_UNREACHABLE, RTN_PROHIBIT, RTN_THROW
_DEAD_TYPES = frozenset({6, 7, 8, 9})
_NO_ROUTE_ERRNOS = frozenset({errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EACCES, errno.EINVAL})


def route_request(address: str, seq: int = 1) -> bytes:
    """The ``RTM_GETROUTE`` message asking for the route to ``address``."""
    ip = ipaddress.ip_address(address.strip("[]").split("%")[0])
    family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
    body = _RTMSG.pack(family, ip.max_prefixlen, 0, 0, 0, 0, 0, 0, 0) + nla(_RTA_DST, ip.packed)
    return _NLMSG.pack(_NLMSG.size + len(body), _RTM_GETROUTE, _NLM_F_REQUEST, seq, 0) + body


def parse_route_reply(data: bytes) -> bool | None:
    """True: a usable route; False: none (or a dead one); None: not an answer to the request."""
    if len(data) < _NLMSG.size:
        return None
    _length, kind, _flags, _seq, _pid = _NLMSG.unpack_from(data)
    if kind == _NLMSG_ERROR and len(data) >= _NLMSG.size + 4:
        (code,) = struct.unpack_from("=i", data, _NLMSG.size)
        if code == 0:
            return None
        return False if -code in _NO_ROUTE_ERRNOS else None
    if kind == _RTM_NEWROUTE and len(data) >= _NLMSG.size + _RTMSG.size:
        route_type = _RTMSG.unpack_from(data, _NLMSG.size)[7]
        return route_type not in _DEAD_TYPES
    return None


def has_route(address: str, timeout: float = 0.5) -> bool | None:
    """Whether the kernel routes ``address`` (see the module docstring); never raises."""
    try:
        request = route_request(address)
    except ValueError:
        return None  # a host name: the resolver's business, not the routing table's
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
            sock.settimeout(timeout)
            sock.bind((0, 0))
            sock.send(request)
            return parse_route_reply(sock.recv(65536))
    except OSError:
        return None


__all__ = ["has_route", "parse_route_reply", "route_request"]
