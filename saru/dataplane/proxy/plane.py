"""The userspace proxy data plane: Saru without root or kernel support (demos, tests, laptops).

Each TCP or UDP service listens on its own address:port and relays connections to its
destinations (``tcp``, ``udp``), scheduled with IPVS semantics (``schedulers``, ``balancer``). The
forwarding method of a destination is recorded but has no effect: gate, masq and ipip are all
simply proxied (a proxy cannot do direct routing; the real sees the director as its client).
Firewall-mark services cannot be proxied and are refused.

``apply`` validates the whole batch first, then binds the listeners of new services (a bind failure,
e.g. a port in use, raises ``DataplaneError`` and changes nothing), then mutates the in-memory state
without awaiting, so a client never sees half a batch. Removals drain: a deleted or weight-0
destination gets no new connections while established ones run to their end; deleting a service
closes its listener (its established TCP connections still drain). With ``expire_nodest_conn`` on
(saru.toml ``[director]``), a destination deleted from the table (down with quiescent=no, removed
from the config, its service deleted) has its TCP connections reset and its UDP flows ended at once,
like IPVS with ``net.ipv4.vs.expire_nodest_conn=1``; weight 0 (drain, quiescent down) still drains.

The proxy forwards through its own epoll poller (``poll``). By default it runs on the caller's
asyncio loop (stock asyncio, or uvloop only if the caller installed it). With ``threaded=True`` it
runs in a thread of its own, which keeps forwarding while the daemon's loop is busy; ``apply``,
``read`` and ``stats`` then hand their work to that thread, where it runs between two event batches.
The two modes measured the same within noise (``bench/proxy_bench.py --thread``).

Restarts: with ``listen_sockets`` set (the daemon under systemd sets its file descriptor store), a new
service's socket is taken from the store when it holds one for that virtual, and every socket bound
is handed to it; a deleted service's is dropped from it. A daemon killed and restarted by systemd so
refuses no connection: clients wait in the kept socket's backlog until the new daemon accepts them.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import assert_never

from saru.dataplane.base import (
    Capabilities,
    ConnEntry,
    Dataplane,
    DataplaneError,
    DestStats,
    ServiceStats,
    listener_name,
)
from saru.dataplane.proxy.balancer import Balancer, check_settings
from saru.dataplane.proxy.poll import READ, Poller
from saru.dataplane.proxy.schedulers import SCHEDULERS, DestState
from saru.dataplane.proxy.tcp import Counters, TcpListener, TcpRelay, bind_socket, listens_on, relay_state
from saru.dataplane.proxy.udp import UdpListener
from saru.diff import OpError, apply_ops
from saru.model import (
    AddDest,
    AddService,
    DelDest,
    DelService,
    Dest,
    EditDest,
    EditService,
    Op,
    Service,
    ServiceKey,
    ServiceSettings,
    Table,
)

log = logging.getLogger(__name__)

CAPABILITIES = Capabilities(
    name="proxy",
    forwards=frozenset({"gate", "masq", "ipip"}),
    schedulers=frozenset(SCHEDULERS),
    protocols=frozenset({"tcp", "udp"}),
    ipv6=True,
    persistence=True,
    thresholds=True,
    rewrites_gate_ports=False,
    notes="userspace proxy: gate/masq/ipip are all proxied (no direct routing; reals see the director "
    "as the client); no firewall-mark services",
)

Listener = TcpListener | UdpListener


@dataclass(eq=False)
class _Running:
    """A programmed service: its model, balancer, counters and listener."""

    model: Service
    balancer: Balancer
    counters: Counters
    listener: Listener


def _check_address(address: str, what: str) -> None:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in address else socket.AF_INET, address)
    except (OSError, ValueError):  # ValueError: an embedded NUL
        raise DataplaneError(f"{what}: {address!r} is not an IP address") from None


def _check_settings(key: ServiceKey, settings: ServiceSettings) -> None:
    try:
        check_settings(settings)
    except ValueError as exc:
        raise DataplaneError(f"{key}: {exc}") from None


class ProxyDataplane(Dataplane):
    """A userspace TCP/UDP proxy programmed like an IPVS table.

    ``udp_timeout``: seconds without traffic after which a UDP flow ends (IPVS's default, 300).
    ``template_sweep``: seconds between sweeps of expired persistence templates.
    ``connect_timeout``: seconds for a TCP connect to a real before it counts as failed (and is retried
    once on another real).
    ``threaded``: forward in a dedicated thread rather than on the running asyncio loop.
    ``splice``: False copies bulk transfers through Python instead of splicing them (for comparison).
    """

    capabilities = CAPABILITIES

    def __init__(
        self,
        udp_timeout: float = 300.0,
        template_sweep: float = 5.0,
        connect_timeout: float = 5.0,
        threaded: bool = False,
        splice: bool = True,
    ) -> None:
        self.splice = splice
        self.udp_timeout = udp_timeout
        self.connect_timeout = connect_timeout
        self.template_sweep = template_sweep
        self.threaded = threaded
        self._services: dict[ServiceKey, _Running] = {}
        #: each service's last counters reading: (its _Running, the totals it was read at, the reading)
        self._stats_kept: dict[ServiceKey, tuple[_Running, tuple[int, int, int, int], ServiceStats]] = {}
        self._poller: Poller | None = None
        self._lock = asyncio.Lock()
        self._next_template_sweep = 0.0

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        self._ensure_started()

    def _ensure_started(self) -> Poller:
        if self._poller is None:
            tick = min(1.0, self.udp_timeout / 4, self.connect_timeout / 4, self.template_sweep)
            self._poller = Poller(asyncio.get_running_loop(), threaded=self.threaded, tick=tick, splice=self.splice)
            self._poller.tickers.append(self._sweep)
        return self._poller

    def _sweep(self) -> None:
        """Periodic, in the poller's context: end idle UDP flows, drop expired templates."""
        now = time.monotonic()
        templates = now >= self._next_template_sweep
        if templates:
            self._next_template_sweep = now + self.template_sweep
        for running in self._services.values():
            if isinstance(running.listener, UdpListener):
                running.listener.sweep(now)
            if templates:
                running.balancer.expire()

    async def close(self) -> None:
        """Close every listener, every relayed connection and the poller."""
        poller = self._poller
        if poller is None:
            return
        async with self._lock:
            await poller.call(self._close_listeners)
            await poller.close()
            self._poller = None

    def _close_listeners(self) -> None:
        for running in self._services.values():
            running.listener.close()

    # -- table ------------------------------------------------------------------------------------

    async def read(self) -> Table:
        if self._poller is None:
            return self._read()
        return await self._poller.call(self._read)

    def _read(self) -> Table:
        return Table.of(r.model for r in self._services.values())

    async def stats(self) -> dict[ServiceKey, ServiceStats]:
        if self._poller is None:
            return self._stats()
        return await self._poller.call(self._stats)

    def _stats(self) -> dict[ServiceKey, ServiceStats]:
        """Each service's counters; a service none of whose counters moved since the last reading gives
        the same ``ServiceStats`` object again (a reader that kept it skips it: 10,000 destinations'
        counters are not made anew every reading). A counter moves only with the service's totals
        (a new connection, bytes relayed) or a connection's end (``Balancer.released``); a batch
        applied or the totals zeroed start over."""
        result: dict[ServiceKey, ServiceStats] = {}
        kept = self._stats_kept
        for key, running in self._services.items():
            c, balancer = running.counters, running.balancer
            moved = (c.connections, c.bytes_in, c.bytes_out, balancer.released)
            last = kept.get(key)
            if last is not None and last[0] is running and last[1] == moved:
                result[key] = last[2]
                continue
            dests = {
                d.key: DestStats(
                    active_connections=d.active,
                    inactive_connections=d.inactive,
                    connections=d.connections,
                    bytes_in=d.bytes_in,
                    bytes_out=d.bytes_out,
                )
                for d in balancer.dests.values()
            }
            result[key] = ServiceStats(c.connections, c.bytes_in, c.bytes_out, dests)
            kept[key] = (running, moved, result[key])
        return result

    async def zero(self, key: ServiceKey | None = None) -> None:
        """Reset the connection and byte totals (of one service, or all), like ``ipvsadm -Z``;
        active and inactive connection counts are live state and stay."""
        if key is not None and key not in self._services:
            raise DataplaneError("No such service")
        if self._poller is None:
            self._zero(key)
        else:
            await self._poller.call(lambda: self._zero(key))

    def _zero(self, key: ServiceKey | None) -> None:
        self._stats_kept.clear()
        for k, running in self._services.items():
            if key is not None and k != key:
                continue
            c = running.counters
            c.connections = c.bytes_in = c.bytes_out = 0
            for d in running.balancer.dests.values():
                d.connections = d.bytes_in = d.bytes_out = 0

    async def listening_sockets(self) -> dict[str, int]:
        if self._poller is None:
            return {}
        return await self._poller.call(
            lambda: {listener_name(k): r.listener.fd for k, r in self._services.items() if not r.listener.closed})

    async def connections(self) -> list[ConnEntry]:
        """The relayed TCP connections and UDP flows (``ipvsadm -L -c``). The proxy has no idle
        timeout on TCP connections, so they show 0 s to expiry; UDP flows show the time left of
        their idle timeout."""
        if self._poller is None:
            return []
        return await self._poller.call(self._connections)

    def _connections(self) -> list[ConnEntry]:
        assert self._poller is not None
        now = time.monotonic()
        out = []
        for relay in list(self._poller.live):
            if not isinstance(relay, TcpRelay) or relay.done:
                continue
            virtual = relay.listener.balancer.service  # (address, port), also of a deleted service
            out.append(ConnEntry("TCP", (relay.addr[0], relay.addr[1]), (virtual[0], virtual[1]),
                                 (relay.dest.address, relay.dest.port), relay_state(relay), 0.0))
        for key, running in self._services.items():
            listener = running.listener
            if isinstance(listener, UdpListener):
                for flow in listener.flows.values():
                    left = max(0.0, listener.idle_timeout - (now - flow.last))
                    out.append(ConnEntry("UDP", (flow.client[0], flow.client[1]), (key.address, key.port),
                                         (flow.dest.address, flow.dest.port), "UDP", left))
        return out

    async def apply(self, ops: Sequence[Op]) -> None:
        poller = self._ensure_started()
        async with self._lock:  # models change only under the lock, so validation sees a still table
            after = self._validate(ops)
            bound = self._bind_new(ops)
            gone = [key for key in self._services if key not in after]
            try:
                await poller.call(lambda: self._mutate(ops, bound, poller))
            except BaseException:  # pragma: no cover - _validate makes this unreachable
                for sock in bound.values():
                    sock.close()
                raise
            store = self.listen_sockets
            if store is not None:
                for key in gone:
                    store.drop(listener_name(key))

    def _validate(self, ops: Sequence[Op]) -> dict[ServiceKey, Service]:
        """Check what a proxy can do, then replay the ops on a copy of the table (``apply_ops``):
        raise DataplaneError at the first invalid one."""
        for op in ops:
            key = op.service
            where = f"{type(op).__name__} {key}"
            match op:
                case AddService(settings=settings):
                    if key.protocol not in ("tcp", "udp"):
                        raise DataplaneError(
                            f"{where}: the proxy data plane cannot serve {key.protocol} services "
                            "(firewall marks need IPVS or nftables)"
                        )
                    _check_address(key.address, where)
                    if not 0 < key.port < 65536:
                        raise DataplaneError(f"{where}: a proxied service needs a port (1-65535)")
                    _check_settings(key, settings)
                case EditService(settings=settings):
                    _check_settings(key, settings)
                case AddDest(dest=dest) | EditDest(dest=dest):
                    _check_address(dest.address, where)
                    if not 0 < dest.port < 65536:
                        raise DataplaneError(f"{where}: destination {dest.hostport} needs a port")
                    if dest.weight < 0 or dest.upper_threshold < 0 or dest.lower_threshold < 0:
                        raise DataplaneError(f"{where}: negative weight or threshold in {dest}")
                case DelService() | DelDest():
                    pass  # apply_ops below checks that what is deleted exists
                case _:
                    assert_never(op)
        current = Table({k: r.model for k, r in self._services.items()})
        try:
            return dict(apply_ops(current, ops).services)
        except OpError as exc:
            raise DataplaneError(str(exc)) from None

    def _bind_new(self, ops: Sequence[Op]) -> dict[ServiceKey, socket.socket]:
        """Bind the sockets of services added by ops (except re-adds of a deleted one)."""
        bound: dict[ServiceKey, socket.socket] = {}
        try:
            for op in ops:
                key = op.service
                match op:
                    case AddService() if key not in self._services and key not in bound:
                        kind = socket.SOCK_STREAM if key.protocol == "tcp" else socket.SOCK_DGRAM
                        kept = self._kept_socket(key, kind)
                        if kept is not None:
                            bound[key] = kept
                            continue
                        try:
                            bound[key] = bind_socket(key.address, key.port, kind)
                        except OSError as exc:
                            reason = exc.strerror or str(exc)
                            raise DataplaneError(f"{key}: cannot listen on {key.hostport}: {reason}") from None
                        if self.listen_sockets is not None:
                            self.listen_sockets.keep(listener_name(key), bound[key])
                    case AddService() | EditService() | DelService() | AddDest() | EditDest() | DelDest():
                        pass  # binds nothing (a re-added service keeps the socket of the one it replaces)
                    case _:
                        assert_never(op)
        except BaseException:
            for sock in bound.values():
                sock.close()
            raise
        return bound

    def _kept_socket(self, key: ServiceKey, kind: int) -> socket.socket | None:
        """The virtual's socket from ``listen_sockets`` (a restart under systemd: clients waited in
        its backlog meanwhile), if it is what it should be; else None (a misfit is closed)."""
        store = self.listen_sockets
        sock = store.take(listener_name(key)) if store is not None else None
        if sock is None:
            return None
        if not listens_on(sock, key.address, key.port, kind):
            log.warning("proxy: the kept socket of %s is not listening on %s: closed, binding anew",
                        key, key.hostport)
            sock.close()
            return None
        sock.setblocking(False)
        return sock

    def _mutate(self, ops: Sequence[Op], bound: dict[ServiceKey, socket.socket], poller: Poller) -> None:
        """Apply validated ops to the live state (no awaits: atomic for clients)."""
        self._stats_kept.clear()  # destinations come and go
        services = self._services
        removed: dict[ServiceKey, _Running] = {}  # deleted in this batch; a re-add reuses the socket
        # destination changes are batched per service: one scheduler refresh and one model copy
        touched: dict[int, tuple[_Running, dict[tuple[str, int], Dest]]] = {}

        def dests_of(running: _Running) -> dict[tuple[str, int], Dest]:
            entry = touched.get(id(running))
            if entry is None:
                entry = touched[id(running)] = (running, dict(running.model.dests))
            return entry[1]

        gone: list[DestState] = []  # destinations removed by this batch (expire_nodest_conn)

        for op in ops:
            key = op.service
            match op:
                case AddService(settings=settings):
                    services[key] = self._start(key, settings, removed.pop(key, None), bound, poller)
                case EditService(settings=settings):
                    running = services[key]
                    running.balancer.configure(settings)
                    running.model = replace(running.model, settings=settings)
                case DelService():
                    removed[key] = services.pop(key)
                    gone += removed[key].balancer.dests.values()
                case AddDest(dest=dest) | EditDest(dest=dest):
                    running = services[key]
                    running.balancer.set_dest(dest, refresh=False)
                    dests_of(running)[dest.key] = dest
                case DelDest(address=address, port=port):
                    running = services[key]
                    state = running.balancer.dests.get((address, port))
                    if state is not None:
                        gone.append(state)
                    running.balancer.remove_dest((address, port), refresh=False)
                    dests_of(running).pop((address, port), None)
                case _:
                    assert_never(op)
        for running, dests in touched.values():
            running.balancer.refresh()
            running.model = replace(running.model, dests=dests)
        for running in removed.values():
            running.listener.close()
        if self.expire_nodest_conn and gone:
            self._expire(gone, poller)

    def _expire(self, gone: list[DestState], poller: Poller) -> None:
        """expire_nodest_conn: end the TCP relays and UDP flows of destinations that left the table.
        A destination back in its service by the end of the batch (deleted and re-added, or its
        service re-added) has not left: its connections stay."""
        staying = {(running.balancer.service, dkey, key.protocol)
                   for key, running in self._services.items() for dkey in running.balancer.dests}
        expired = {id(d) for d in gone}

        def ends(dest: DestState, balancer: Balancer, protocol: str) -> bool:
            return id(dest) in expired and (balancer.service, dest.key, protocol) not in staying

        for relay in list(poller.live):
            if isinstance(relay, TcpRelay) and ends(relay.dest, relay.listener.balancer, "tcp"):
                relay.abort()
        for running in self._services.values():
            listener = running.listener
            if isinstance(listener, UdpListener):
                for flow in [f for f in listener.flows.values() if ends(f.dest, listener.balancer, "udp")]:
                    flow.close()

    def _start(self, key: ServiceKey, settings: ServiceSettings, old: _Running | None,
               bound: dict[ServiceKey, socket.socket], poller: Poller) -> _Running:
        """A new service's running state: its listener on the socket bound for it, or on the socket
        of ``old`` (the same service deleted earlier in this batch)."""
        balancer = Balancer(settings, (key.address, key.port))
        counters = Counters()
        sock = old.listener.sock if old is not None else bound.pop(key)
        listener: Listener
        if key.protocol == "tcp":
            listener = TcpListener(sock, poller, balancer, counters, self.connect_timeout)
        else:
            listener = UdpListener(sock, poller, balancer, counters, self.udp_timeout)
        if old is None:
            listener.start()
        else:  # the socket lives on in the new listener
            old.listener.closed = True
            if isinstance(old.listener, UdpListener):
                for flow in list(old.listener.flows.values()):
                    flow.close()
            else:  # a TCP listener paused on EMFILE has a deadline (UDP listeners never do)
                poller.deadlines.pop(old.listener, None)
            poller.handlers[listener.fd] = listener.on_ready
            poller.modify(listener.fd, READ)  # in case the old one was paused
        return _Running(Service(key, settings), balancer, counters, listener)

