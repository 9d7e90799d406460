"""The one interface every data plane implements.

A data plane holds a ``Table``. The daemon reads it (``read``), computes the operations that turn
it into the desired table (``saru.diff``), and hands them to ``apply`` in one call, which the data
plane executes atomically where it can. Statistics are read separately so that status queries
never disturb the table.

Drift: ``verify()`` compares the table the plane last wrote (or adopted) with what the kernel holds
now, as cheaply as the plane can (``Verification``); ``repair(ops)`` re-applies after a drift,
rebuilding whatever of the plane's own objects the kernel lost. The daemon's drift watcher
(``saru.daemon.driftwatch``) calls them; the comparison itself is ``saru.drift``.

Listening sockets across restarts: a plane that listens itself (the proxy) takes the socket of a
virtual from ``listen_sockets`` (a ``SocketStore``, e.g. systemd's file descriptor store, set by the
daemon) before binding a new one, and hands every socket it binds to it; the store's names are
``listener_name``'s.
"""

from __future__ import annotations

import abc
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from saru.model import Op, ServiceKey, Table


class DataplaneError(Exception):
    """An operation could not be applied; the table is unchanged."""


@dataclass(frozen=True)
class Capabilities:
    """What a data plane can do, so that config validation can refuse what it cannot."""

    name: str
    forwards: frozenset[str]
    schedulers: frozenset[str]
    protocols: frozenset[str] = frozenset({"tcp", "udp"})
    ipv6: bool = True
    persistence: bool = True
    thresholds: bool = False
    ops: bool = True  # one-packet scheduling of UDP
    #: IPVS cannot change the port in direct routing / tunnelling: gate and ipip reals get the
    #: virtual's port. A proxy connects to the configured port instead.
    rewrites_gate_ports: bool = True
    #: what the plane cannot do and what to use instead (appended to refusal messages)
    notes: str = ""
    #: NAT (masq) virtuals forwarded without connection tracking (nft ``[nft] nat = "stateless"``):
    #: no persistence, no firewall marks, no local reals, a real in one such virtual only
    stateless_nat: bool = False
    #: devices of the flowtable offloading established NAT flows (nft ``[nft] flowtable``; empty: none)
    flowtable: tuple[str, ...] = ()


@dataclass(frozen=True)
class DestStats:
    """Counters of one destination."""

    active_connections: int = 0
    inactive_connections: int = 0
    connections: int = 0  # total since creation
    bytes_in: int = 0
    bytes_out: int = 0


@dataclass(frozen=True)
class ConnEntry:
    """One connection the plane tracks (``ipvsadm -L -c``): who, through which virtual, to which real."""

    protocol: str  # "TCP" / "UDP"
    client: tuple[str, int]
    virtual: tuple[str, int]
    dest: tuple[str, int]
    state: str  # ipvsadm: ESTABLISHED, SYN_RECV, FIN_WAIT, CLOSE_WAIT, TIME_WAIT, CLOSE, UDP, NONE (templates)
    expires: float  # seconds until the entry expires


@dataclass
class ServiceStats:
    """Counters of one service; ``packets_in``/``packets_out`` where the plane counts packets (nftables:
    incoming; the userspace proxy relays streams and counts none)."""

    connections: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    dests: dict[tuple[str, int], DestStats] = field(default_factory=dict)
    packets_in: int = 0
    packets_out: int = 0


@dataclass(frozen=True)
class Verification:
    """What ``verify()`` found: the table the plane applied and the one the kernel holds now.

    ``problems``: damage the table model cannot show (an nftables chain that lost its rules);
    ``earlier``: (applied, kernel) pairs the plane noticed while writing since the last verify
    (a table update that found the kernel changed; it has been repaired by that update);
    ``how``: what the check cost ("generation": one netlink round trip; "listing"/"dump": the table
    was read back from the kernel).
    """

    applied: Table
    kernel: Table
    problems: tuple[str, ...] = ()
    earlier: tuple[tuple[Table, Table], ...] = ()
    how: str = ""


def listener_name(key: ServiceKey) -> str:
    """The name of a virtual's listening socket in a ``SocketStore``: ``tcp-127.0.0.1-80``."""
    return f"{key.protocol}-{key.address}-{key.port}"


class SocketStore(Protocol):
    """Listening sockets kept across restarts of the daemon, by ``listener_name``."""

    def take(self, name: str) -> socket.socket | None:
        """The kept socket of that name (once), or None."""

    def keep(self, name: str, sock: socket.socket) -> None:
        """Keep a newly bound socket (a copy of it: the caller still owns ``sock``)."""

    def drop(self, name: str) -> None:
        """The virtual is gone: stop keeping its socket."""


class Dataplane(abc.ABC):
    """A forwarding table that Saru programs.

    ``expire_nodest_conn`` (saru.toml ``[director]``, set before ``start``): True ends the
    connections of a real the moment it leaves the table (removed, or the whole service deleted) —
    IPVS's ``net.ipv4.vs.expire_nodest_conn=1``; False lets them run to their end; None (not written)
    is False, except that the IPVS plane leaves the kernel's sysctl as it is. A real kept at weight 0
    (drained, or down with ``quiescent=yes``) keeps its connections either way."""

    capabilities: Capabilities
    expire_nodest_conn: bool | None = None
    listen_sockets: SocketStore | None = None

    @abc.abstractmethod
    async def start(self) -> None:
        """Acquire resources (sockets, netlink handles). Does not change the table."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release resources. Does not clean the table (the daemon applies the removal ops first)."""

    @abc.abstractmethod
    async def read(self) -> Table:
        """The table as currently programmed."""

    @abc.abstractmethod
    async def apply(self, ops: Sequence[Op]) -> None:
        """Apply ops in order, atomically where possible; raise DataplaneError on failure."""

    async def verify(self) -> Verification | None:
        """Compare what this plane applied with what the kernel holds now; None when nothing but
        Saru can change the table (the proxy's table lives in Saru's own memory) or when nothing
        was applied or adopted yet."""
        return None

    async def repair(self, ops: Sequence[Op]) -> None:
        """After drift: apply ``ops`` (computed against the kernel's table of the last ``verify``)
        and rebuild what the plane's own objects lost; raise DataplaneError on failure."""
        await self.apply(ops)

    async def stats(self) -> dict[ServiceKey, ServiceStats]:
        """Per-service and per-destination counters (empty when the plane has none)."""
        return {}

    async def zero(self, key: ServiceKey | None = None) -> None:
        """Reset the counters of one service, or of all (``ipvsadm -Z``)."""
        raise DataplaneError(f"the {self.capabilities.name} data plane cannot zero its counters")

    async def listening_sockets(self) -> dict[str, int]:
        """The descriptors of the sockets this plane listens on, by ``listener_name`` (a graceful
        hand-over passes them to the next daemon); empty for a plane that does not listen itself."""
        return {}

    async def connections(self) -> list[ConnEntry]:
        """The connection entries (``ipvsadm -L -c``); empty when the plane keeps none."""
        raise DataplaneError(f"the {self.capabilities.name} data plane does not list connections")
