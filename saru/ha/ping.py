"""The ping score: Pacemaker's ``pingd`` for the built-in VRRP — upstream reachability lowers priority.

``PingScore(settings, on_change)`` sends one ICMP (or ICMPv6) echo request to every upstream host each
round (every ``settings.interval`` seconds) from raw sockets and waits up to ``settings.timeout`` for
the replies. A host is *unreachable* after ``settings.attempts`` consecutive rounds without a reply and
*reachable* again after one reply; ``penalty`` is ``multiplier x unreachable hosts`` and
``on_change(penalty)`` is called (from the event loop) every time it changes — never for the initial
0, since every host counts as reachable until shown otherwise. A round lasts at least ``timeout``: with
``timeout > interval`` the rounds follow each other without a pause.

Replies are matched on identifier (this process: pid & 0xffff), sequence number of the current round,
the source address and a random token in the payload of this instance, so several scores, or a
VIPcheck, in one process never take each other's replies. The kernel filters the sockets down to echo
replies (``ICMP_FILTER`` / ``ICMP6_FILTER``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
import struct
from collections.abc import Callable

from saru import net
from saru.model import PingSettings

LOGGER = logging.getLogger("saru.ha.ping")

SOL_RAW = 255
ICMP_FILTER = 1
ICMP6_FILTER = 1


class PingError(Exception):
    """The ping score cannot run (bad host address, no permission for raw sockets)."""


def _open_v4() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sock.setblocking(False)
    sock.setsockopt(SOL_RAW, ICMP_FILTER, struct.pack("I", ~(1 << net.ICMP_ECHO_REPLY) & 0xFFFFFFFF))
    return sock


def _open_v6() -> socket.socket:
    sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    sock.setblocking(False)
    words = [0xFFFFFFFF] * 8
    words[net.ICMP6_ECHO_REPLY >> 5] &= ~(1 << (net.ICMP6_ECHO_REPLY & 31)) & 0xFFFFFFFF
    sock.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, struct.pack("8I", *words))
    return sock


class PingScore:
    """Upstream reachability as a priority penalty; ``start()`` / ``stop()`` on the running loop."""

    def __init__(self, settings: PingSettings, on_change: Callable[[int], None]) -> None:
        self.settings = settings
        self.on_change = on_change
        self.hosts: list[tuple[str, ipaddress.IPv4Address | ipaddress.IPv6Address, int]] = []
        for host in settings.hosts:
            text, _, scope = host.partition("%")
            try:
                address = ipaddress.ip_address(text)
            except ValueError as exc:
                raise PingError(f"{host!r} is not an IP address") from exc
            try:
                scope_id = socket.if_nametoindex(scope) if scope else 0
            except OSError as exc:
                raise PingError(f"{host!r}: no interface named {scope!r}") from exc
            self.hosts.append((host, address, scope_id))
        self.ident = os.getpid() & 0xFFFF
        self.token = os.urandom(8)
        self.rounds = 0  # completed rounds (on_change is called with this already counting its round)
        self.lost: dict[str, int] = {host: 0 for host, _, _ in self.hosts}
        self._down: set[str] = set()
        self._seq = int.from_bytes(os.urandom(2), "big")
        self._answered: set[str] = set()
        self._sockets: dict[int, socket.socket] = {}
        self._task: asyncio.Task[None] | None = None
        self._round_done = asyncio.Event()
        self._all_in = asyncio.Event()

    # -- public -----------------------------------------------------------------------------------

    @property
    def penalty(self) -> int:
        return self.settings.multiplier * len(self._down)

    def unreachable(self) -> list[str]:
        """Hosts counted as unreachable now, in configuration order."""
        return [host for host, _, _ in self.hosts if host in self._down]

    async def start(self) -> None:
        """Open the raw sockets and start the rounds (the first one right away)."""
        if self._task is not None:
            return
        loop = asyncio.get_running_loop()
        try:
            for version in sorted({address.version for _, address, _ in self.hosts}):
                sock = _open_v4() if version == 4 else _open_v6()
                self._sockets[version] = sock
                loop.add_reader(sock.fileno(), self._readable, sock, version)
        except PermissionError as exc:
            self._close(loop)
            raise PingError("the ping score needs raw ICMP sockets: run as root (CAP_NET_RAW)") from exc
        except OSError as exc:
            self._close(loop)
            raise PingError(f"cannot open an ICMP socket: {exc.strerror}") from exc
        self._task = asyncio.create_task(self._run(), name="ping-score")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._close(asyncio.get_running_loop())

    async def wait_round(self) -> int:
        """Wait for the end of the next round; returns the number of completed rounds."""
        self._round_done.clear()
        await self._round_done.wait()
        return self.rounds

    # -- rounds -----------------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await self._round()
            self._round_done.set()
            await asyncio.sleep(max(0.0, started + self.settings.interval - loop.time()))

    async def _round(self) -> None:
        self._seq = (self._seq + 1) & 0xFFFF
        self._answered = set()
        for host, address, scope in self.hosts:
            self._send(host, address, scope)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.timeout
        self._all_in.clear()
        while len(self._answered) < len(self.hosts) and loop.time() < deadline:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_in.wait(), deadline - loop.time())
        self.rounds += 1
        self._score(set(self._answered))

    def _score(self, answered: set[str]) -> None:
        before = self.penalty
        for host, _, _ in self.hosts:
            if host in answered:
                self.lost[host] = 0
                if host in self._down:
                    self._down.discard(host)
                    LOGGER.info("ping: %s answers again", host)
            else:
                self.lost[host] += 1
                if self.lost[host] >= self.settings.attempts and host not in self._down:
                    self._down.add(host)
                    LOGGER.info("ping: %s unreachable (%d rounds without a reply)", host, self.lost[host])
        if self.penalty != before:
            try:
                self.on_change(self.penalty)
            except Exception:  # a broken callback must not stop the score
                LOGGER.exception("ping score callback failed")

    def _send(self, host: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address, scope: int) -> None:
        payload = self.token + struct.pack("!I", self._seq)
        sock = self._sockets[address.version]
        try:
            if address.version == 4:
                sock.sendto(net.icmp_echo(self.ident, self._seq, payload), (str(address), 0))
            else:
                sock.sendto(net.icmpv6_echo(self.ident, self._seq, payload), (str(address), 0, 0, scope))
        except OSError as exc:  # no route, link down: this round is lost for the host
            LOGGER.debug("ping %s: %s", host, exc.strerror)

    def _readable(self, sock: socket.socket, version: int) -> None:
        for _ in range(64):
            try:
                data, source = sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            echo = (net.parse_ipv4_icmp_echo(data) if version == 4
                    else net.parse_icmpv6_echo(data, source[0]))
            if echo is None or echo.ident != self.ident or echo.seq != self._seq:
                continue
            if echo.type not in (net.ICMP_ECHO_REPLY, net.ICMP6_ECHO_REPLY):
                continue
            if echo.payload[:8] != self.token:
                continue
            source_ip = ipaddress.ip_address(echo.source)
            for host, address, _ in self.hosts:
                if address == source_ip:
                    self._answered.add(host)
            if len(self._answered) >= len(self.hosts):
                self._all_in.set()

    def _close(self, loop: asyncio.AbstractEventLoop) -> None:
        for sock in self._sockets.values():
            with contextlib.suppress(ValueError, OSError):
                loop.remove_reader(sock.fileno())
            sock.close()
        self._sockets.clear()
