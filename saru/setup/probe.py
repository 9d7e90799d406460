"""Active probes of ``saru doctor``, sent and received as raw Ethernet frames (AF_PACKET, root).

* ``arp_answers(interface, address)``: every MAC answering for ``address`` during the timeout (ARP probe
  or neighbour solicitation, then ICMP echo: ``saru.ha.vipcheck.probe_all``) — a DR real server without
  ``arp_ignore`` answers for the VIP on its loopback, the classic LVS-DR misconfiguration.
* ``exchange(...)``: send one TCP SYN (or ICMP echo request) in a frame addressed to a chosen MAC, with a
  chosen IPv4 source, and return the first reply packet (its Ethernet source tells who sent it back).
  Used to see whether a real server accepts packets for the VIP (DR) and whether its replies to a
  client address come back through this director (NAT). A SYN-ACK to a source that is not ours is
  answered with a RST so the real forgets the half-open connection at once.

Frames are built by ``saru.setup.frames``. Blocking, bounded by ``timeout``; nothing here runs on import.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import random
import select
import socket
import time
from dataclasses import dataclass

from saru.setup import frames

PACKET_OUTGOING = 4


class ProbeError(Exception):
    """The probe could not be sent (no such interface, not root)."""


@dataclass(frozen=True)
class Answer:
    """A host that answered ARP for an address."""

    address: str
    mac: str


def _socket(interface: str, ethertype: int) -> socket.socket:
    try:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ethertype))
        sock.bind((interface, ethertype))
    except PermissionError as exc:
        raise ProbeError("active probes need root (raw packet sockets)") from exc
    except OSError as exc:
        raise ProbeError(f"cannot open a packet socket on {interface}: {exc.strerror or exc}") from exc
    sock.setblocking(False)
    return sock


def _frames(sock: socket.socket, deadline: float) -> list[bytes]:
    """Incoming frames (not our own outgoing ones) until the deadline or until one batch arrived."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return []
    ready, _, _ = select.select([sock], [], [], remaining)
    got = []
    while ready:
        try:
            data, address = sock.recvfrom(65535)
        except BlockingIOError:
            break
        if address[2] != PACKET_OUTGOING:
            got.append(data)
    return got


def interface_mac(interface: str) -> str:
    try:
        with open(f"/sys/class/net/{interface}/address") as fh:
            return fh.read().strip().lower()
    except OSError:
        from saru.setup import netinfo

        mac = netinfo.link_mac(interface)
        if mac is None:
            raise ProbeError(f"no interface {interface!r}") from None
        return mac


def arp_answers(interface: str, address: str, timeout: float = 0.5, first: bool = False) -> list[Answer]:
    """Every MAC (ours excepted) answering for ``address`` on ``interface`` within ``timeout`` seconds:
    ARP probe / neighbour solicitation, then an ICMP echo (``saru.ha.vipcheck.probe_all``); with
    ``first``, only the first answer, as soon as it arrives (``probe_vip``)."""
    from saru.ha.vip import VIPError
    from saru.ha.vipcheck import probe_all, probe_vip

    async def ask() -> list[object]:
        if first:
            answer = await probe_vip(interface, address, timeout)
            return [answer] if answer is not None else []
        return list(await probe_all(interface, address, timeout))

    try:
        answers = asyncio.run(ask())
    except PermissionError as exc:
        raise ProbeError("active probes need root (raw packet sockets)") from exc
    except (VIPError, OSError, ValueError) as exc:
        raise ProbeError(f"cannot probe {address} on {interface}: {exc}") from exc
    seen: dict[str, Answer] = {}
    for answer in answers:
        mac = str(getattr(answer, "mac", "")).lower()
        seen.setdefault(mac, Answer(address, mac))
    return list(seen.values())


def resolve_mac(interface: str, address: str, timeout: float = 0.5) -> str | None:
    """The MAC of an on-link ``address``: the neighbour table, else an ARP probe / neighbour solicitation,
    else the kernel's own resolution (one datagram to the discard port, then the neighbour table again)."""
    from saru.setup import netinfo

    known = netinfo.neighbours(interface).get(address)
    if known:
        return known
    try:
        answers = arp_answers(interface, address, timeout, first=True)
    except ProbeError:
        answers = []
    if answers:
        return answers[0].mac
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
            sock.sendto(b"", (address, 9))
    except OSError:
        return None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        known = netinfo.neighbours(interface).get(address)
        if known:
            return known
        time.sleep(0.02)  # polling the neighbour table with a deadline (netlink has no cheap wait here)
    return None


def exchange(interface: str, dst_mac: str, source: str, target: str, port: int | None,
             timeout: float = 0.5) -> frames.Reply | None:
    """Send a TCP SYN to ``target:port`` (ICMP/ICMPv6 echo when ``port`` is None) from ``source`` in a frame
    for ``dst_mac``; return the first reply from ``target`` to ``source`` seen on ``interface``."""
    mac = interface_mac(interface)
    ident = random.randrange(1, 0xFFFF)
    sport = 40000 + random.randrange(20000)
    seq = int.from_bytes(os.urandom(4), "big")
    v6 = ":" in target
    ethertype = frames.ETH_P_IPV6 if v6 else frames.ETH_P_IP
    if port is None:
        protocol, message = frames.echo_request(source, target, ident)
    else:
        protocol, message = 6, frames.tcp(source, target, sport, port, seq, 0, frames.TCP_SYN)
    packet = frames.ip_packet(source, target, protocol, message, ident)
    src_ip, dst_ip = ipaddress.ip_address(source), ipaddress.ip_address(target)
    with _socket(interface, ethertype) as sock:
        deadline = time.monotonic() + timeout
        sock.send(frames.ethernet(dst_mac, mac, ethertype, packet))
        while time.monotonic() < deadline:
            for frame in _frames(sock, deadline):
                reply = frames.parse_ip(frame)
                if (reply is None or ipaddress.ip_address(reply.src) != dst_ip
                        or ipaddress.ip_address(reply.dst) != src_ip):
                    continue
                if port is None and reply.kind == "echo-reply" and reply.ident == ident:
                    return reply
                if port is not None and reply.kind in ("syn-ack", "rst") and (reply.sport, reply.dport) == (
                        port, sport) and reply.ack == (seq + 1) & 0xFFFFFFFF:
                    if reply.kind == "syn-ack":  # let the real drop its half-open connection now
                        rst = frames.tcp(source, target, sport, port, seq + 1, 0, frames.TCP_RST)
                        sock.send(frames.ethernet(reply.src_mac, mac, ethertype,
                                                  frames.ip_packet(source, target, 6, rst, ident + 1)))
                    return reply
    return None
