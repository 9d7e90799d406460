"""VRRPv3 on the wire: raw IPPROTO 112 sockets and asyncio timers driving ``saru.ha.vrrp.Machine``.

``VRRPInstance(settings, primary=..., on_transition=..., before_master=...)`` speaks one virtual router
on ``settings.interface``: multicast to 224.0.0.18 / ff02::12 (the group is joined on the interface) or
unicast to ``settings.unicast_peers``. It carries the IPv4 VIPs in its adverts, or the IPv6 ones when
there are no IPv4 VIPs; it never adds addresses itself (``saru.ha.node`` does, on ``on_transition``,
which receives each ``saru.ha.vrrp.Transition`` in order: old and new ``State``, reason, ``Cause``).

Sending: TTL / hop limit 255, multicast loop off, the source pinned to the primary address with
IP_PKTINFO / IPV6_PKTINFO (the checksum covers it). Receiving: TTL / hop limit must be 255, our own
adverts are ignored, unicast mode accepts only the configured peers, and every rejected packet is
counted in ``counters`` (never raised). Timers use ``loop.call_at`` on the loop's monotonic clock: one
armed timer at a time, so a 0.1 s advert interval costs one ``sendmsg`` per tick and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import ipaddress
import logging
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, assert_never

from saru.events.throttle import Kind, Throttle, default_interval, lasting
from saru.ha.vrrp import (
    GROUP_V4,
    GROUP_V6,
    IPPROTO_VRRP,
    Action,
    Advert,
    Machine,
    SendAdvert,
    SetTimer,
    State,
    Transition,
    VRRPError,
    WantMaster,
    decode_advert,
    early_veto_lead,
    encode_advert,
)

if TYPE_CHECKING:
    from saru.model import HASettings

LOGGER = logging.getLogger("saru.ha.vrrp")

IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)  # Linux; Python 3.11 does not export it
SIOCGIFADDR = 0x8915
COUNTERS = ("adverts_sent", "adverts_received", "bad_checksum", "bad_ttl", "bad_source", "bad_destination",
            "bad_version", "malformed", "other_vrid", "address_mismatch", "send_errors", "other_master_seen",
            "transitions")

_Received = tuple[str, str | None, int | None, bytes]  # source, destination, TTL / hop limit, VRRP payload
_Packet = tuple[str, bytes, list[tuple[int, int, bytes]], tuple[str, int] | tuple[str, int, int, int]]
TransitionCallback = Callable[[Transition], Awaitable[None]]
VetoCallback = Callable[[], Awaitable["bool | None"]]


class VRRPSocketError(OSError):
    """The instance cannot speak VRRP on this interface (no such interface, no address, no privilege)."""


class VRRPInstance:
    """One VRRPv3 virtual router on one interface (see the module docstring)."""

    def __init__(self, settings: HASettings, *, primary: str | None = None,
                 on_transition: TransitionCallback | None = None,
                 before_master: VetoCallback | None = None) -> None:
        v4 = tuple(str(v.ip) for v in settings.vips if v.version == 4)
        v6 = tuple(str(v.ip) for v in settings.vips if v.version == 6)
        self.settings = settings
        self.family = 4 if v4 or not v6 else 6
        self.addresses = v4 if self.family == 4 else v6
        self.interface = settings.interface
        self._source = primary or settings.unicast_source  # None: the interface's, found at each start
        self._primary: str | None = self._source
        self._on_transition = on_transition
        self._before_master = before_master
        self._counters = dict.fromkeys(COUNTERS, 0)
        self._sources: set[str] = set()
        self._machine: Machine | None = None
        self._sock: socket.socket | None = None
        self._ifindex = 0
        self._destinations: tuple[str, ...] = ()
        self._peers: frozenset[str] = frozenset()
        self._group = GROUP_V4 if self.family == 4 else GROUP_V6
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._asking: asyncio.Task[None] | None = None
        # the veto asked ahead of the Master_Down_Timer (vrrp.early_veto_lead) and its start timer
        self._early: asyncio.Task[bool | None] | None = None
        self._early_timer: asyncio.TimerHandle | None = None
        self._veto_time = settings.vipcheck_timeout if settings.vipcheck else 0.0
        self._events: asyncio.Queue[Transition] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        interval = default_interval()
        self._warned = Throttle(interval)  # problems by kind (malformed adverts, send errors …)
        self._vetoes = Throttle(interval)  # the vetoed mastership
        self._pending_priority: int | None = None
        self._cache: dict[tuple[int, int], list[_Packet]] = {}  # (priority, interval) -> what to send

    # -- public API ---------------------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._machine.state if self._machine else State.INIT

    @property
    def master_address(self) -> str | None:
        """Who is master as far as we know: our primary address, the advertising master's, or None."""
        return self._machine.master_address if self._machine else None

    @property
    def primary(self) -> str | None:
        """The address our adverts come from (known after ``start``)."""
        return self._primary

    @property
    def effective_priority(self) -> int:
        if self._machine:
            return self._machine.priority
        return self._pending_priority if self._pending_priority is not None else self.settings.priority

    @property
    def sources(self) -> frozenset[str]:
        """Every address a valid advert of our VRID came from since this instance was created."""
        return frozenset(self._sources)

    @property
    def machine(self) -> Machine | None:
        """The state machine (read-only use: learned interval, timers) once started."""
        return self._machine

    @property
    def counters(self) -> dict[str, int]:
        counts = dict(self._counters)
        if self._machine:
            for key, value in self._machine.counters.items():
                counts[key] += value
        return counts

    async def start(self) -> None:
        """Open the socket (in the calling thread's network namespace), then enter BACKUP."""
        if self._machine is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._open()
        assert self._primary is not None and self._sock is not None
        try:
            self._machine = Machine(vrid=self.settings.virtual_router_id, priority=self.effective_priority,
                                    advert_interval=self.settings.advert_interval, primary=self._primary,
                                    preempt=self.settings.preempt, preempt_delay=self.settings.preempt_delay)
        except ValueError:
            self._sock.close()
            self._sock = None
            raise
        self._worker = asyncio.create_task(self._deliver(), name=f"vrrp-{self.settings.virtual_router_id}-events")
        self._loop.add_reader(self._sock.fileno(), self._readable)
        LOGGER.info("VRRP %d on %s: speaking from %s to %s, priority %d, advert every %.2f s",
                    self.settings.virtual_router_id, self.interface, self._primary,
                    ", ".join(self._destinations), self.effective_priority, self.settings.advert_interval)
        self._apply(self._machine.start(self._loop.time()))

    async def stop(self, graceful: bool = True) -> None:
        """Leave: a graceful master sends a priority-0 advert so the backup takes over within skew time."""
        machine, loop = self._machine, self._loop
        if machine is None or loop is None:
            return
        actions = machine.shutdown(loop.time())
        if not graceful:
            actions = [a for a in actions if not isinstance(a, SendAdvert)]
        self._apply(actions)
        self._cancel_timer()
        if self._asking is not None:
            self._asking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._asking
            self._asking = None
        if self._sock is not None:
            loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
        if self._worker is not None:
            await self._events.join()
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        for key, value in machine.counters.items():  # keep the totals across a restart
            self._counters[key] += value
        self._machine = None

    def set_priority(self, effective: int) -> None:
        """The effective priority (configured minus the ping penalty), clamped to 1-254."""
        if self._machine is None or self._loop is None:
            self._pending_priority = effective
            return
        self._apply(self._machine.set_priority(effective, self._loop.time()))

    def resign(self, hold: float) -> None:
        """Hand the VIP over now (priority-0 advert) and refuse mastership for ``hold`` seconds."""
        if self._machine is not None and self._loop is not None:
            self._apply(self._machine.resign(hold, self._loop.time()))

    def takeover(self) -> None:
        """Become master now, advertising 254 until the other master has been quiet one master-down interval."""
        if self._machine is not None and self._loop is not None:
            self._apply(self._machine.takeover(self._loop.time()))

    # -- socket -------------------------------------------------------------------------------------

    def _open(self) -> None:
        name = self.interface
        try:
            self._ifindex = socket.if_nametoindex(name)
        except OSError as exc:
            raise VRRPSocketError(f"VRRP: interface {name!r} does not exist here: {exc}") from exc
        self._primary = self._source or interface_address(name, self.family)
        primary = ipaddress.ip_address(self._primary)
        self._primary = str(primary)
        if primary.version != self.family:
            raise VRRPSocketError(f"VRRP: source {self._primary} is not IPv{self.family} like the VIPs")
        peers = tuple(str(ipaddress.ip_address(p)) for p in self.settings.unicast_peers)
        wrong = [p for p in peers if ipaddress.ip_address(p).version != self.family]
        if wrong:
            raise VRRPSocketError(f"VRRP: unicast peer(s) {', '.join(wrong)} are not IPv{self.family} "
                                  "like the VIPs this instance advertises")
        self._peers = frozenset(peers)
        self._destinations = peers or (self._group,)
        family = socket.AF_INET if self.family == 4 else socket.AF_INET6
        try:
            sock = socket.socket(family, socket.SOCK_RAW, IPPROTO_VRRP)
        except PermissionError as exc:
            raise VRRPSocketError("VRRP needs CAP_NET_RAW (run as root or grant the capability)") from exc
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, name.encode())
            if self.family == 4:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 255)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
                mreqn = struct.pack("=4s4si", socket.inet_aton(GROUP_V4), primary.packed, self._ifindex)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, mreqn)
                if not peers:
                    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)
            else:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, self._ifindex)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
                if not peers:
                    mreq = struct.pack("=16si", socket.inet_pton(socket.AF_INET6, GROUP_V6), self._ifindex)
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
        except OSError as exc:
            sock.close()
            raise VRRPSocketError(f"VRRP: cannot set up the socket on {name}: {exc}") from exc
        self._sock = sock
        self._cache.clear()

    def _send(self, priority: int) -> None:
        sock, machine = self._sock, self._machine
        if sock is None or machine is None:
            return
        for dst, payload, ancillary, address in self._packets(machine, priority):
            try:
                sock.sendmsg([payload], ancillary, 0, address)
                self._counters["adverts_sent"] += 1
            except OSError as exc:
                self._counters["send_errors"] += 1
                self._warn("send", "VRRP %d on %s: cannot send an advert to %s: %s",
                           machine.vrid, self.interface, dst, exc)

    def _packets(self, machine: Machine, priority: int) -> list[_Packet]:
        """What to send for ``priority``, built once per priority (a 0.1 s interval re-sends the same bytes)."""
        key = (priority, machine.interval_cs)
        cached = self._cache.get(key)
        if cached is None:
            assert self._primary is not None
            src = ipaddress.ip_address(self._primary)
            advert = Advert(machine.vrid, priority, machine.interval_cs, self.addresses)
            cached = []
            for dst in self._destinations:
                payload = encode_advert(advert, self._primary, dst)
                if self.family == 4:
                    info = struct.pack("=I4s4s", self._ifindex, src.packed, b"\0" * 4)
                    cached.append((dst, payload, [(socket.IPPROTO_IP, IP_PKTINFO, info)], (dst, 0)))
                else:
                    info = struct.pack("=16sI", src.packed, self._ifindex)
                    cached.append((dst, payload, [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, info)],
                                   (dst, 0, 0, self._ifindex)))
            if len(self._cache) > 300:
                self._cache.clear()
            self._cache[key] = cached
        return cached

    def _readable(self) -> None:
        sock = self._sock
        for _ in range(64):  # bounded: a flood cannot starve the loop
            if sock is None:
                return
            packet: _Received | None
            try:
                if self.family == 4:
                    data = sock.recv(4096)
                    packet = _parse_ipv4(data)
                else:
                    data, anc, _flags, addr = sock.recvmsg(4096, socket.CMSG_SPACE(4) + socket.CMSG_SPACE(20))
                    packet = _parse_ipv6(data, anc, addr)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._warn("recv", "VRRP on %s: receive error: %s", self.interface, exc)
                return
            if packet is None:
                self._counters["malformed"] += 1
                continue
            self._packet(*packet)

    def _packet(self, src: str, dst: str | None, ttl: int | None, payload: bytes) -> None:
        machine, loop = self._machine, self._loop
        if machine is None or loop is None or src == self._primary:
            return
        if ttl != 255:
            self._counters["bad_ttl"] += 1
            self._warn("bad_ttl", "VRRP on %s: dropped an advert from %s with TTL/hop limit %s (must be 255)",
                       self.interface, src, ttl)
            return
        if self._peers and src not in self._peers:
            self._counters["bad_source"] += 1
            self._warn("bad_source", "VRRP on %s: dropped an advert from %s, not a configured unicast peer",
                       self.interface, src)
            return
        if not self._peers and dst is not None and dst != self._group:
            self._counters["bad_destination"] += 1
            self._warn("bad_destination", "VRRP on %s: dropped a unicast advert from %s to %s (multicast mode)",
                       self.interface, src, dst)
            return
        try:
            advert = decode_advert(payload, src, dst or self._group)
        except VRRPError as exc:
            self._counters[exc.kind if exc.kind in self._counters else "malformed"] += 1
            self._warn(exc.kind, "VRRP on %s: dropped a packet from %s: %s", self.interface, src, exc.reason,
                       detail=src)  # the same peer's garbage, whatever the bytes: one condition
            return
        if advert.vrid != machine.vrid:
            self._counters["other_vrid"] += 1
            return
        self._counters["adverts_received"] += 1
        self._sources.add(src)
        if advert.priority and sorted(advert.addresses) != sorted(self.addresses):
            self._counters["address_mismatch"] += 1
            self._warn("address_mismatch", "VRRP %d on %s: %s advertises %s, we have %s", machine.vrid,
                       self.interface, src, ", ".join(advert.addresses) or "no address",
                       ", ".join(self.addresses) or "no address")
        self._apply(machine.receive(advert, src, loop.time()))

    # -- actions and timers ---------------------------------------------------------------------------

    def _apply(self, actions: list[Action]) -> None:
        for action in actions:
            match action:
                case SendAdvert():
                    self._send(action.priority)
                case Transition():
                    LOGGER.info("VRRP %d on %s: %s -> %s (%s)", self.settings.virtual_router_id, self.interface,
                                action.old.value, action.new.value, action.reason)
                    self._events.put_nowait(action)
                case WantMaster():
                    if self._asking is None or self._asking.done():
                        early, self._early = self._early, None
                        self._asking = asyncio.create_task(self._ask(action.reason, early))
                case SetTimer():
                    self._arm(action.deadline)
                case _:
                    assert_never(action)

    def _arm(self, deadline: float | None) -> None:
        if deadline == self._timer_at and (self._timer is not None or deadline is None):
            return
        self._cancel_timer()
        if deadline is not None and self._loop is not None:
            self._timer_at = deadline
            self._timer = self._loop.call_at(deadline, self._fire, deadline)
            self._arm_early(deadline)

    def _arm_early(self, deadline: float) -> None:
        """A backup's Master_Down_Timer: start the veto ``early_veto_lead`` before it runs out."""
        machine, loop = self._machine, self._loop
        if self._before_master is None or machine is None or loop is None or machine.state is not State.BACKUP:
            return
        lead = early_veto_lead(machine.master_down, machine.master_adver_interval, self._veto_time)
        if lead > 0:
            self._early_timer = loop.call_at(deadline - lead, self._start_early)

    def _start_early(self) -> None:
        self._early_timer = None
        if self._before_master is not None:
            self._early = asyncio.ensure_future(self._before_master())

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._timer_at = None
        if self._early_timer is not None:
            self._early_timer.cancel()
            self._early_timer = None
        if self._early is not None:  # an advert came (or we stop): the early answer is for nothing
            if self._early.done() and not self._early.cancelled():
                self._early.exception()  # retrieved: a failed early veto that nobody needs is not an error
            self._early.cancel()
            self._early = None

    def _fire(self, deadline: float) -> None:
        self._timer = None
        self._timer_at = None
        if self._machine is not None and self._loop is not None:
            self._apply(self._machine.timer(max(self._loop.time(), deadline)))

    async def _ask(self, reason: str, early: asyncio.Future[bool | None] | None = None) -> None:
        """Ask the veto (or take the answer of the one asked early), then confirm or refuse mastership.

        An early refusal is asked again now: the veto that keeps us backup is always a fresh one."""
        allowed: bool | None = True
        if self._before_master is not None:
            try:
                allowed = await early if early is not None else False
                if allowed is False:  # not asked early, or refused: only a fresh answer keeps us backup
                    allowed = await self._before_master()
            except asyncio.CancelledError:
                raise
            except Exception:  # a broken veto must not keep the VIP down forever
                LOGGER.exception("VRRP on %s: the before-master check failed; becoming master anyway",
                                 self.interface)
        machine, loop = self._machine, self._loop
        if machine is None or loop is None:
            return
        now = time.monotonic()
        if allowed is False:
            decision = self._vetoes.observe("veto", reason, now)
            if decision is not None and decision.kind is Kind.REMINDER:
                LOGGER.warning("VRRP %d on %s: mastership still vetoed (%s): %d vetoes since the last message, "
                               "for %s; staying backup", machine.vrid, self.interface, reason, decision.count,
                               lasting(now - decision.since))
            elif decision is not None:
                LOGGER.warning("VRRP %d on %s: mastership vetoed (%s); staying backup, asking again every "
                               "%.3f s", machine.vrid, self.interface, reason, machine.master_down)
            self._apply(machine.veto_master(loop.time()))
        else:
            decision = self._vetoes.clear("veto", now)
            if decision is not None:
                LOGGER.warning("VRRP %d on %s: mastership no longer vetoed after %d vetoes (%s)", machine.vrid,
                               self.interface, decision.count, lasting(now - decision.since))
            self._apply(machine.confirm_master(loop.time()))

    async def _deliver(self) -> None:
        while True:
            event = await self._events.get()
            try:
                if self._on_transition is not None:
                    await self._on_transition(event)
            except Exception:
                LOGGER.exception("VRRP on %s: the transition handler failed", self.interface)
            finally:
                self._events.task_done()

    def _warn(self, kind: str, message: str, *args: object, detail: str | None = None) -> None:
        """Log a persistent problem when it starts, when it changes (another source, another fault)
        and as a reminder with a count at most once a minute (``saru.events.throttle``): a bad peer
        at 10 adverts/s must not flood the log, nor go unnoticed. ``detail`` says what a change is
        (default: the whole message)."""
        now = time.monotonic()
        text = message % args
        decision = self._warned.observe(kind, text if detail is None else detail, now)
        if decision is None:
            LOGGER.debug("%s", text)
        elif decision.kind is Kind.REMINDER:
            LOGGER.warning("%s (%d times since the last message, for %s)", text, decision.count,
                           lasting(now - decision.since))
        else:
            LOGGER.warning("%s", text)


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


def interface_address(interface: str, family: int) -> str:
    """The primary IPv4 address of ``interface``, or its IPv6 link-local one (RFC 5798 source)."""
    if family == 4:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                reply = fcntl.ioctl(s.fileno(), SIOCGIFADDR, struct.pack("256s", interface.encode()[:15]))
            except OSError as exc:
                raise VRRPSocketError(f"VRRP: {interface} has no IPv4 address to advertise from: {exc}") from exc
        return socket.inet_ntoa(reply[20:24])
    for path in ("/proc/thread-self/net/if_inet6", "/proc/self/net/if_inet6"):
        try:
            with open(path, encoding="ascii") as handle:
                lines = handle.read().splitlines()
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) >= 6 and fields[5] == interface and fields[3] == "20":  # scope link
                return str(ipaddress.IPv6Address(bytes.fromhex(fields[0])))
        break
    raise VRRPSocketError(f"VRRP: {interface} has no IPv6 link-local address to advertise from")


def _parse_ipv4(data: bytes) -> tuple[str, str, int, bytes] | None:
    """(source, destination, TTL, VRRP payload) of a raw IPv4 packet, None if it is not one."""
    if len(data) < 20 or data[0] >> 4 != 4:
        return None
    ihl = (data[0] & 0x0F) * 4
    total = struct.unpack_from("!H", data, 2)[0]
    if ihl < 20 or total < ihl or len(data) < total or data[9] != IPPROTO_VRRP:
        return None
    return socket.inet_ntoa(data[12:16]), socket.inet_ntoa(data[16:20]), data[8], data[ihl:total]


def _parse_ipv6(data: bytes, ancillary: list[tuple[int, int, bytes]],
                addr: tuple[str, int, int, int]) -> _Received | None:
    """(source, destination, hop limit, VRRP payload) from recvmsg on an IPv6 raw socket."""
    hops: int | None = None
    dst: str | None = None
    for level, kind, value in ancillary:
        if level != socket.IPPROTO_IPV6:
            continue
        if kind == socket.IPV6_HOPLIMIT and len(value) >= 4:
            hops = struct.unpack("=i", value[:4])[0]
        elif kind == socket.IPV6_PKTINFO and len(value) >= 16:
            dst = str(ipaddress.IPv6Address(value[:16]))
    if not addr:
        return None
    return addr[0].split("%", 1)[0], dst, hops, data
