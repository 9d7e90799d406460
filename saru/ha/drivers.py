"""What the HA node drives, as protocols, and the factories of the real drivers.

``saru.ha.node.HANode`` speaks VRRP through a ``VRRPDriver`` (``saru.ha.vrrp_socket.VRRPInstance``)
and holds the floating IP through a ``VIPDriver`` (``saru.ha.vip.FloatingIP``); it reads the link
state through ``link_running``. The node is given factories for them (``Drivers``), so its decisions
can be driven without raw sockets or netlink. The real drivers are imported when first made: a
director without ``[ha]`` never loads them.
"""

from __future__ import annotations

import fcntl
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from saru.ha.vrrp import Machine, Transition
from saru.model import HASettings

SIOCGIFFLAGS = 0x8913
IFF_UP = 0x1
IFF_RUNNING = 0x40

TransitionCallback = Callable[[Transition], Awaitable[None]]
VetoCallback = Callable[[], Awaitable["bool | None"]]


class VRRPDriver(Protocol):
    """One VRRP virtual router (see ``saru.ha.vrrp_socket.VRRPInstance``)."""

    @property
    def master_address(self) -> str | None: ...
    @property
    def primary(self) -> str | None: ...
    @property
    def sources(self) -> frozenset[str]: ...
    @property
    def machine(self) -> Machine | None: ...
    @property
    def counters(self) -> dict[str, int]: ...

    async def start(self) -> None: ...
    async def stop(self, graceful: bool = True) -> None: ...
    def set_priority(self, effective: int) -> None: ...
    def resign(self, hold: float) -> None: ...
    def takeover(self) -> None: ...


class VIPDriver(Protocol):
    """The floating IPs of one interface (see ``saru.ha.vip.FloatingIP``)."""

    async def add(self, announce: bool = True) -> None: ...
    async def announce(self) -> None: ...
    async def remove(self) -> None: ...
    async def present(self) -> list[str]: ...


class VRRPFactory(Protocol):
    def __call__(self, settings: HASettings, *, primary: str | None, on_transition: TransitionCallback,
                 before_master: VetoCallback) -> VRRPDriver: ...


def link_running(interface: str) -> bool | None:
    """Whether ``interface`` is up with carrier (None if it does not exist in this namespace)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            reply = fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, struct.pack("256s", interface.encode()[:15]))
        except OSError:
            return None
    flags = struct.unpack_from("H", reply, 16)[0]
    return bool(flags & IFF_UP and flags & IFF_RUNNING)


def vrrp_instance(settings: HASettings, *, primary: str | None, on_transition: TransitionCallback,
                  before_master: VetoCallback) -> VRRPDriver:
    from saru.ha.vrrp_socket import VRRPInstance

    return VRRPInstance(settings, primary=primary, on_transition=on_transition, before_master=before_master)


def floating_ip(settings: HASettings) -> VIPDriver:
    from saru.ha.vip import FloatingIP

    return FloatingIP(settings.interface, [str(v) for v in settings.vips], garp_repeat=settings.garp_repeat,
                      garp_interval=settings.garp_interval)


@dataclass(frozen=True)
class Drivers:
    """The HA node's factories; the defaults are the real raw-socket and netlink drivers."""

    vrrp: VRRPFactory = vrrp_instance
    vip: Callable[[HASettings], VIPDriver] = floating_ip
    link: Callable[[str], bool | None] = link_running
