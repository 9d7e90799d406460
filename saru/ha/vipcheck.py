"""VIPcheck: does any other host already answer on the floating IP? Asked before taking it.

The Linux-HA Japan ``VIPcheck`` agent refuses to start the VIP resource while something answers on the
address; Saru asks the same question on its failover path, so it is quick (default 0.2 s) and quiet:

1. a link-layer probe that no cache learns from: for IPv4 an ARP probe (RFC 5227: sender protocol
   address 0.0.0.0), for IPv6 a neighbour solicitation from :: to the solicited-node group (duplicate
   address detection, RFC 4862 — the holder answers to ff02::1); repeated once at a quarter of the time;
2. at half of the time, if nothing answered yet, an ICMP echo to the VIP through the interface (this
   one goes the ordinary way: it also finds a VIP reachable through a router).

Answers are read from ``AF_PACKET`` sockets on the interface (ARP, and ICMP/ICMPv6 only, by a BPF
filter), so the answerer's MAC is known. ``probe_vip`` returns the first ``Answer(address, mac,
method)`` that is neither ours nor in ``ignore_macs`` (the VRRP peer: a peer whose daemon was killed
keeps its VIP configured, and VRRP already decided it is gone), or ``None`` when nobody answered within
``timeout``. ``probe_all`` waits the whole ``timeout`` and returns every MAC that answered (``saru
doctor`` uses it to find real servers that answer ARP for the VIP in DR mode). ``neighbour_mac`` reads
the kernel's neighbour table. ``method`` is ``"ARP"``, ``"NDP"`` or ``"ping"``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import ipaddress
import logging
import os
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from saru import net
from saru.ha import packets
from saru.ha.vip import VIPError, interface_index, interface_mac, open_packet_socket

LOGGER = logging.getLogger("saru.ha.vipcheck")

PACKET_OUTGOING = 4
SO_ATTACH_FILTER = 26
# neighbour states that carry no usable link-layer address
NUD_INCOMPLETE, NUD_FAILED, NUD_NOARP = 0x01, 0x20, 0x40


class VIPCheckError(VIPError):
    """The probe itself could not be made (no such interface, no permission, link down)."""


@dataclass(frozen=True)
class Answer:
    """A host that answered for ``address``: its MAC and how we learnt it (``ARP``, ``NDP``, ``ping``)."""

    address: str
    mac: str
    method: str


async def probe_vip(interface: str, address: str, timeout: float = 0.2,
                    ignore_macs: Iterable[str] = ()) -> Answer | None:
    """The first host other than us and ``ignore_macs`` answering on ``address`` within ``timeout``."""
    answers = await _Probe(interface, address, timeout, ignore_macs, first_only=True).run()
    return answers[0] if answers else None


async def probe_all(interface: str, address: str, timeout: float = 0.2) -> list[Answer]:
    """Every MAC (ours excepted) that answered an ARP probe / NS / echo for ``address`` within ``timeout``."""
    return await _Probe(interface, address, timeout, (), first_only=False).run()


async def neighbour_mac(interface: str, address: str) -> str | None:
    """The MAC the kernel's neighbour table holds for ``address`` on ``interface`` (``None``: unknown)."""
    from pyroute2 import AsyncIPRoute

    wanted = ipaddress.ip_address(address.split("%", 1)[0])
    index = interface_index(interface)
    family = socket.AF_INET if wanted.version == 4 else socket.AF_INET6
    async with AsyncIPRoute() as ipr:
        async for msg in await ipr.neigh("dump", ifindex=index, family=family):
            dst, lladdr = msg.get("dst"), msg.get("lladdr")
            if dst is None or lladdr is None or ipaddress.ip_address(dst) != wanted:
                continue
            if msg["state"] & (NUD_INCOMPLETE | NUD_FAILED | NUD_NOARP) or lladdr == "00:00:00:00:00:00":
                continue
            return str(lladdr).lower()
    return None


def _attach_filter(sock: socket.socket, program: bytes) -> None:
    buffer = ctypes.create_string_buffer(program)
    fprog = struct.pack("HL", len(program) // 8, ctypes.addressof(buffer))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)  # the kernel copies the program


def _close_all(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        sock.close()


class _Probe:
    """One VIPcheck: sockets opened in ``run()``, closed (off the event loop) as it returns."""

    def __init__(self, interface: str, address: str, timeout: float, ignore_macs: Iterable[str],
                 first_only: bool) -> None:
        try:
            self.address = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError as exc:
            raise VIPCheckError(f"{address!r} is not an IP address") from exc
        if timeout <= 0:
            raise VIPCheckError(f"the VIPcheck timeout must be positive, not {timeout}")
        try:
            self.ignore = {net.normal_mac(m) for m in ignore_macs}
        except net.PacketError as exc:
            raise VIPCheckError(str(exc)) from exc
        self.interface = interface
        self.timeout = timeout
        self.first_only = first_only
        self.ident = os.getpid() & 0xFFFF
        self.text = str(self.address)
        self.answers: dict[str, Answer] = {}
        self.done: asyncio.Future[None] | None = None
        self.sockets: list[socket.socket] = []
        self.mac = ""

    async def run(self) -> list[Answer]:
        loop = asyncio.get_running_loop()
        self.done = loop.create_future()
        try:
            self.mac = interface_mac(self.interface)
        except VIPError as exc:
            raise VIPCheckError(str(exc)) from exc
        try:
            probe_sock, echo_sock = self._open(loop)
            probe = (packets.arp_probe(self.mac, self.text) if self.address.version == 4
                     else packets.neighbour_solicitation(self.mac, self.text))
            start = loop.time()
            for fraction, step in ((0.0, "probe"), (0.25, "probe"), (0.5, "echo"), (1.0, "end")):
                delay = start + fraction * self.timeout - loop.time()
                if delay > 0:
                    await asyncio.wait([self.done], timeout=delay)
                if self.done.done():
                    break
                if step == "probe":
                    self._send_probe(probe_sock, probe)
                elif step == "echo":
                    self._send_echo(echo_sock)
        finally:
            sockets, self.sockets = self.sockets, []
            for sock in sockets:
                with contextlib.suppress(ValueError, OSError):
                    loop.remove_reader(sock.fileno())
            # closing a packet socket with a protocol hook waits for an RCU grace period (~10-25 ms
            # measured): the answer should not wait for it
            try:
                loop.run_in_executor(None, _close_all, sockets)
            except RuntimeError:  # the loop's executor is shut down: close here
                _close_all(sockets)
        return list(self.answers.values())

    def _open(self, loop: asyncio.AbstractEventLoop) -> tuple[socket.socket, socket.socket]:
        v4 = self.address.version == 4
        try:
            if v4:
                probe_sock = self._listen(loop, open_packet_socket(self.interface, packets.ETH_P_ARP))
                self._listen(loop, open_packet_socket(self.interface, packets.ETH_P_IP), packets.icmp_only_filter(4))
            else:
                probe_sock = self._listen(loop, open_packet_socket(self.interface, packets.ETH_P_IPV6),
                                          packets.icmp_only_filter(6))
            family, proto = (socket.AF_INET, socket.IPPROTO_ICMP) if v4 else (socket.AF_INET6, socket.IPPROTO_ICMPV6)
            echo_sock = socket.socket(family, socket.SOCK_RAW, proto)
            self.sockets.append(echo_sock)
            echo_sock.setblocking(False)
            echo_sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.interface.encode())
            if not v4:
                echo_sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 64)
                # we never read it: let it receive nothing (ICMP6_FILTER blocks every type)
                echo_sock.setsockopt(socket.IPPROTO_ICMPV6, 1, b"\xff" * 32)
            else:
                echo_sock.setsockopt(255, 1, struct.pack("I", 0xFFFFFFFF))  # SOL_RAW, ICMP_FILTER: block all
        except VIPError as exc:
            raise VIPCheckError(str(exc)) from exc
        except OSError as exc:
            raise VIPCheckError(f"cannot open the VIPcheck sockets on {self.interface}: {exc.strerror}") from exc
        return probe_sock, echo_sock

    def _listen(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, program: bytes | None = None
                ) -> socket.socket:
        self.sockets.append(sock)
        if program is not None:
            _attach_filter(sock, program)
        loop.add_reader(sock.fileno(), self._readable, sock)
        return sock

    def _send_probe(self, sock: socket.socket, frame: bytes) -> None:
        try:
            sock.send(frame)
        except OSError as exc:
            raise VIPCheckError(f"cannot send the VIPcheck probe on {self.interface}: {exc.strerror}") from exc

    def _send_echo(self, sock: socket.socket) -> None:
        seq = int.from_bytes(os.urandom(2), "big")
        try:
            if self.address.version == 4:
                sock.sendto(net.icmp_echo(self.ident, seq, b"saru-vipcheck"), (self.text, 0))
            else:
                scope = socket.if_nametoindex(self.interface) if self.address.is_link_local else 0
                sock.sendto(net.icmpv6_echo(self.ident, seq, b"saru-vipcheck"), (self.text, 0, 0, scope))
        except OSError as exc:  # no route, link down: the link-layer probe already spoke for the link
            if exc.errno not in (errno.EAGAIN, errno.ENOBUFS):
                LOGGER.debug("VIPcheck echo to %s: %s", self.text, exc.strerror)

    def _readable(self, sock: socket.socket) -> None:
        for _ in range(64):  # bounded per wake-up; the rest waits for the next one
            try:
                frame, meta = sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if meta[2] == PACKET_OUTGOING:
                continue
            found = self._classify(frame)
            if found is not None:
                self._found(*found)

    def _classify(self, frame: bytes) -> tuple[str, str] | None:
        """``(mac, method)`` if ``frame`` says somebody holds the address."""
        if len(frame) < 14:
            return None
        ethertype = struct.unpack_from("!H", frame, 12)[0]
        if ethertype == packets.ETH_P_ARP:
            arp = packets.parse_arp(frame)
            if arp is not None and arp.spa == self.text and arp.op in (packets.ARP_REQUEST, packets.ARP_REPLY):
                return arp.sha, "ARP"  # a reply, or the holder's own announcement
        elif ethertype == packets.ETH_P_IP:
            got = packets.parse_ipv4_icmp_frame(frame)
            if got is not None and self._our_reply(got[1], net.ICMP_ECHO_REPLY):
                return got[0], "ping"
        elif ethertype == packets.ETH_P_IPV6:
            nd = packets.parse_nd(frame)
            if nd is not None:
                if (nd.type == packets.ND_NEIGHBOR_ADVERT and nd.hop_limit == 255
                        and ipaddress.ip_address(nd.target) == self.address):
                    return nd.lladdr or nd.eth_src, "NDP"
                return None
            got = packets.parse_ipv6_echo_frame(frame)
            if got is not None and self._our_reply(got[1], net.ICMP6_ECHO_REPLY):
                return got[0], "ping"
        return None

    def _our_reply(self, echo: net.Echo, kind: int) -> bool:
        return echo.type == kind and echo.ident == self.ident and ipaddress.ip_address(echo.source) == self.address

    def _found(self, mac: str, method: str) -> None:
        mac = mac.lower()
        if mac == self.mac or mac in self.ignore or mac in self.answers:
            return
        self.answers[mac] = Answer(self.text, mac, method)
        if self.first_only and self.done is not None and not self.done.done():
            self.done.set_result(None)
