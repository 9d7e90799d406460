"""An asyncio event loop running on a thread that lives in one lab host's network namespace.

Sockets the loop's coroutines open (VRRP, ARP, ping) belong to that namespace; the test's own thread
stays where it was. ``run`` hands a coroutine over and waits for its result, ``call`` a plain function.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from tests.lab.netns import Host, setns

T = TypeVar("T")


class NsLoop:
    """An asyncio loop on a thread that entered ``host``'s network namespace and never leaves it."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.loop: asyncio.AbstractEventLoop | None = None
        self.error: BaseException | None = None
        ready = threading.Event()
        self.thread = threading.Thread(target=self._main, args=(ready,), name=f"ns-{host.name}", daemon=True)
        self.thread.start()
        ready.wait(10)
        if self.error is not None or self.loop is None:
            raise RuntimeError(f"cannot run a loop in {host.netns}: {self.error}")

    def _main(self, ready: threading.Event) -> None:
        try:
            path = f"/run/netns/{self.host.netns}"
            setns(path)
            if os.stat("/proc/thread-self/ns/net").st_ino != os.stat(path).st_ino:
                raise RuntimeError("the thread is not in the namespace after setns")
            loop = asyncio.new_event_loop()
            self.loop = loop
        except BaseException as exc:  # reported by the constructor
            self.error = exc
            ready.set()
            return
        ready.set()
        try:
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 20) -> T:
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, func: Callable[..., T], *args: Any) -> T:
        """Run a plain function in the namespace's thread (for namespace-dependent sync calls)."""
        async def wrapper() -> T:
            return func(*args)
        return self.run(wrapper())

    def close(self) -> None:
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
