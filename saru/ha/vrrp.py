"""VRRPv3 (RFC 5798) without I/O: the advertisement codec and the router state machine.

Codec: ``encode_advert(advert, src, dst)`` builds the VRRP payload (the kernel adds the IP header) with
the checksum over the IPv4 or IPv6 pseudo-header; ``decode_advert(payload, src, dst)`` checks it and
raises ``VRRPError`` (``.kind`` names the counter: ``malformed``, ``bad_checksum``, ``bad_version``...).

``Machine`` is RFC 5798 section 6 with time passed in (``now``, monotonic seconds). Every method returns
the actions the driver must carry out, in order: ``SendAdvert(priority)``, ``Transition(old, new, reason,
cause)`` (``reason`` is the sentence for people, ``cause`` the ``Cause`` for code),
``WantMaster()`` (ask the before-master veto, answer with ``confirm_master``/``veto_master``) and, last,
``SetTimer(deadline)`` (the one timer to arm; ``None``: none). Saru's additions to the RFC:

* ``preempt=False`` (the default, the guide's "no fail-back"): a backup ignores a live master's adverts
  only when that master *degraded*: it advertises less than our own priority and less than the highest
  priority we saw it advertise. A healthy node coming back never takes the VIP; a sick master hands over.
  Priority 254 is the takeover priority and never raises that peak (configure 1-253 to be judged).
* ``preempt=True``: RFC preempt mode, after ``preempt_delay`` seconds of seeing a lower-priority master.
* ``resign(hold)``: priority-0 advert, backup, no mastership for ``hold`` seconds. ``takeover()``: become
  master now and advertise 254 until the other master has been quiet for one master-down interval.
* ``counters``: ``other_master_seen`` (adverts received while master: split brain) and ``transitions``.
  A master that yields to another master of *equal* priority (the tie goes to the higher address) says
  so with ``Cause.EQUAL_PRIORITY``: two masters that both had the right to be one, a split brain's mark.
"""

from __future__ import annotations

import enum
import ipaddress
import socket
import struct
from dataclasses import dataclass

from saru.net import checksum, pseudo_header

IPPROTO_VRRP = 112
GROUP_V4 = "224.0.0.18"
GROUP_V6 = "ff02::12"
TAKEOVER_PRIORITY = 254
_HEADER = struct.Struct("!BBBBHH")  # version|type, vrid, priority, count, rsvd|max adver int, checksum


class VRRPError(ValueError):
    """A packet that is not a valid VRRPv3 advertisement; ``kind`` is the counter it belongs to."""

    def __init__(self, reason: str, kind: str = "malformed") -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


@dataclass(frozen=True)
class Advert:
    """One VRRPv3 advertisement: what is on the wire after the IP header."""

    vrid: int
    priority: int
    interval_cs: int  # Max Adver Interval, centiseconds (12 bits)
    addresses: tuple[str, ...]
    version: int = 3
    type: int = 1

    @property
    def interval(self) -> float:
        """The advertisement interval in seconds."""
        return self.interval_cs / 100


def _pack(address: str) -> tuple[int, bytes]:
    """(family, packed bytes) of an address string; ``VRRPError`` if it is not one."""
    try:
        if ":" in address:
            return 6, socket.inet_pton(socket.AF_INET6, address)
        return 4, socket.inet_pton(socket.AF_INET, address)
    except (OSError, ValueError) as exc:
        raise VRRPError(f"{address!r} is not an IP address") from exc


def _pseudo_header(src: str, dst: str, length: int) -> tuple[int, bytes]:
    """(family, the pseudo-header of a ``length``-byte VRRP payload); ``VRRPError`` for bad addresses."""
    (family, s), (dfamily, d) = _pack(src), _pack(dst)
    if family != dfamily:
        raise VRRPError(f"source {src} and destination {dst} are not of one address family")
    return family, pseudo_header(s, d, IPPROTO_VRRP, length)


def encode_advert(advert: Advert, src: str, dst: str) -> bytes:
    """The VRRP payload of ``advert`` sent from ``src`` to ``dst``, checksum filled in."""
    if not 1 <= advert.vrid <= 255:
        raise VRRPError(f"virtual router id {advert.vrid} is not 1-255")
    if not 0 <= advert.priority <= 255:
        raise VRRPError(f"priority {advert.priority} is not 0-255")
    if not 1 <= advert.interval_cs <= 0xFFF:
        raise VRRPError(f"advert interval {advert.interval_cs} cs is not 1-4095")
    if len(advert.addresses) > 255:
        raise VRRPError(f"{len(advert.addresses)} addresses do not fit one advert (255 at most)")
    family, _ = _pseudo_header(src, dst, 0)
    packed = []
    for text in advert.addresses:
        address = ipaddress.ip_address(text)
        if address.version != family:
            raise VRRPError(f"address {text} is not IPv{family} like the advert's source {src}")
        packed.append(address.packed)
    body = _HEADER.pack((advert.version << 4) | advert.type, advert.vrid, advert.priority, len(packed),
                        advert.interval_cs & 0xFFF, 0) + b"".join(packed)
    _, pseudo = _pseudo_header(src, dst, len(body))
    return body[:6] + struct.pack("!H", checksum(pseudo + body)) + body[8:]


def decode_advert(payload: bytes, src: str, dst: str) -> Advert:
    """Parse and check the VRRP payload received from ``src`` for ``dst``; ``VRRPError`` says why not."""
    if len(payload) < _HEADER.size:
        raise VRRPError(f"{len(payload)} bytes is shorter than a VRRP header (8)")
    vt, vrid, priority, count, interval, _ = _HEADER.unpack_from(payload)
    version, kind = vt >> 4, vt & 0x0F
    if version != 3:
        raise VRRPError(f"VRRP version {version}, only version 3 is spoken", "bad_version")
    if kind != 1:
        raise VRRPError(f"VRRP packet type {kind} is not an advertisement (1)")
    if vrid == 0:
        raise VRRPError("virtual router id 0 is invalid")
    family, pseudo = _pseudo_header(src, dst, len(payload))
    size = 4 if family == 4 else 16
    if len(payload) != _HEADER.size + count * size:
        raise VRRPError(f"{len(payload)} bytes do not match {count} IPv{family} address(es) "
                        f"({_HEADER.size + count * size} bytes expected)")
    interval &= 0xFFF
    if interval == 0:
        raise VRRPError("advert interval 0")
    if checksum(pseudo + payload) != 0:
        raise VRRPError(f"bad checksum 0x{struct.unpack_from('!H', payload, 6)[0]:04x}", "bad_checksum")
    chunks = (payload[i:i + size] for i in range(_HEADER.size, len(payload), size))
    if family == 4:
        addresses = tuple(socket.inet_ntoa(chunk) for chunk in chunks)
    else:  # ipaddress, not inet_ntop: glibc writes ::1:0 as ::0.1.0.0
        addresses = tuple(str(ipaddress.IPv6Address(chunk)) for chunk in chunks)
    return Advert(vrid, priority, interval, addresses, version, kind)


# --------------------------------------------------------------------------------------------------
# the state machine
# --------------------------------------------------------------------------------------------------


class State(enum.Enum):
    """RFC 5798 router states."""

    INIT = "init"
    BACKUP = "backup"
    MASTER = "master"


class Cause(enum.Enum):
    """Why a ``Transition`` happened."""

    STARTUP = "startup"  # INIT -> BACKUP
    SHUTDOWN = "shutdown"  # -> INIT
    MASTER_DOWN = "master-down"  # BACKUP -> MASTER: the Master_Down_Timer ran out (and the veto allowed it)
    TAKEOVER = "takeover"  # BACKUP -> MASTER on request
    RESIGNED = "resigned"  # MASTER -> BACKUP on request
    HIGHER_PRIORITY = "higher-priority"  # MASTER -> BACKUP: another master advertises more
    EQUAL_PRIORITY = "equal-priority"  # MASTER -> BACKUP: another master, same priority, higher address


@dataclass(frozen=True)
class SendAdvert:
    """Send one advertisement now with this priority."""

    priority: int


@dataclass(frozen=True)
class Transition:
    """The state changed: ``reason`` says why in a sentence, ``cause`` as a value."""

    old: State
    new: State
    reason: str
    cause: Cause


@dataclass(frozen=True)
class WantMaster:
    """The machine would become master: ask the veto, then call ``confirm_master`` or ``veto_master``."""

    reason: str


@dataclass(frozen=True)
class SetTimer:
    """Arm the single timer for ``deadline`` (replacing the previous one); ``None`` disarms it."""

    deadline: float | None


Action = SendAdvert | Transition | WantMaster | SetTimer


def skew_time(priority: int, interval: float) -> float:
    """RFC 5798 Skew_Time: ((256 - priority) x Master_Adver_Interval) / 256."""
    return (256 - priority) * interval / 256


def master_down_interval(priority: int, interval: float) -> float:
    """RFC 5798 Master_Down_Interval: 3 x Master_Adver_Interval + Skew_Time."""
    return 3 * interval + skew_time(priority, interval)


def early_veto_lead(master_down: float, interval: float, veto_time: float) -> float:
    """How long before the Master_Down_Timer runs out a backup starts asking its veto (VIPcheck).

    The veto takes ``veto_time`` (nobody answering is the common case, and the whole wait); asked
    that long before the timer runs out, its answer is ready when the timer fires, and the failover
    does not wait for it. It is never asked before two advertisements in a row were missed
    (``master_down - 2 x interval``): one late advert on a busy host must not start a probe. An
    advert that arrives meanwhile cancels it. 0: ask when the timer fires.
    """
    return max(0.0, min(veto_time, master_down - 2 * interval))


class Machine:
    """One virtual router (RFC 5798 section 6), pure: the driver passes ``now`` and executes the actions."""

    def __init__(self, *, vrid: int, priority: int, advert_interval: float, primary: str,
                 preempt: bool = False, preempt_delay: float = 0.0) -> None:
        if not 1 <= vrid <= 255:
            raise ValueError(f"virtual router id {vrid} is not 1-255")
        if not 0.01 <= advert_interval <= 40.95:
            raise ValueError(f"advert interval {advert_interval} s is not 0.01-40.95")
        self.vrid = vrid
        self.priority = _clamp(priority)
        self.interval_cs = max(1, min(0xFFF, round(advert_interval * 100)))
        self.primary = ipaddress.ip_address(primary)
        self.preempt = preempt
        self.preempt_delay = preempt_delay
        self.state = State.INIT
        self.master_adver_interval = self.advert_interval
        self.master_address: str | None = None
        self.counters = {"other_master_seen": 0, "transitions": 0}
        self._down: float | None = None  # Master_Down_Timer deadline (backup)
        self._adver: float | None = None  # Adver_Timer deadline (master)
        self._down_reason = ""
        self._peaks: dict[str, int] = {}  # highest non-takeover priority seen per advertising router
        self._preempt_since: float | None = None
        self._asking = False  # WantMaster emitted, no answer yet
        self._hold_until = 0.0
        self._takeover_quiet: float | None = None  # takeover ends when this passes without other adverts

    # -- derived values ---------------------------------------------------------------------------

    @property
    def advert_interval(self) -> float:
        """Our own advertisement interval (seconds)."""
        return self.interval_cs / 100

    @property
    def advertised_priority(self) -> int:
        """What we advertise and compare with: 254 during a takeover, else the effective priority."""
        return TAKEOVER_PRIORITY if self._takeover_quiet is not None else self.priority

    @property
    def skew(self) -> float:
        return skew_time(self.priority, self.master_adver_interval)

    @property
    def master_down(self) -> float:
        return master_down_interval(self.priority, self.master_adver_interval)

    @property
    def deadline(self) -> float | None:
        """When ``timer(now)`` must be called next."""
        if self.state is State.MASTER:
            return self._adver
        if self.state is State.BACKUP and not self._asking:
            return self._down
        return None

    # -- events -----------------------------------------------------------------------------------

    def start(self, now: float) -> list[Action]:
        """INIT -> BACKUP with the Master_Down_Timer running (priority 255 owners do not exist here)."""
        if self.state is not State.INIT:
            return self._done([])
        self.master_adver_interval = self.advert_interval
        self._peaks.clear()  # what a peer advertised before we stopped says nothing about it now
        self._arm_down(now, self.master_down, f"no advertisement within {self.master_down:.3f} s of startup")
        return self._done([self._go(State.BACKUP, "startup", Cause.STARTUP)])

    def receive(self, advert: Advert, src: str, now: float) -> list[Action]:
        """A valid advertisement for our VRID from another router (``src`` = its primary address)."""
        if self.state is State.INIT or advert.vrid != self.vrid:
            return self._done([])
        if self.state is State.BACKUP:
            return self._done(self._backup_receive(advert, src, now))
        return self._done(self._master_receive(advert, src, now))

    def timer(self, now: float) -> list[Action]:
        """The timer armed by the last ``SetTimer`` fired (early or stale calls are harmless)."""
        actions: list[Action] = []
        if self.state is State.MASTER and self._adver is not None and now >= self._adver:
            if self._takeover_quiet is not None and now >= self._takeover_quiet:
                self._takeover_quiet = None  # the other master has been quiet for a master-down interval
            actions.append(SendAdvert(self.advertised_priority))
            self._adver = now + self.advert_interval
        elif self.state is State.BACKUP and not self._asking and self._down is not None and now >= self._down:
            if now < self._hold_until:
                self._down = self._hold_until
            else:
                self._asking = True
                actions.append(WantMaster(self._down_reason))
        return self._done(actions)

    def confirm_master(self, now: float) -> list[Action]:
        """The veto allowed mastership: BACKUP -> MASTER, first advert now."""
        if self.state is not State.BACKUP or not self._asking:
            return self._done([])
        self._asking = False
        return self._done(self._become_master(now, self._down_reason, Cause.MASTER_DOWN))

    def veto_master(self, now: float) -> list[Action]:
        """The veto refused mastership: stay backup, ask again after one master-down interval (for
        the same reason: a retry does not grow the reason)."""
        if self.state is not State.BACKUP or not self._asking:
            return self._done([])
        self._asking = False
        self._arm_down(now, self.master_down, self._down_reason)
        return self._done([])

    def set_priority(self, priority: int, now: float) -> list[Action]:
        """New effective priority (clamped to 1-254); a master advertises the change at once."""
        new = _clamp(priority)
        if new == self.priority:
            return self._done([])
        self.priority = new
        actions: list[Action] = []
        if self.state is State.MASTER:
            actions.append(SendAdvert(self.advertised_priority))
            self._adver = now + self.advert_interval
        return self._done(actions)

    def shutdown(self, now: float) -> list[Action]:
        """Stop: a master sends one priority-0 advert; the machine returns to INIT."""
        actions: list[Action] = []
        if self.state is State.MASTER:
            actions.append(SendAdvert(0))
        if self.state is not State.INIT:
            actions.append(self._go(State.INIT, "shutdown", Cause.SHUTDOWN))
        self._down = self._adver = self._takeover_quiet = None
        self._asking = False
        return self._done(actions)

    def resign(self, hold: float, now: float) -> list[Action]:
        """Hand over: priority-0 advert, BACKUP, refuse mastership for ``hold`` seconds."""
        if self.state is State.INIT:
            return self._done([])
        self._hold_until = now + max(0.0, hold)
        self._takeover_quiet = None
        self._asking = False
        actions: list[Action] = []
        if self.state is State.MASTER:
            actions += [SendAdvert(0), self._go(State.BACKUP, f"resigned for {hold:g} s", Cause.RESIGNED)]
            self._adver = None
            self.master_address = None
        self.master_adver_interval = self.advert_interval
        self._arm_down(now, max(self.master_down, hold), "no advertisement after the resign hold")
        return self._done(actions)

    def takeover(self, now: float) -> list[Action]:
        """Become master now (no veto: the peer still holds the VIP) and advertise 254 until it is quiet."""
        if self.state is State.INIT:
            return self._done([])
        self._hold_until = 0.0
        self._takeover_quiet = now + master_down_interval(self.priority, self.advert_interval)
        if self.state is State.MASTER:
            self._adver = now + self.advert_interval
            return self._done([SendAdvert(TAKEOVER_PRIORITY)])
        self._asking = False
        return self._done(self._become_master(now, "takeover requested", Cause.TAKEOVER))

    # -- internals ----------------------------------------------------------------------------------

    def _backup_receive(self, advert: Advert, src: str, now: float) -> list[Action]:
        if advert.priority == 0:
            self._arm_down(now, self.skew, f"master {src} resigned (priority 0)")
            self._forget(src)
            self._asking = False
            if self.master_address == src:
                self.master_address = None
            return []
        peak = self._peaks.get(src)
        if advert.priority != TAKEOVER_PRIORITY:
            self._peaks[src] = max(peak or 0, advert.priority)
        mine = self.priority
        if self.preempt:
            if advert.priority < mine:
                if self._preempt_since is None:
                    self._preempt_since = now
                if now - self._preempt_since >= self.preempt_delay:
                    return self._ignore(src, f"preempting master {src} of lower priority {advert.priority}")
            else:
                self._preempt_since = None
        elif advert.priority < mine and peak is not None and advert.priority < peak:
            return self._ignore(src, f"master {src} degraded to priority {advert.priority} (from {peak})")
        self.master_adver_interval = advert.interval
        self.master_address = src
        self._asking = False
        self._arm_down(now, self.master_down,
                       f"no advertisement from master {src} for {self.master_down:.3f} s")
        return []

    def _ignore(self, src: str, reason: str) -> list[Action]:
        """Discard the advert: the Master_Down_Timer keeps running and will make us master."""
        self._down_reason = reason
        return []

    def _master_receive(self, advert: Advert, src: str, now: float) -> list[Action]:
        if advert.priority == 0:  # the other master resigned: make sure everyone hears us now
            self._adver = now + self.advert_interval
            return [SendAdvert(self.advertised_priority)]
        self.counters["other_master_seen"] += 1
        if self._takeover_quiet is not None:
            self._takeover_quiet = now + master_down_interval(self.priority, self.advert_interval)
        mine = self.advertised_priority
        tie_lost = advert.priority == mine and _address_key(ipaddress.ip_address(src)) > _address_key(self.primary)
        if advert.priority > mine or tie_lost:
            if advert.priority > mine:
                why, cause = f"master {src} has higher priority {advert.priority}", Cause.HIGHER_PRIORITY
            else:
                why, cause = f"master {src} has equal priority {mine} and a higher address", Cause.EQUAL_PRIORITY
            self._adver = None
            self._takeover_quiet = None
            self.master_adver_interval = advert.interval
            self.master_address = src
            self._peaks.clear()
            if advert.priority != TAKEOVER_PRIORITY:
                self._peaks[src] = advert.priority
            self._arm_down(now, self.master_down, f"no advertisement from master {src} for "
                                                  f"{self.master_down:.3f} s")
            return [self._go(State.BACKUP, why, cause)]
        self._adver = now + self.advert_interval  # a lower master: answer at once so it yields sooner
        return [SendAdvert(mine)]

    def _become_master(self, now: float, reason: str, cause: Cause) -> list[Action]:
        self._down = None
        self._preempt_since = None
        self._peaks.clear()
        self.master_address = str(self.primary)
        self._adver = now + self.advert_interval
        return [SendAdvert(self.advertised_priority), self._go(State.MASTER, reason, cause)]

    def _forget(self, src: str) -> None:
        self._peaks.pop(src, None)

    def _arm_down(self, now: float, delay: float, reason: str) -> None:
        self._down = now + delay
        self._down_reason = reason

    def _go(self, new: State, reason: str, cause: Cause) -> Transition:
        old, self.state = self.state, new
        self.counters["transitions"] += 1
        if new is not State.BACKUP:
            self._preempt_since = None
        if new is State.INIT:
            self.master_address = None
        return Transition(old, new, reason, cause)

    def _done(self, actions: list[Action]) -> list[Action]:
        actions.append(SetTimer(self.deadline))
        return actions


def _address_key(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> tuple[int, int]:
    """Orders addresses numerically (RFC 5798's tie-break; one family at a time in practice)."""
    return address.version, int(address)


def _clamp(priority: int) -> int:
    return max(1, min(254, int(priority)))
