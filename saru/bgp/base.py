"""What every routing-daemon driver offers the announcer (``saru.daemon.announcer``), and its error.

A driver (one module per routing daemon: ``bird``) configures the daemon for ``[bgp]``, announces or
withdraws each VIP without restarting anything, reports each neighbour's session, and on ``close``
withdraws everything (and stops the daemon when it runs it). Failures raise ``RoutingDaemonError``
with a message for the operator.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, TypedDict

from saru.bgp.decide import Route
from saru.model import BGPSettings

__all__ = ["RoutingDaemon", "RoutingDaemonError", "SessionDoc"]


class RoutingDaemonError(Exception):
    """The routing daemon cannot be started, configured or told (the message says why)."""


class SessionDoc(TypedDict):
    """One neighbour as the status shows it."""

    address: str
    asn: int
    state: str  # BGP's word: Established, Active, Connect, OpenSent…; "unknown" when not known
    info: str  # the routing daemon's own words
    bfd: str | None  # Up, Down, Init…; None when the neighbour has no BFD


class RoutingDaemon(Protocol):
    name: str
    routes: dict[str, Route]
    changed_at: dict[str, float]

    def alive(self) -> bool: ...
    async def start(self) -> None: ...
    async def reconfigure(self, settings: BGPSettings, vips: Sequence[str]) -> None: ...
    async def announce(self, routes: Mapping[str, Route], force: bool = False) -> list[str]: ...
    async def sessions(self) -> list[SessionDoc]: ...
    async def close(self) -> None: ...
