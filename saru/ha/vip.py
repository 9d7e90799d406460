"""The floating IP: configure the VIPs on the director's interface and announce them.

``FloatingIP(interface, vips)`` adds each VIP with its configured prefix length to the interface, like
IPaddr2's ``ip addr add VIP/prefix dev IF`` (IPv4 with its broadcast address, IPv6 with ``nodad`` so it
is usable at once), through netlink (pyroute2's asyncio API: nothing blocks the event loop), then
announces it:

* IPv4: a gratuitous ARP (request, sender = target = VIP, from the interface's MAC to broadcast) sent
  from an ``AF_PACKET`` socket — ``arping -U`` from Debian's arping 2.23 puts the primary address in
  the sender field, which is not a gratuitous ARP and updates nobody's cache;
* IPv6: an unsolicited neighbour advertisement (override flag, target link-layer address option) to
  ff02::1 with hop limit 255.

``announce()`` sends the first burst (one frame per VIP) before it returns and repeats it
``garp_repeat - 1`` more times every ``garp_interval`` seconds in a background task, so the caller can
program its table right after the first announcement; ``wait_announced()`` awaits the repeats and
``remove()`` cancels them (a VIP that was given up is never announced again). ``add()`` of a VIP that
is already present is a no-op followed by the announcement; ``remove()`` deletes the configured VIPs
that are present (whatever their prefix length) and nothing else.

Errors are ``VIPError`` with a sentence an operator can act on. ``interface_mac(interface)`` reads the
MAC with an ioctl (sysfs would show the root namespace's interfaces to a thread that entered another).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import ipaddress
import logging
import socket
import struct
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from saru import net
from saru.ha import packets

if TYPE_CHECKING:  # pyroute2 is imported where it is used (it has no type information: Any to mypy)
    from pyroute2 import AsyncIPRoute

LOGGER = logging.getLogger("saru.ha.vip")

SIOCGIFHWADDR = 0x8927
ARPHRD_ETHER = 1
IFA_F_NODAD = 0x02

VIP = ipaddress.IPv4Interface | ipaddress.IPv6Interface


class VIPError(Exception):
    """The floating IP could not be configured, removed or announced (the message says why)."""


def interface_mac(interface: str) -> str:
    """The Ethernet address of ``interface`` in this thread's network namespace; ``VIPError`` if none."""
    if not interface or len(interface) > 15:
        raise VIPError(f"{interface!r} is not a network interface name")
    request = struct.pack("16s16x", interface.encode())
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            reply = fcntl.ioctl(sock.fileno(), SIOCGIFHWADDR, request)
    except OSError as exc:
        if exc.errno == errno.ENODEV:
            raise VIPError(f"no network interface named {interface!r}") from exc
        raise VIPError(f"cannot read the MAC address of {interface}: {exc.strerror}") from exc
    family = struct.unpack_from("H", reply, 16)[0]
    if family != ARPHRD_ETHER:
        raise VIPError(f"{interface} is not an Ethernet interface (hardware type {family}); "
                       "gratuitous ARP and neighbour discovery need one")
    return net.mac_str(reply[18:24])


def interface_index(interface: str) -> int:
    """The index of ``interface`` in this thread's namespace; ``VIPError`` if it does not exist."""
    try:
        return socket.if_nametoindex(interface)
    except (OSError, ValueError) as exc:
        raise VIPError(f"no network interface named {interface!r}") from exc


def parse_vips(vips: Iterable[str | VIP]) -> tuple[VIP, ...]:
    """``"10.0.0.1/24"`` or interfaces -> interfaces; no prefix means a host prefix (/32, /128)."""
    parsed: list[VIP] = []
    for vip in vips:
        if isinstance(vip, ipaddress.IPv4Interface | ipaddress.IPv6Interface):
            parsed.append(vip)
            continue
        try:
            parsed.append(ipaddress.ip_interface(str(vip).strip()))
        except ValueError as exc:
            raise VIPError(f"{vip!r} is not an address with an optional /prefix") from exc
    return tuple(parsed)


def open_packet_socket(interface: str, protocol: int = 0) -> socket.socket:
    """A non-blocking ``AF_PACKET``/``SOCK_RAW`` socket bound to ``interface`` (``protocol`` 0: send only).

    The socket is made with protocol 0 and given ``protocol`` by ``bind``: a socket made with a protocol
    has its receive hook registered at once, and binding it then waits for an RCU grace period
    (``synchronize_net``) to move the hook — milliseconds, on the failover path.
    """
    try:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    except PermissionError as exc:
        raise VIPError("sending raw Ethernet frames needs root (CAP_NET_RAW)") from exc
    except OSError as exc:
        raise VIPError(f"cannot open a packet socket: {exc.strerror}") from exc
    try:
        sock.setblocking(False)
        sock.bind((interface, protocol))  # Python converts sll_protocol to network order itself
    except OSError as exc:
        sock.close()
        if exc.errno == errno.ENODEV:
            raise VIPError(f"no network interface named {interface!r}") from exc
        raise VIPError(f"cannot bind a packet socket to {interface}: {exc.strerror}") from exc
    return sock


class FloatingIP:
    """The VIPs of one interface: ``add()``, ``announce()``, ``remove()``, ``present()`` (all async)."""

    def __init__(self, interface: str, vips: Sequence[str | VIP], garp_repeat: int = 5,
                 garp_interval: float = 0.1) -> None:
        if not interface or len(interface) > 15 or "/" in interface:
            raise VIPError(f"{interface!r} is not a network interface name")
        if garp_repeat < 0:
            raise VIPError(f"garp_repeat must be 0 or more, not {garp_repeat}")
        if garp_interval <= 0:
            raise VIPError(f"garp_interval must be positive, not {garp_interval}")
        self.interface = interface
        self.vips = parse_vips(vips)
        self.garp_repeat = garp_repeat
        self.garp_interval = garp_interval
        self.announcements = 0  # frames sent since this object was made (all VIPs, all bursts)
        self._repeats: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"FloatingIP({self.interface!r}, {[str(v) for v in self.vips]!r})"

    @property
    def addresses(self) -> tuple[str, ...]:
        return tuple(str(v.ip) for v in self.vips)

    # -- netlink ----------------------------------------------------------------------------------

    async def _current(self, ipr: AsyncIPRoute, index: int) -> dict[str, int]:
        """Addresses on the interface right now -> prefix length."""
        found: dict[str, int] = {}
        async for msg in await ipr.addr("dump", index=index):
            address = msg.get("local") or msg.get("address")  # IFA_LOCAL: ours even on point-to-point
            if address and msg.get("index", index) == index:
                found[str(ipaddress.ip_address(address))] = msg["prefixlen"]
        return found

    async def present(self) -> list[str]:
        """The configured VIPs (bare addresses) that are on the interface now, in configuration order."""
        from pyroute2 import AsyncIPRoute

        index = interface_index(self.interface)
        async with AsyncIPRoute() as ipr:
            current = await self._current(ipr, index)
        return [address for address in self.addresses if address in current]

    async def add(self, announce: bool = True) -> None:
        """Configure the VIPs that are missing (idempotent), then ``announce()`` all of them (unless
        ``announce`` is false: the caller announces once it is ready to serve)."""
        from pyroute2 import AsyncIPRoute
        from pyroute2.netlink.exceptions import NetlinkError

        index = interface_index(self.interface)
        async with AsyncIPRoute() as ipr:
            current = await self._current(ipr, index)
            for vip in self.vips:
                address = str(vip.ip)
                if address in current:
                    continue
                kwargs: dict[str, int | str] = {"index": index, "address": address, "prefixlen": vip.network.prefixlen}
                if vip.version == 4:
                    kwargs["family"] = socket.AF_INET
                    if vip.network.prefixlen < 31:
                        kwargs["broadcast"] = str(vip.network.broadcast_address)
                else:
                    kwargs["family"] = socket.AF_INET6
                    kwargs["flags"] = IFA_F_NODAD
                try:
                    await ipr.addr("add", **kwargs)
                except NetlinkError as exc:
                    if exc.code != errno.EEXIST:  # added meanwhile by someone else: it is there, fine
                        raise VIPError(f"cannot add {vip} to {self.interface}: {exc.args[-1]}") from exc
        if announce:
            await self.announce()

    async def remove(self) -> None:
        """Delete the configured VIPs that are present (idempotent); pending announcements are cancelled."""
        from pyroute2 import AsyncIPRoute
        from pyroute2.netlink.exceptions import NetlinkError

        await self._cancel_repeats()
        index = interface_index(self.interface)
        async with AsyncIPRoute() as ipr:
            current = await self._current(ipr, index)
            for vip in self.vips:
                address = str(vip.ip)
                if address not in current:
                    continue
                family = socket.AF_INET if vip.version == 4 else socket.AF_INET6
                try:
                    await ipr.addr("del", index=index, address=address, prefixlen=current[address], family=family)
                except NetlinkError as exc:
                    if exc.code not in (errno.EADDRNOTAVAIL, errno.ENOENT, errno.ESRCH):
                        raise VIPError(f"cannot remove {address} from {self.interface}: {exc.args[-1]}") from exc

    # -- announcements ----------------------------------------------------------------------------

    def frames(self) -> list[bytes]:
        """One announcement per VIP: gratuitous ARP (IPv4) or unsolicited NA (IPv6), from our MAC."""
        mac = interface_mac(self.interface)
        return [packets.gratuitous_arp(mac, str(v.ip)) if v.version == 4 else packets.unsolicited_na(mac, str(v.ip))
                for v in self.vips]

    async def announce(self) -> None:
        """Send the first burst now, schedule ``garp_repeat - 1`` more every ``garp_interval``; return after
        the first burst (``wait_announced()`` waits for the rest). ``garp_repeat = 0`` announces nothing."""
        await self._cancel_repeats()
        if self.garp_repeat == 0 or not self.vips:
            return
        frames = self.frames()
        sock = open_packet_socket(self.interface)
        try:
            self._send(sock, frames)
        except BaseException:
            sock.close()
            raise
        if self.garp_repeat == 1:
            sock.close()
            return
        self._repeats = asyncio.create_task(self._repeat(sock, frames), name=f"garp-{self.interface}")

    async def wait_announced(self) -> None:
        """Wait until the scheduled repeats of the last ``announce()`` have been sent (or cancelled)."""
        task = self._repeats
        if task is not None and not task.done():
            await asyncio.wait([task])  # a cancelled repeat is "done"; our own cancellation propagates

    def _send(self, sock: socket.socket, frames: list[bytes]) -> None:
        for frame in frames:
            try:
                sock.send(frame)
            except OSError as exc:
                raise VIPError(f"cannot announce on {self.interface}: {exc.strerror}") from exc
            self.announcements += 1

    async def _repeat(self, sock: socket.socket, frames: list[bytes]) -> None:
        try:
            loop = asyncio.get_running_loop()
            start = loop.time()
            for burst in range(1, self.garp_repeat):
                await asyncio.sleep(max(0.0, start + burst * self.garp_interval - loop.time()))
                try:
                    self._send(sock, frames)
                except VIPError as exc:  # the link went down meanwhile: the next burst may make it
                    LOGGER.warning("%s", exc)
        finally:
            sock.close()

    async def _cancel_repeats(self) -> None:
        task, self._repeats = self._repeats, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
