"""The BGP announcer: keeps the routing daemon's announcements in line with what this director can serve.

Started by the lifecycle when saru.toml has ``[bgp]``, after the data plane (every VIP withdrawn
until the first table is applied). Every reconciliation (``Reconciler.listeners``), a change of
readiness, and a periodic tick make it read the table the plane holds and ask ``saru.bgp.decide``
for each VIP's route; the driver (``saru.bgp.bird``) is told only the changes, each logged. A
routing daemon that died is started again (its routes withdrawn meanwhile). A reload with a changed
``[bgp]`` or VIP list reconfigures the routing daemon softly.

``drain`` (``saru drain`` without a real): withdraw every VIP, wait until the plane's counters show
no more traffic for ``quiet`` seconds (the routers sent the flows elsewhere) or ``timeout``, then stop
the daemon. On the way out (``close``) every VIP is withdrawn before the table is cleaned.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypedDict

from saru.bgp import BirdDriver, Route, RoutingDaemon, RoutingDaemonError, SessionDoc, announced_vips, decide, serving
from saru.daemon.journal import Journal
from saru.daemon.reconciler import Reconciler
from saru.daemon.state import Life, Loaded
from saru.dataplane.base import Dataplane, DataplaneError
from saru.events import DaemonEvent
from saru.model import BGPSettings, RealRef
from saru.net.route import is_local

__all__ = ["Announcer", "BGPDoc", "DrainAnswer", "RouteDoc"]

LOGGER = logging.getLogger("saru")
TICK = 1.0  # seconds between checks without an event (routing daemon alive, readiness)
RESTART_DELAY = 2.0  # seconds before a routing daemon that died is started again


class RouteDoc(TypedDict):
    vip: str
    state: Route  # up (announced), down (announced with down_med), withdrawn
    med: int | None
    since: float | None


class BGPDoc(TypedDict):
    """``status``' ``bgp`` part: the routing daemon, each neighbour's session, each VIP's route."""

    daemon: str
    managed: bool
    running: bool
    asn: int
    router_id: str
    draining: bool
    error: str | None
    neighbors: list[SessionDoc]
    routes: list[RouteDoc]


class DrainAnswer(TypedDict):
    ok: bool
    withdrawn: list[str]
    timeout: float
    quiet: float


DriverFactory = Callable[[BGPSettings, tuple[str, ...]], RoutingDaemon]


def bird_factory(control_path: Path) -> DriverFactory:
    """BIRD drivers whose files live next to Saru's control socket ``control_path``."""
    def make(settings: BGPSettings, vips: tuple[str, ...]) -> RoutingDaemon:
        return BirdDriver(settings, vips, control_path.parent, stem=control_path.stem)
    return make


class Announcer:
    def __init__(self, settings: BGPSettings, loaded: Loaded, dataplane: Dataplane, reconciler: Reconciler,
                 life: Life, journal: Journal, factory: DriverFactory,
                 health: Callable[[], Mapping[RealRef, bool | None]] = dict) -> None:
        self.settings = settings
        self._health = health
        self._loaded, self._dataplane, self._reconciler = loaded, dataplane, reconciler
        self._life, self._journal = life, journal
        self.vips = announced_vips(settings, loaded.config)
        self.driver = factory(settings, self.vips)
        self.draining = False
        self.error: str | None = None
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._drain_task: asyncio.Task[None] | None = None
        reconciler.listeners.append(self.poke)

    def poke(self) -> None:
        self._dirty.set()

    async def start(self) -> None:
        """Start the routing daemon (``RoutingDaemonError`` if it cannot) and the announcing task."""
        await self._prepare_plane()
        await self.driver.start()
        names = ", ".join(f"{n.address} AS{n.asn}{' (BFD)' if n.bfd else ''}" for n in self.settings.neighbors)
        self._journal.emit(DaemonEvent(f"BGP: {self.driver.name} speaks for AS{self.settings.asn} to {names}; "
                                       f"VIPs {', '.join(self.vips) or '(none)'} withdrawn until the table is applied"))
        self._task = asyncio.create_task(self._run(), name="bgp-announce")

    async def _prepare_plane(self) -> None:
        """What active-active needs of the plane: NAT cannot work (replies must come back through the
        director that forwarded, and there are several); IPVS must schedule a flow whose first packet
        here is not a SYN (ECMP moved it from another director): ``sloppy_tcp``/``sloppy_sctp``; and IPVS
        takes in only packets addressed to this host: a VIP the routers send here must be local (on lo)."""
        config = self._loaded.config
        addresses = {v.key.address for v in config.virtuals}
        families = {ipaddress.ip_address(n.address).version for n in self.settings.neighbors}
        for vip in self.vips:
            if vip not in addresses:
                LOGGER.warning("BGP: [bgp] vips: %s is no virtual's address: it is never announced", vip)
            elif ipaddress.ip_address(vip).version not in families:
                LOGGER.warning("BGP: %s has no IPv%d neighbour to be announced to",
                               vip, ipaddress.ip_address(vip).version)
        masq = sorted({v.name for v in config.virtuals for r in v.reals if r.forward == "masq"})
        if masq:
            LOGGER.warning("BGP: %s use NAT (masq): with several active directors the replies of a real "
                           "go to its one gateway, not to the director that forwarded; use direct routing "
                           "(gate) or ipip (docs/scale-out.md)", ", ".join(masq))
        if self._dataplane.capabilities.name != "ipvs":
            return
        for vip in self.vips:
            if await asyncio.to_thread(is_local, vip) is False:
                LOGGER.warning("BGP: %s is not an address of this director: IPVS takes in only packets "
                               "addressed to this host, so the traffic the routers send here for it is routed "
                               "on, not balanced; put it on lo (ip addr add %s dev lo, with arp_ignore=1 and "
                               "arp_announce=2 as on the reals; docs/scale-out.md)", vip, vip)
        for name in ("sloppy_tcp", "sloppy_sctp"):
            path = Path("/proc/sys/net/ipv4/vs") / name
            try:
                if (await asyncio.to_thread(path.read_text)).strip() != "1":
                    await asyncio.to_thread(path.write_text, "1\n")
                    LOGGER.info("BGP: set net.ipv4.vs.%s = 1 (IPVS schedules flows that ECMP moved here)", name)
            except OSError as exc:
                LOGGER.warning("BGP: cannot set net.ipv4.vs.%s = 1 (%s): flows that ECMP moves to this "
                               "director from another will be reset", name, exc)

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._dirty.wait(), TICK)
            self._dirty.clear()
            try:
                await self.update()
            except (RoutingDaemonError, DataplaneError) as exc:
                if self.error != str(exc):
                    LOGGER.error("BGP: %s", exc)
                self.error = str(exc)

    async def update(self) -> None:
        """Read the table, decide, tell the routing daemon what changed."""
        if not self.driver.alive():
            self._journal.emit(DaemonEvent(f"BGP: {self.driver.name} exited; starting it again "
                                           f"(every VIP withdrawn meanwhile)"))
            await asyncio.sleep(RESTART_DELAY)
            await self.driver.start()
        await self._follow_reload()
        ready = self._life.ready.is_set() and self._reconciler.apply_error is None \
            and not self._life.stopping.is_set()
        table = await self._dataplane.read()
        up = serving(self._loaded.config, table, self.vips, self._health())
        routes = decide(self.vips, up, ready=ready, draining=self.draining, down=self.settings.down)
        for vip in await self.driver.announce(routes):
            self._journal.emit(DaemonEvent(f"BGP: {vip} {self._words(routes[vip], up.get(vip, False))}"))
        self.error = None

    def _words(self, route: Route, up: bool) -> str:
        if route == "up":
            return f"announced (MED {self.settings.med})"
        if route == "down":
            return f"announced with MED {self.settings.down_med}: no real up here"
        if self.draining:
            return "withdrawn: draining"
        if not up:
            return "withdrawn: no real up here" if self._life.ready.is_set() else "withdrawn: no table yet"
        return "withdrawn: the table is not applied"

    async def _follow_reload(self) -> None:
        settings = self._loaded.settings.bgp
        if settings is None:  # [bgp] removed by a reload: kept until a restart
            return
        vips = announced_vips(settings, self._loaded.config)
        if settings == self.settings and vips == self.vips:
            return
        self.settings, self.vips = settings, vips
        await self.driver.reconfigure(settings, vips)
        self._journal.emit(DaemonEvent(f"BGP: reconfigured; VIPs {', '.join(vips) or '(none)'}"))

    async def drain(self, timeout: float, quiet: float) -> DrainAnswer:
        """Withdraw every VIP now; stop the daemon once traffic has stopped for ``quiet`` s, or after ``timeout``."""
        self.draining = True
        await self.update()
        self._journal.emit(DaemonEvent(f"BGP: draining: every VIP withdrawn; stopping when no packet has come "
                                       f"for {quiet:g} s (at most {timeout:g} s)"))
        if self._drain_task is None:
            self._drain_task = asyncio.create_task(self._drained(timeout, quiet), name="bgp-drain")
        return DrainAnswer(ok=True, withdrawn=list(self.vips), timeout=timeout, quiet=quiet)

    async def _drained(self, timeout: float, quiet: float) -> None:
        start = last_change = time.monotonic()
        seen = await self._traffic()
        while True:
            now = time.monotonic()
            if now - last_change >= quiet:
                self._journal.emit(DaemonEvent(f"BGP: drained: no traffic for {quiet:g} s "
                                               f"({now - start:.1f} s after the withdrawal); stopping"))
                break
            if now - start >= timeout:
                self._journal.emit(DaemonEvent(f"BGP: drain timeout ({timeout:g} s) with traffic still "
                                               "arriving; stopping"))
                break
            await asyncio.sleep(min(0.2, quiet / 4))
            current = await self._traffic()
            if current != seen:
                seen, last_change = current, time.monotonic()
        self._life.stop()

    async def _traffic(self) -> int:
        """A number that changes while traffic arrives (the plane's packet, byte and connection counters)."""
        try:
            stats = await self._dataplane.stats()
        except DataplaneError:
            return 0
        return sum(s.packets_in + s.bytes_in + s.connections for s in stats.values())

    async def snapshot(self) -> BGPDoc:
        routes = [RouteDoc(vip=vip, state=self.driver.routes.get(vip, "withdrawn"),
                           med={"up": self.settings.med, "down": self.settings.down_med}.get(
                               self.driver.routes.get(vip, "withdrawn")),
                           since=self.driver.changed_at.get(vip)) for vip in self.vips]
        return BGPDoc(daemon=self.driver.name, managed=self.settings.manage, running=self.driver.alive(),
                      asn=self.settings.asn, router_id=self.settings.router_id, draining=self.draining,
                      error=self.error, neighbors=await self.driver.sessions(), routes=routes)

    async def close(self) -> None:
        """Withdraw everything and stop the routing daemon (when Saru runs it)."""
        if self.poke in self._reconciler.listeners:
            self._reconciler.listeners.remove(self.poke)
        for task in (self._task, self._drain_task):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.driver.close()
        self._journal.emit(DaemonEvent("BGP: every VIP withdrawn"))
