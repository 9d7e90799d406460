"""The proxy's UDP side: one listening socket per service, one connected socket per client flow.

A datagram from a new client (address, port) schedules a real and opens a socket connected to it;
later datagrams of that client go through the same socket, and whatever the real sends back on it is
returned to the client from the service's address. A flow ends after ``idle_timeout`` seconds
without traffic in either direction (IPVS's UDP timeout is 300 s; a periodic sweep checks). With
``ops`` (one-packet scheduling) every datagram is scheduled on its own and flows are kept per
(client, real) only to carry the replies.

Flows count as active connections of their real. Removing the service closes its listening socket,
so its flows end with it (replies have no socket left to leave from); removing a real or setting its
weight to 0 only stops new flows.
"""

from __future__ import annotations

import socket
import time

from saru.dataplane.proxy.balancer import Balancer, Template
from saru.dataplane.proxy.poll import READ, Poller
from saru.dataplane.proxy.schedulers import DestState
from saru.dataplane.proxy.tcp import Counters, family_of

_BATCH = 64
_MAX_DATAGRAM = 65535

#: a client's socket address as ``recvfrom`` gives it: (host, port), and for IPv6 flowinfo and scope id
ClientAddress = tuple[str, int] | tuple[str, int, int, int]
#: a flow's key: the client address, or with ``ops`` (one flow per datagram) also the real's (address, port)
FlowKey = ClientAddress | tuple[ClientAddress, tuple[str, int]]


class UdpFlow:
    """One client's datagrams to one real, and the real's replies."""

    __slots__ = ("client", "dest", "fd", "key", "last", "listener", "sock", "template")

    def __init__(
        self,
        listener: UdpListener,
        key: FlowKey,
        client: ClientAddress,
        dest: DestState,
        template: Template | None,
    ) -> None:
        self.listener = listener
        self.key = key
        self.client = client
        self.dest = dest
        self.template = template
        self.sock = socket.socket(family_of(dest.address), socket.SOCK_DGRAM)
        try:
            self.sock.setblocking(False)
            self.sock.connect((dest.address, dest.port))
        except OSError:
            self.sock.close()
            raise
        self.fd = self.sock.fileno()
        self.last = time.monotonic()
        listener.poller.register(self.fd, READ, self.on_reply)

    def send(self, data: bytes) -> None:
        self.last = time.monotonic()
        n = len(data)
        self.dest.bytes_in += n
        self.listener.counters.bytes_in += n
        try:
            self.sock.send(data)
        except OSError:  # full buffer, ICMP error from an earlier datagram: UDP may drop
            pass

    def on_reply(self, events: int) -> None:
        listener = self.listener
        for _ in range(_BATCH):
            try:
                data = self.sock.recv(_MAX_DATAGRAM)
            except BlockingIOError:
                return
            except OSError:  # ECONNREFUSED from a previous datagram: keep the flow
                continue
            self.last = time.monotonic()
            n = len(data)
            self.dest.bytes_out += n
            listener.counters.bytes_out += n
            if listener.closed:
                continue
            try:
                listener.sock.sendto(data, self.client)
            except OSError:
                pass

    def close(self) -> None:
        listener = self.listener
        if listener.flows.get(self.key) is self:
            del listener.flows[self.key]
        listener.poller.forget(self.fd)
        self.sock.close()
        listener.balancer.release(self.dest, self.template)


class UdpListener:
    """Receives a service's datagrams and relays them through per-client flows."""

    def __init__(
        self,
        sock: socket.socket,
        poller: Poller,
        balancer: Balancer,
        counters: Counters,
        idle_timeout: float,
    ) -> None:
        self.sock = sock
        self.poller = poller
        self.balancer = balancer
        self.counters = counters
        self.idle_timeout = idle_timeout
        self.fd = sock.fileno()
        self.flows: dict[FlowKey, UdpFlow] = {}
        self.closed = False

    def start(self) -> None:
        self.poller.register(self.fd, READ, self.on_ready)

    def on_ready(self, events: int) -> None:
        for _ in range(_BATCH):
            try:
                data, client = self.sock.recvfrom(_MAX_DATAGRAM)
            except BlockingIOError:
                return
            except OSError:
                continue
            self.datagram(data, client)

    def datagram(self, data: bytes, client: ClientAddress) -> None:
        balancer = self.balancer
        if balancer.settings.ops:
            chosen = balancer.schedule(client[0], client[1])
            if chosen is None:
                return
            dest, template = chosen
            key: FlowKey = (client, dest.key)
            flow = self.flows.get(key)
            if flow is not None and flow.dest is dest:
                balancer.release(dest, template)  # counted in the totals; the open flow carries it
                self.counters.connections += 1
            else:
                flow = self._open(key, client, dest, template)
                if flow is None:
                    return
        else:
            key = client
            flow = self.flows.get(key)
            if flow is None:
                chosen = balancer.schedule(client[0], client[1])
                if chosen is None:
                    return
                flow = self._open(key, client, *chosen)
                if flow is None:
                    return
        flow.send(data)

    def _open(self, key: FlowKey, client: ClientAddress, dest: DestState,
              template: Template | None) -> UdpFlow | None:
        try:
            flow = UdpFlow(self, key, client, dest, template)
        except OSError:
            self.balancer.release(dest, template)
            return None
        self.counters.connections += 1
        old = self.flows.get(key)
        if old is not None:
            old.close()
        self.flows[key] = flow
        return flow

    def sweep(self, now: float) -> None:
        """End the flows idle for ``idle_timeout`` seconds (called periodically by the poller)."""
        limit = now - self.idle_timeout
        for flow in [f for f in self.flows.values() if f.last <= limit]:
            flow.close()

    def close(self) -> None:
        """Close the service's socket and, with it, every flow."""
        if self.closed:
            return
        self.closed = True
        self.poller.forget(self.fd)
        self.sock.close()
        for flow in list(self.flows.values()):
            flow.close()
