"""The proxy's TCP side: a listener per service and a two-socket relay per client connection.

Everything is raw non-blocking sockets driven by ``poll.Poller`` (no asyncio transports,
tasks or futures per connection): accept in batches, schedule, ``connect`` a new socket to the
chosen real (TCP_NODELAY on both sides), then copy bytes through one shared buffer. Half-closes are
forwarded (``shutdown(SHUT_WR)``); the connection is closed when both directions have ended or on an
error. When a side's peer cannot take more data, reading that side stops until the backlog drains.

Bulk transfers go through the kernel: once a read fills the whole copy buffer (256 KiB: a download or
upload, not a request/response exchange), that direction switches to ``os.splice`` through a pipe
(socket → pipe → socket, no copy into Python; the pipe is the direction's backlog). Pipes come from
a per-poller pool and go back to it when the relay ends with its pipes empty.

A connect that fails (refused, unreachable, or not done within ``connect_timeout`` seconds,
checked at the poller's tick) is retried once on another real chosen by the same scheduler with the
failed real excluded; if that fails too, the client connection is closed. There is no idle timeout
on established connections (the ends' own timeouts apply).

When accepting fails for lack of descriptors (EMFILE, ENFILE, ENOBUFS), the listener pauses until
the next tick instead of spinning on a backlog it cannot accept.

Closing a listener stops new connections only: established relays keep running to their end, which
is how removals drain — unless the plane's ``expire_nodest_conn`` is on: then the relays of a real
that left the table are aborted (``abort``: a reset to both ends).
"""

from __future__ import annotations

import _socket
import errno
import os
import socket
import struct
import sys
import time
from dataclasses import dataclass

from saru.dataplane.proxy.balancer import Balancer, Template
from saru.dataplane.proxy.poll import ERRORS, PIPE_SIZE, READ, WRITE, Pipe, Poller
from saru.dataplane.proxy.schedulers import DestState

_BUFFER_SIZE = 256 * 1024
_NODELAY = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
_ACCEPT_BATCH = 64
_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST
_PIPE_SIZE = PIPE_SIZE
_SPLICE_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)
splice = os.splice
#: Linux copies TCP_NODELAY from a listening socket to the sockets it accepts: one syscall less each
_NODELAY_INHERITED = sys.platform.startswith("linux")
_NO_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_SOCK_FLAGS = socket.SOCK_STREAM | getattr(socket, "SOCK_NONBLOCK", 0) | getattr(socket, "SOCK_CLOEXEC", 0)


@dataclass(eq=False, slots=True)
class Counters:
    """Service-wide totals (destination totals live on each DestState)."""

    connections: int = 0
    bytes_in: int = 0
    bytes_out: int = 0


def family_of(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def bind_socket(address: str, port: int, kind: int) -> socket.socket:
    """A bound (and for TCP listening) non-blocking socket; raises OSError (e.g. port in use).

    SO_REUSEADDR only for TCP (a restart must not wait for TIME_WAIT): on a UDP socket Linux lets a
    second process bind the same address and port with it, and then take the first one's datagrams."""
    family = family_of(address)
    sock = socket.socket(family, kind)
    try:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((address, port))
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(*_NODELAY)
            sock.listen(4096)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def listens_on(sock: socket.socket, address: str, port: int, kind: int) -> bool:
    """Whether ``sock`` (e.g. handed down by systemd) is bound to address:port as a ``kind`` socket of
    the address's family, and, for TCP, listening."""
    family = family_of(address)
    try:
        if sock.family != family or sock.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE) != kind:
            return False
        if kind == socket.SOCK_STREAM and not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            return False
        host, bound_port = sock.getsockname()[:2]
        return bool(bound_port == port and socket.inet_pton(family, host) == socket.inet_pton(family, address))
    except OSError:
        return False


def relay_state(relay: TcpRelay) -> str:
    """The relay's state in IPVS's words (``ipvsadm -L -c``): connecting to the real is SYN_RECV,
    a client that sent its FIN is FIN_WAIT, a real that sent its FIN is CLOSE_WAIT."""
    if relay.bsock is None or relay.poller.handlers.get(relay.bfd) == relay.on_connect:
        return "SYN_RECV"
    if relay.ceof:
        return "FIN_WAIT"
    if relay.beof:
        return "CLOSE_WAIT"
    return "ESTABLISHED"


class TcpListener:
    """Accepts a service's clients and starts a relay for each."""

    def __init__(
        self,
        sock: socket.socket,
        poller: Poller,
        balancer: Balancer,
        counters: Counters,
        connect_timeout: float = 5.0,
    ) -> None:
        self.sock = sock
        self.poller = poller
        self.balancer = balancer
        self.counters = counters
        self.connect_timeout = connect_timeout
        self.fd = sock.fileno()
        self.closed = False
        # One copy buffer per poller (thread), shared by all its relays: a relay empties it before
        # returning. Several pollers (planes) in one process must not share it.
        buffer = poller.tcp_buffer
        if buffer is None:
            buffer = poller.tcp_buffer = bytearray(_BUFFER_SIZE)
        self.buffer: bytearray = buffer
        self.view = memoryview(buffer)

    def start(self) -> None:
        self.poller.register(self.fd, READ, self.on_ready)

    def on_ready(self, events: int) -> None:
        # The C-level ``_accept`` and ``_socket.socket`` skip socket.py's Python wrappers, which
        # cost several microseconds per connection; the relay needs only C methods.
        accept = self.sock._accept  # type: ignore[attr-defined]  # private C method, not in typeshed
        family = self.sock.family
        schedule = self.balancer.schedule
        for _ in range(_ACCEPT_BATCH):
            try:
                fd, addr = accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in _NO_RESOURCES:  # pause rather than spin; expire() resumes
                    self.poller.modify(self.fd, 0)
                    self.poller.deadlines[self] = 0.0
                return  # ECONNABORTED and the like: try again on the next readiness
            client = _socket.socket(family, socket.SOCK_STREAM, 0, fd)
            chosen = schedule(addr[0], addr[1])
            if chosen is None:
                client.close()
                continue
            client.setblocking(False)
            if not _NODELAY_INHERITED:
                client.setsockopt(*_NODELAY)
            TcpRelay(self, client, addr, chosen[0], chosen[1]).connect()

    def expire(self) -> None:
        """Resume accepting after a pause for lack of descriptors."""
        if not self.closed:
            self.poller.modify(self.fd, READ)

    def close(self) -> None:
        """Stop accepting; established relays are not touched."""
        if not self.closed:
            self.closed = True
            self.poller.forget(self.fd)
            self.sock.close()


class TcpRelay:
    """One client connection relayed to one real."""

    __slots__ = (
        "addr", "beof", "bfd", "bmask", "bpend", "bpipe", "bpiped", "bsock", "buffer", "ceof", "cfd", "cmask",
        "counters", "cpend", "cpipe", "cpiped", "csock", "dest", "done", "listener", "poller", "retried",
        "template", "view",
    )

    def __init__(
        self,
        listener: TcpListener,
        client: _socket.socket,
        addr: tuple[str, int],
        dest: DestState,
        template: Template | None,
    ) -> None:
        self.listener = listener
        self.poller = listener.poller
        self.counters = listener.counters
        self.buffer, self.view = listener.buffer, listener.view  # one copy buffer per poller
        self.csock = client
        self.cfd = client.fileno()
        self.addr = addr
        self.dest = dest
        self.template = template
        self.bsock: _socket.socket | None = None
        self.bfd = -1
        self.cmask = self.bmask = -1  # -1: not registered
        self.cpend = self.bpend = b""  # bytes waiting to go to the client / to the backend
        self.ceof = self.beof = False  # EOF received from the client / from the backend
        # bulk transfers: a pipe per direction (to the client / to the backend) spliced through, and
        # how many bytes wait in it
        self.cpipe: Pipe | None = None
        self.bpipe: Pipe | None = None
        self.cpiped = self.bpiped = 0
        self.retried = False
        self.done = False
        self.counters.connections += 1
        self.poller.live.add(self)

    # -- connecting -------------------------------------------------------------------------------

    def connect(self) -> None:
        dest = self.dest
        try:
            b = _socket.socket(family_of(dest.address), _SOCK_FLAGS)
        except OSError:
            self.close()
            return
        b.setsockopt(*_NODELAY)
        err = b.connect_ex((dest.address, dest.port))
        if err and err != errno.EINPROGRESS and err != errno.EWOULDBLOCK:
            b.close()
            self.retry()
            return
        self.bsock = b
        self.bfd = b.fileno()
        self.bmask = WRITE
        poller = self.poller
        poller.register(self.bfd, WRITE, self.on_connect)
        poller.deadlines[self] = time.monotonic() + self.listener.connect_timeout

    def on_connect(self, events: int) -> None:
        b = self.bsock
        assert b is not None
        # epoll flags a failed connect with ERR/HUP; other pollers need SO_ERROR.
        failed = events & ERRORS if ERRORS else b.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        self.poller.deadlines.pop(self, None)
        if failed:
            self.abandon_backend()
            self.retry()
            return
        self.poller.handlers[self.bfd] = self.on_backend
        # The client usually spoke already: read it now rather than after a poll; update() then
        # registers the client socket (cmask is still -1) with what it needs.
        self.on_client(READ)
        if self.cmask < 0 and not self.done:  # nothing to read yet: register the client anyway
            self.update()

    def expire(self) -> None:
        """The connect did not finish within the listener's connect_timeout."""
        if not self.done and self.bmask == WRITE and self.poller.handlers.get(self.bfd) == self.on_connect:
            self.abandon_backend()
            self.retry()

    def abandon_backend(self) -> None:
        assert self.bsock is not None
        self.poller.forget(self.bfd)
        self.bsock.close()
        self.bsock = None
        self.bfd = self.bmask = -1

    def retry(self) -> None:
        """Connect failed: once, try another real (the failed one excluded); else give up."""
        listener = self.listener
        balancer = listener.balancer
        balancer.release(self.dest, self.template)
        chosen = None
        if not self.retried and not listener.closed:
            self.retried = True
            chosen = balancer.schedule(self.addr[0], self.addr[1], exclude=self.dest)
        if chosen is None:
            self.done = True
            self.poller.live.discard(self)
            self.csock.close()
            return
        self.dest, self.template = chosen
        self.connect()

    # -- relaying ---------------------------------------------------------------------------------

    def on_client(self, events: int) -> None:
        if events & WRITE and (self.cpend or self.cpiped):
            if self.cpend:
                try:
                    sent = self.csock.send(self.cpend)
                except BlockingIOError:
                    sent = 0
                except OSError:
                    return self.close()
                self.cpend = self.cpend[sent:]
            elif not self._drain(self.cpipe, self.cfd, True):
                return
            if not self.cpend and not self.cpiped and self.beof:
                self._shut(self.csock)
        elif events & READ and not self.bpend and not self.bpiped and not self.ceof:
            if self.bpipe is not None:
                return self._splice(False)
            try:
                n = self.csock.recv_into(self.buffer)
            except BlockingIOError:
                return
            except OSError:
                return self.close()
            if n:
                self.dest.bytes_in += n
                self.counters.bytes_in += n
                b = self.bsock
                assert b is not None
                try:
                    sent = b.send(self.view[:n])
                except BlockingIOError:
                    sent = 0
                except OSError:
                    return self.close()
                if n == _BUFFER_SIZE:  # a bulk upload: splice it from now on
                    self.bpipe = self.poller.take_pipe()
                if sent == n and self.cmask > 0:
                    return  # the common case: nothing to re-arm
                if sent < n:
                    self.bpend = bytes(self.view[sent:n])
            else:
                self._client_ended()
        self.update()

    def on_backend(self, events: int) -> None:
        b = self.bsock
        assert b is not None
        if events & WRITE and (self.bpend or self.bpiped):
            if self.bpend:
                try:
                    sent = b.send(self.bpend)
                except BlockingIOError:
                    sent = 0
                except OSError:
                    return self.close()
                self.bpend = self.bpend[sent:]
            elif not self._drain(self.bpipe, self.bfd, False):
                return
            if not self.bpend and not self.bpiped and self.ceof:
                self._shut(b)
        elif events & READ and not self.cpend and not self.cpiped and not self.beof:
            if self.cpipe is not None:
                return self._splice(True)
            try:
                n = b.recv_into(self.buffer)
            except BlockingIOError:
                return
            except OSError:
                return self.close()
            if n:
                self.dest.bytes_out += n
                self.counters.bytes_out += n
                try:
                    sent = self.csock.send(self.view[:n])
                except BlockingIOError:
                    sent = 0
                except OSError:
                    return self.close()
                if n == _BUFFER_SIZE:  # a bulk download: splice it from now on
                    self.cpipe = self.poller.take_pipe()
                if sent == n and self.bmask == READ:
                    return  # the common case: nothing to re-arm
                if sent < n:
                    self.cpend = bytes(self.view[sent:n])
            else:
                self._backend_ended()
        self.update()

    def _client_ended(self) -> None:
        self.ceof = True
        if not (self.beof and not self.cpend and not self.cpiped) and self.bsock is not None:
            self._shut(self.bsock)  # else both ended: close() sends the FIN

    def _backend_ended(self) -> None:
        self.beof = True
        if not self.cpend and not self.cpiped and not (self.ceof and not self.bpend and not self.bpiped):
            self._shut(self.csock)

    # -- splicing (bulk transfers: the kernel moves the bytes, Python only counts them) ------------

    def _splice(self, to_client: bool) -> None:
        """Readable side → its pipe, then as much as the other side takes (``to_client``: backend →
        client). Entered only with the pipe empty: the pipe is that direction's send backlog."""
        pipe = self.cpipe if to_client else self.bpipe
        assert pipe is not None
        try:
            n = splice(self.bfd if to_client else self.cfd, pipe[1], _PIPE_SIZE, flags=_SPLICE_FLAGS)
        except BlockingIOError:
            return
        except OSError:
            return self.close()
        if not n and to_client:
            self._backend_ended()
        elif not n:
            self._client_ended()
        else:
            if to_client:
                self.dest.bytes_out += n
                self.counters.bytes_out += n
                self.cpiped = n
            else:
                self.dest.bytes_in += n
                self.counters.bytes_in += n
                self.bpiped = n
            if not self._drain(pipe, self.cfd if to_client else self.bfd, to_client):
                return
        self.update()

    def _drain(self, pipe: Pipe | None, fd: int, to_client: bool) -> bool:
        """Pipe → socket, as much as the socket takes; False when that failed and the relay closed."""
        assert pipe is not None
        left = self.cpiped if to_client else self.bpiped
        try:
            sent = splice(pipe[0], fd, left, flags=_SPLICE_FLAGS)
        except BlockingIOError:
            sent = 0
        except OSError:
            self.close()
            return False
        if to_client:
            self.cpiped = left - sent
        else:
            self.bpiped = left - sent
        return True

    @staticmethod
    def _shut(sock: _socket.socket) -> None:
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def update(self) -> None:
        """Re-arm both sockets for what each direction needs now; close when both have ended."""
        if self.done:
            return
        ceof, beof = self.ceof, self.beof
        cpend, bpend = self.cpend or self.cpiped, self.bpend or self.bpiped
        if ceof and beof and not cpend and not bpend:
            return self.close()
        cmask = (0 if bpend or ceof else READ) | (WRITE if cpend else 0)
        bmask = (0 if cpend or beof else READ) | (WRITE if bpend else 0)
        if cmask != self.cmask:
            if self.cmask < 0:
                self.poller.register(self.cfd, cmask, self.on_client)
            else:
                self.poller.modify(self.cfd, cmask)
            self.cmask = cmask
        if bmask != self.bmask:
            self.bmask = bmask
            self.poller.modify(self.bfd, bmask)

    def abort(self) -> None:
        """End the connection with a reset on both sides (expire_nodest_conn): a client must not take
        a response cut short for a complete one, as it could from a FIN after a close-delimited body."""
        if self.done:
            return
        for sock in (self.csock, self.bsock):
            if sock is not None:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
                except OSError:
                    pass
        self.close()

    def close(self) -> None:
        if self.done:
            return
        self.done = True
        poller = self.poller
        poller.live.discard(self)
        poller.deadlines.pop(self, None)
        poller.forget(self.cfd)
        self.csock.close()
        if self.bsock is not None:
            poller.forget(self.bfd)
            self.bsock.close()
        if self.cpipe is not None:
            poller.give_pipe(self.cpipe, self.cpiped == 0)
        if self.bpipe is not None:
            poller.give_pipe(self.bpipe, self.bpiped == 0)
        self.listener.balancer.release(self.dest, self.template)
