"""Connection-level checks: ``connect`` (TCP connect, close) and ``ping`` (ICMP echo).

ldirectord's ``connect`` check on a UDP virtual is an ICMP ping, so ``connect`` dispatches on the
virtual's protocol. ICMP uses a raw socket when the process may open one (root / CAP_NET_RAW) and
otherwise the kernel's unprivileged ``SOCK_DGRAM`` ICMP socket (allowed by
``net.ipv4.ping_group_range``). Unlike ldirectord, IPv6 reals can be pinged too.
"""

from __future__ import annotations

import _socket
import asyncio
import errno
import functools
import ipaddress
import os
import socket
from collections.abc import Callable, Coroutine
from typing import TypeVar

from saru.checks.base import CheckFailed, format_seconds, register
from saru.model import CheckResult, CheckSpec
from saru.net import PROTO, echo_request, is_echo_reply
from saru.net import checksum as icmp_checksum  # noqa: F401  (this module's name for it before saru.net)


@functools.lru_cache(maxsize=65536)
def literal_family(address: str) -> int:
    """AF_INET/AF_INET6 for an IP literal (brackets allowed), 0 for a host name."""
    try:
        version = ipaddress.ip_address(address.strip("[]")).version
    except ValueError:
        return 0
    return socket.AF_INET6 if version == 6 else socket.AF_INET


async def resolve(address: str, port: int, kind: int) -> tuple[int, tuple[str, int]]:
    """(family, sockaddr) for an IP literal (no lookup) or a host name (getaddrinfo, first answer)."""
    family = literal_family(address)
    if family:
        return family, (address.strip("[]"), port)
    infos = await asyncio.get_running_loop().getaddrinfo(address, port, type=kind)
    if not infos:
        raise CheckFailed(f"cannot resolve {address}")
    family, _, _, _, sockaddr = infos[0]
    return family, (str(sockaddr[0]), port)


#: a non-blocking stream socket in one syscall where the platform allows it
_NONBLOCK = getattr(socket, "SOCK_NONBLOCK", 0)
_STREAM_NONBLOCK = socket.SOCK_STREAM | _NONBLOCK


def _settled(sock: _socket.socket) -> int:
    """0 if already connected, the error if already failed, EINPROGRESS if still connecting.

    On loopback and fast local networks the handshake completes inside ``connect()``, so this
    saves registering with the selector and a loop iteration for most checks.
    """
    try:
        sock.getpeername()
    except OSError:
        return sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) or errno.EINPROGRESS
    return 0


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def wait_fd(loop: asyncio.AbstractEventLoop, fd: int, writable: bool) -> None:
    """Wait until ``fd`` is readable (or writable): the checks' one way of waiting on a bare socket."""
    future: asyncio.Future[None] = loop.create_future()
    if writable:
        loop.add_writer(fd, _wake, future)
    else:
        loop.add_reader(fd, _wake, future)
    try:
        await future
    finally:
        if writable:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)


def open_tcp(address: str, port: int) -> Coroutine[object, object, socket.socket]:
    """(Await it:) a connected non-blocking TCP socket; the caller closes it. Raises OSError on failure.

    Hand-rolled rather than ``loop.sock_connect`` / ``open_connection``: it skips a resolver
    round for IP literals and the transport machinery, which halves the CPU cost of a check. It
    hands out ``_connected``'s coroutine itself: no coroutine layer of its own for every step of
    the check that awaits it.
    """
    return _connected(address, port, socket.socket)


_Socket = TypeVar("_Socket", bound=_socket.socket)


async def _connected(address: str, port: int, kind: Callable[[int, int], _Socket]) -> _Socket:
    """``open_tcp`` with a socket of type ``kind``: ``socket.socket`` for sockets handed on, the bare
    ``_socket.socket`` (no Python-level wrapper to build and close) for a connect-and-close."""
    if port <= 0:
        raise CheckFailed("no port to check")
    family = literal_family(address)
    if family:  # the usual case: no resolver round
        sockaddr = (address.strip("[]"), port)
    else:
        family, sockaddr = await resolve(address, port, socket.SOCK_STREAM)
    sock = kind(family, _STREAM_NONBLOCK)
    try:
        if not _NONBLOCK:
            sock.setblocking(False)
        err = sock.connect_ex(sockaddr)
        if err in (errno.EINPROGRESS, errno.EAGAIN):
            err = _settled(sock)
        if err in (errno.EINPROGRESS, errno.EAGAIN):
            await wait_fd(asyncio.get_running_loop(), sock.fileno(), writable=True)
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise OSError(err, os.strerror(err))
    except BaseException:
        sock.close()
        raise
    return sock


async def tcp_connect(address: str, port: int) -> None:
    """Open a TCP connection to address:port and close it again (raises OSError on failure)."""
    (await _connected(address, port, _socket.socket)).close()


_CONNECTED = CheckResult(ok=True, message="connected")


@register("connect")
async def check_connect(spec: CheckSpec) -> CheckResult:
    """TCP connect within checktimeout; ICMP ping for UDP virtuals (as ldirectord does)."""
    if spec.protocol == "udp":
        return await check_ping(spec)
    await tcp_connect(spec.address, spec.port)
    return _CONNECTED


# --------------------------------------------------------------------------------------------------
# ICMP echo (the messages: saru.net.icmp)
# --------------------------------------------------------------------------------------------------


def _icmp_socket(family: int) -> tuple[socket.socket, bool]:
    """A raw ICMP socket if permitted, else an unprivileged datagram ICMP socket."""
    try:
        return socket.socket(family, socket.SOCK_RAW, PROTO[family]), True
    except PermissionError:
        pass
    try:
        return socket.socket(family, socket.SOCK_DGRAM, PROTO[family]), False
    except PermissionError:
        raise CheckFailed(
            "ICMP not permitted (needs CAP_NET_RAW or net.ipv4.ping_group_range)"
        ) from None


async def icmp_echo(address: str, timeout: float, seq: int = 1) -> float:
    """Send one echo request and wait for its reply; the round-trip time in seconds."""
    loop = asyncio.get_running_loop()
    family, (ip, _) = await resolve(address, 0, socket.SOCK_RAW)
    sock, raw = _icmp_socket(family)
    with sock:
        sock.setblocking(False)
        ident = int.from_bytes(os.urandom(2), "big")
        payload = b"saru" + os.urandom(12)
        start = loop.time()
        await loop.sock_sendto(sock, echo_request(family, ident, seq, payload), (ip, 0))
        async with asyncio.timeout(timeout):
            while True:
                packet, source = await loop.sock_recvfrom(sock, 65535)
                if source[0] == ip and is_echo_reply(family, packet, raw, ident, seq, payload):
                    return loop.time() - start


@register("ping")
async def check_ping(spec: CheckSpec) -> CheckResult:
    """ICMP echo: up on the first reply among ``checkcount`` attempts of ``checktimeout`` each."""
    attempts = max(1, spec.checkcount)
    for seq in range(1, attempts + 1):
        try:
            rtt = await icmp_echo(spec.address, spec.checktimeout, seq)
        except TimeoutError:
            continue
        return CheckResult(ok=True, message=f"echo reply in {rtt * 1000:.1f} ms")
    raise CheckFailed(f"no echo reply ({attempts} x {format_seconds(spec.checktimeout)}s)", failure="timeout")
