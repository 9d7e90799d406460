"""The proxy's own readiness loop: raw sockets, one callback per event, no asyncio objects per event.

The proxy registers its raw non-blocking sockets here instead of with asyncio. On Linux this is an
``epoll`` object; elsewhere (macOS, BSD) ``selectors.DefaultSelector`` behind the same interface.
Registration is level-triggered. The loop runs in one of two modes:

* ``threaded=False`` (the proxy's default): the poller's descriptor is watched by the running
  asyncio loop (stock asyncio, or uvloop if the caller installed it) and a batch of events is
  dispatched per loop callback, through plain bound methods (no Handle, transport or future).
* ``threaded=True``: a dedicated thread blocks in ``epoll_wait`` and dispatches events itself, so
  forwarding goes on while the asyncio loop is busy. Per request it measured the same within noise.

Everything that touches proxy state from outside (``apply``, ``read``, ``stats``) goes through
``call``, which in threaded mode runs a function in the proxy thread between two event batches, so
mutations are atomic for clients.

Handlers must tolerate spurious readiness (they only do non-blocking calls and handle EAGAIN).
Events for a descriptor registered during the current batch are dropped: they belong to a previous
socket that had the same number. ``tickers`` run every ``tick`` seconds (UDP idle timeouts,
persistence template expiry), and so does the check of ``deadlines`` (objects whose ``expire()`` is
called once their monotonic deadline has passed: connect timeouts, a listener pausing on EMFILE).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import fcntl
import logging
import os
import select
import selectors
import threading
import time
from collections.abc import Callable
from typing import Protocol, TypeVar

log = logging.getLogger(__name__)

READ = 1
WRITE = 4
Handler = Callable[[int], None]
#: a pipe's (read end, write end), for splicing
Pipe = tuple[int, int]
#: the capacity asked for a splice pipe (fcntl F_SETPIPE_SZ; the kernel may round it up)
PIPE_SIZE = 256 * 1024
#: splice pipes kept for reuse, per poller
_PIPE_POOL = 64
_F_SETPIPE_SZ = 1031  # linux/fcntl.h (fcntl.F_SETPIPE_SZ from Python 3.10, not on every platform)
T = TypeVar("T")



class Closable(Protocol):
    """An open connection the poller closes when it closes."""

    def close(self) -> None: ...


class Expiring(Protocol):
    """Something with a deadline (a connect timeout, a paused listener)."""

    def expire(self) -> None: ...


_EPOLL = hasattr(select, "epoll")
#: extra bits in the events a handler receives when the descriptor has an error or hang-up (epoll only)
ERRORS = (select.EPOLLERR | select.EPOLLHUP) if _EPOLL else 0


class Poller:
    """Readiness notifications for raw sockets, dispatched in batches."""

    def __init__(self, loop: asyncio.AbstractEventLoop, threaded: bool = False, tick: float = 0.1,
                 batch: int = 256, splice: bool = True) -> None:
        self.loop = loop
        #: False: ``take_pipe`` gives none, bulk transfers are copied through Python (for comparison)
        self.splice = splice and hasattr(os, "splice")
        self.threaded = threaded
        self.tick = tick
        self.batch = batch
        self.handlers: dict[int, Handler] = {}
        self.fresh: set[int] = set()
        self.running = False
        self.closed = False
        #: open connections (objects with ``close()``), closed with the poller
        self.live: set[Closable] = set()
        #: functions run every ``tick`` seconds in the poller's context
        self.tickers: list[Callable[[], None]] = []
        #: objects with an ``expire()`` method → monotonic time at which to call it
        self.deadlines: dict[Expiring, float] = {}
        #: the TCP relays' copy buffer (set by proxy.tcp; one per poller, i.e. per thread)
        self.tcp_buffer: bytearray | None = None
        #: empty splice pipes for reuse (``take_pipe``/``give_pipe``)
        self.pipes: list[Pipe] = []
        if _EPOLL:
            self.epoll: select.epoll | None = select.epoll()
            self.selector: selectors.BaseSelector | None = None
            self.fd = self.epoll.fileno()
        else:  # pragma: no cover - exercised on non-Linux systems only
            self.epoll = None
            self.selector = selectors.DefaultSelector()
            self.fd = self.selector.fileno()
        #: functions handed in by ``call`` (each runs one caller's function and sets its future)
        self.calls: collections.deque[Callable[[], None]] = collections.deque()
        self.thread: threading.Thread | None = None
        self.timer: asyncio.TimerHandle | None = None
        if threaded:
            self.wake_r, self.wake_w = os.pipe()
            os.set_blocking(self.wake_r, False)
            os.set_blocking(self.wake_w, False)
            self.register(self.wake_r, READ, self._run_calls)
            self.thread = threading.Thread(target=self._thread_main, name="saru-proxy", daemon=True)
            self.thread.start()
        else:
            loop.add_reader(self.fd, self.run)
            self.timer = loop.call_later(tick, self._asyncio_tick)

    # -- registration ------------------------------------------------------------------------------

    def register(self, fd: int, events: int, handler: Handler) -> None:
        """Watch fd for READ and/or WRITE (0 = registered but idle)."""
        self.handlers[fd] = handler
        if self.running:
            self.fresh.add(fd)
        if self.epoll is not None:
            self.epoll.register(fd, events)
        else:  # pragma: no cover
            self._sel_set(fd, events)

    def modify(self, fd: int, events: int) -> None:
        if self.epoll is not None:
            self.epoll.modify(fd, events)
        else:  # pragma: no cover
            self._sel_set(fd, events)

    def forget(self, fd: int) -> None:
        """Stop dispatching fd; call right before closing it (epoll drops closed descriptors itself)."""
        self.handlers.pop(fd, None)
        if self.selector is not None:  # pragma: no cover
            try:
                self.selector.unregister(fd)
            except (KeyError, ValueError):
                pass

    def _sel_set(self, fd: int, events: int) -> None:  # pragma: no cover
        assert self.selector is not None
        mask = selectors.EVENT_READ if events & READ else 0
        mask |= selectors.EVENT_WRITE if events & WRITE else 0
        registered = fd in self.selector.get_map()
        if mask == 0:
            if registered:
                self.selector.unregister(fd)
        elif registered:
            self.selector.modify(fd, mask)
        else:
            self.selector.register(fd, mask)

    # -- splice pipes -----------------------------------------------------------------------------

    def take_pipe(self) -> Pipe | None:
        """An empty non-blocking pipe of ``PIPE_SIZE`` for splicing; None when none can be had (no
        splice here, out of descriptors): the caller keeps copying."""
        if self.pipes:
            return self.pipes.pop()
        if not self.splice:
            return None
        try:
            r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            fcntl.fcntl(w, _F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:  # above /proc/sys/fs/pipe-max-size: the default 64 KiB works too
            pass
        return r, w

    def give_pipe(self, pipe: Pipe, empty: bool) -> None:
        """A relay is done with ``pipe``: kept for reuse when empty (and the pool has room), else closed."""
        if empty and len(self.pipes) < _PIPE_POOL and not self.closed:
            self.pipes.append(pipe)
        else:
            os.close(pipe[0])
            os.close(pipe[1])

    # -- dispatch ---------------------------------------------------------------------------------

    def run(self, timeout: float = 0) -> None:
        """Dispatch the ready events (waiting up to ``timeout`` seconds for the first)."""
        handlers = self.handlers
        fresh = self.fresh
        if self.epoll is not None:
            ready = self.epoll.poll(timeout, self.batch)
        else:  # pragma: no cover
            assert self.selector is not None
            ready = [
                (key.fd, (READ if mask & selectors.EVENT_READ else 0)
                 | (WRITE if mask & selectors.EVENT_WRITE else 0))
                for key, mask in self.selector.select(timeout)
            ]
        self.running = True
        get, errors, both = handlers.get, ERRORS, READ | WRITE
        for fd, ev in ready:
            handler = get(fd)
            if handler is None or fd in fresh:
                continue
            try:
                handler(ev | both if ev & errors else ev)
            except Exception:  # a bug in one connection must not stop the others
                log.exception("proxy: error handling descriptor %d", fd)
        self.running = False
        if fresh:
            fresh.clear()

    def _run_tickers(self) -> None:
        if self.deadlines:
            now = time.monotonic()
            for obj in [o for o, at in self.deadlines.items() if at <= now]:
                del self.deadlines[obj]
                try:
                    obj.expire()
                except Exception:
                    log.exception("proxy: error expiring %r", obj)
        for ticker in self.tickers:
            try:
                ticker()
            except Exception:
                log.exception("proxy: error in periodic task")

    def _asyncio_tick(self) -> None:
        self._run_tickers()
        self.timer = self.loop.call_later(self.tick, self._asyncio_tick)

    def _thread_main(self) -> None:
        next_tick = time.monotonic() + self.tick
        while not self.closed:
            self.run(max(0.0, next_tick - time.monotonic()))
            now = time.monotonic()
            if now >= next_tick:
                self._run_tickers()
                next_tick = now + self.tick

    # -- calls from the outside -------------------------------------------------------------------

    async def call(self, fn: Callable[[], T]) -> T:
        """Run fn in the poller's context (the proxy thread, or right here) and return its result."""
        if self.thread is None:
            return fn()
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

        self.calls.append(run)
        try:
            os.write(self.wake_w, b"x")
        except BlockingIOError:  # the pipe is full of wake-ups already
            pass
        return await asyncio.wrap_future(future)

    def _run_calls(self, events: int) -> None:
        try:
            while os.read(self.wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        while self.calls:
            self.calls.popleft()()

    async def close(self) -> None:
        """Close every live connection, stop the loop and release the poller."""
        if self.closed:
            return

        def shut() -> None:
            for conn in list(self.live):
                conn.close()
            self.closed = True

        await self.call(shut)
        if self.thread is not None:
            os.write(self.wake_w, b"x")
            await asyncio.to_thread(self.thread.join)
            os.close(self.wake_r)
            os.close(self.wake_w)
        else:
            self.loop.remove_reader(self.fd)
            if self.timer is not None:
                self.timer.cancel()
        if self.epoll is not None:
            self.epoll.close()
        elif self.selector is not None:  # pragma: no cover
            self.selector.close()
        self.handlers.clear()
        for r, w in self.pipes:
            os.close(r)
            os.close(w)
        self.pipes.clear()
