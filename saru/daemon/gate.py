"""The HA/sync gate: what the table does while this director is master or backup, and the IPVS
connection-sync daemons that follow it.

With ``saru.toml`` ``[ha] mode = "vrrp"`` the daemon runs an HA node (``saru.ha.node``). It starts
once the first health pass is done, so a node never becomes master with a table that does not yet
know which reals are alive, and it tells the gate when this director becomes master
(``set_active(True)``: the owned services are programmed, awaited before the VIP is announced) or
stops being master (``set_active(False)``: they are cleared — unless ``warm_standby``, which keeps
them programmed on the backup too). Without ``[ha]`` the gate is always open.

``[ipvs.sync]`` (IPVS only): the kernel's sync daemons run as ``role`` says; ``follow-ha`` runs the
master daemon while this director is active and the backup daemon otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

from saru.daemon.state import Life, Loaded
from saru.dataplane.base import Dataplane
from saru.events import DaemonEvent, Event
from saru.model import HASettings

if TYPE_CHECKING:  # the HA stack is imported only by a daemon that runs it (vrrp_node)
    from saru.ha.node import HASnapshot

LOGGER = logging.getLogger("saru")

SetActive = Callable[[bool], Awaitable[None]]
Emit = Callable[[Event], None]


class HANodeLike(Protocol):
    """What the gate and the service layer use of an HA node (``saru.ha.node.HANode``)."""

    async def start(self) -> None: ...
    async def stop(self, graceful: bool = True) -> None: ...
    def snapshot(self) -> HASnapshot: ...
    def resign(self, hold: float) -> None: ...
    def takeover(self) -> None: ...


class NodeFactory(Protocol):
    def __call__(self, settings: HASettings, *, set_active: SetActive, emit: Emit,
                 vip_check_interval: float) -> HANodeLike: ...


def vrrp_node(settings: HASettings, *, set_active: SetActive, emit: Emit,
              vip_check_interval: float) -> HANodeLike:
    """The real HA node (imported here: a director without ``[ha]`` never loads the HA stack)."""
    from saru.ha.node import HANode

    return HANode(settings, set_active=set_active, emit=emit, vip_check_interval=vip_check_interval)


class HAGate:
    """Opens and closes the table for the owned services as the HA node decides (module docstring).

    ``reconcile`` brings the table in line (raising ``DataplaneError`` when it cannot; the reconciler
    retries), ``node_factory`` makes the HA node."""

    def __init__(self, dataplane: Dataplane, loaded: Loaded, life: Life, emit: Emit, *,
                 reconcile: Callable[[], Awaitable[None]], node_factory: NodeFactory = vrrp_node,
                 vip_check_interval: float = 1.0) -> None:
        self.dataplane = dataplane
        self._loaded = loaded
        self._life = life
        self._emit = emit
        self._reconcile = reconcile
        self._node_factory = node_factory
        self.vip_check_interval = vip_check_interval
        self.node: HANodeLike | None = None
        #: whether the owned services may be in the table (False on an HA backup without warm_standby)
        self.active = self.ha_settings is None
        self._sync_warned = False

    @property
    def ha_settings(self) -> HASettings | None:
        """The ``[ha]`` settings when this daemon runs the built-in VRRP, else None."""
        ha = self._loaded.settings.ha
        return ha if ha is not None and ha.mode == "vrrp" else None

    def gated(self) -> bool:
        """Whether the owned services must be out of the table right now."""
        ha = self.ha_settings
        return ha is not None and not self.active and not ha.warm_standby

    async def set_active(self, active: bool) -> None:
        """The HA node's gate: program (True) or clear (False) the owned services; returns when done."""
        self.active = active
        if self._life.stopping.is_set() and not active:
            return  # stopping: the cleanstop setting of each virtual decides, as without HA
        try:
            await self._reconcile()
        finally:
            await self.sync_daemons()

    async def start_node(self) -> None:
        """Start the HA node (when configured). When it cannot start, the daemon stops with exit
        status 1: a director that can never take the VIP must not look healthy."""
        settings = self.ha_settings
        if settings is None:
            return
        self.node = self._node_factory(settings, set_active=self.set_active, emit=self._emit,
                                       vip_check_interval=self.vip_check_interval)
        try:
            await self.node.start()
        except Exception as exc:  # no VRRP (no such interface, no privilege…)
            LOGGER.error("HA: cannot start: %s; stopping", exc)
            self._life.stop(1)

    async def stop_node(self) -> None:
        """Leave gracefully: priority-0 advert, VIP removed, table cleared (while the plane works)."""
        if self.node is None:
            return
        try:
            await self.node.stop(graceful=True)
        except Exception:
            LOGGER.exception("HA: stopping failed")

    async def sync_daemons(self, stop: bool = False) -> None:
        """Run the IPVS sync daemons ``[ipvs.sync]`` asks for; ``stop`` stops the ones Saru started."""
        sync = self._loaded.settings.ipvs_sync
        if sync is None:
            return
        name = self.dataplane.capabilities.name
        if name != "ipvs":
            if not stop and not self._sync_warned:
                LOGGER.warning("[ipvs.sync] is ignored: the %s data plane has no IPVS connection sync", name)
                self._sync_warned = True
            return
        from saru.dataplane.ipvs import SyncError, apply_sync

        try:
            done = await apply_sync(self.dataplane, None if stop else sync, "MASTER" if self.active else "BACKUP")
        except SyncError as exc:
            LOGGER.error("IPVS connection sync: %s", exc)
            return
        for line in done:
            self._emit(DaemonEvent(f"IPVS connection sync: {line}"))

