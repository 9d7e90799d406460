"""A bounded HTTP client load with per-request accounting, for the disruption suite and its benchmark.

``python -m tests.lab.loadgen HOST PORT [options]`` (run inside a lab namespace or on loopback) starts
three kinds of clients against ``http://HOST:PORT``:

* ``--conns N`` workers that each send one ``GET /`` per new TCP connection (``Connection: close``);
* ``--keepalive M`` workers that each keep one HTTP/1.1 connection and send ``GET /`` on it in a loop
  (a connection that breaks is counted, and a new one opened);
* ``--downloads K`` workers that each fetch ``--download-path`` (default ``/big.bin``) reading at most
  ``--download-rate`` bytes/s, so a download stays open across the disruption; one that ends short of
  its ``Content-Length`` or with an error is a broken connection.

It prints ``{"ready": true}`` once every request worker has had a success, then runs until a line
``stop`` arrives on stdin, ``--seconds`` pass or ``--max-requests`` requests were sent (the bounds), and
prints one JSON summary: requests sent, ``ok``, ``failed`` (by error class; ``refused`` separately),
``broken_connections`` (keep-alive connections and downloads that broke), the reals that answered
(``X-Real-Server``), the slowest successful request, and ``longest_gap``: the longest time one worker
went without a success (between two of its successes, or from the start of a request that failed to
the next success) — what a client of the service sees as an outage. A keep-alive connection the
server closed while idle (end of stream or reset before any byte of the answer) is not a failure:
the request is sent again on a new connection, as HTTP clients do; such closes are counted apart
(``keepalive_closed``). Requests that were in flight when
the load stops are neither ok nor failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

REQUEST_TIMEOUT = 2.0
HEADER_LIMIT = 64 * 1024


class HTTPFailure(Exception):
    """A request that did not end in a complete ``200`` answer; ``kind`` is its class in the summary."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


@dataclass
class Tally:
    """Everything the workers count (one event loop: no locks)."""

    sent: int = 0
    ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    servers: Counter[str] = field(default_factory=Counter)
    broken_keepalive: int = 0
    keepalive_closed: int = 0
    downloads_done: int = 0
    downloads_broken: int = 0
    longest_gap: float = 0.0
    slowest: float = 0.0
    examples: list[str] = field(default_factory=list)

    def failed(self, exc: BaseException) -> None:
        kind = classify(exc)
        self.errors[kind] += 1
        if len(self.examples) < 10:
            self.examples.append(f"{kind}: {exc!r}"[:200])

    def summary(self, seconds: float) -> dict[str, object]:
        failed = sum(self.errors.values())
        return {"sent": self.sent, "ok": self.ok, "failed": failed, "errors": dict(self.errors),
                "refused": self.errors.get("refused", 0),
                "broken_connections": self.broken_keepalive + self.downloads_broken,
                "broken_keepalive": self.broken_keepalive, "keepalive_closed": self.keepalive_closed,
                "downloads_done": self.downloads_done,
                "downloads_broken": self.downloads_broken, "servers": dict(self.servers),
                "longest_gap": round(self.longest_gap, 4), "slowest": round(self.slowest, 4),
                "seconds": round(seconds, 3), "rate": round(self.ok / seconds, 1) if seconds > 0 else 0.0,
                "examples": self.examples}


def classify(exc: BaseException) -> str:
    """A short error class: ``refused``, ``reset``, ``timeout``, ``eof``, ``http-<status>``, ``other``."""
    if isinstance(exc, HTTPFailure):
        return exc.kind
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionResetError | BrokenPipeError):
        return "reset"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, asyncio.IncompleteReadError):
        return "eof"
    return "other"


def closed_before_answer(exc: BaseException) -> bool:
    """Whether a request on a reused connection failed because the server had closed it (nothing of an
    answer arrived): end of stream or a reset before the first byte."""
    if isinstance(exc, asyncio.IncompleteReadError):
        return not exc.partial
    return isinstance(exc, ConnectionResetError | BrokenPipeError)


class Gap:
    """One worker's longest stretch without a success (see the module docstring)."""

    def __init__(self, tally: Tally) -> None:
        self.tally = tally
        self.since: float | None = None  # last success, or the start of the first failure after it

    def started(self, at: float) -> None:
        if self.since is None:
            self.since = at

    def success(self, at: float) -> None:
        if self.since is not None:
            self.tally.longest_gap = max(self.tally.longest_gap, at - self.since)
        self.since = at


async def read_response(reader: asyncio.StreamReader, limit_rate: float = 0.0) -> tuple[str, int, bool]:
    """One response: (X-Real-Server, body bytes read, whether the server keeps the connection)."""
    head = await reader.readuntil(b"\r\n\r\n")
    if len(head) > HEADER_LIMIT:
        raise HTTPFailure("other", "header too long")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise HTTPFailure("other", f"bad status line {lines[0]!r}")
    fields = (line.partition(":") for line in lines[1:] if line)
    headers = {name.strip().lower(): value.strip() for name, _, value in fields}
    length = int(headers.get("content-length", "-1"))
    got = 0
    if length < 0:
        raise HTTPFailure("other", "no Content-Length")
    start = time.monotonic()
    while got < length:
        chunk = await reader.read(min(65536, length - got))
        if not chunk:
            raise HTTPFailure("eof", f"body ended after {got} of {length} bytes")
        got += len(chunk)
        if limit_rate > 0:
            ahead = got / limit_rate - (time.monotonic() - start)
            if ahead > 0:
                await asyncio.sleep(ahead)
    if parts[1] != "200":
        raise HTTPFailure(f"http-{parts[1]}")
    keep = headers.get("connection", "").lower() != "close"
    return headers.get("x-real-server", "?"), got, keep


class Load:
    """The workers and their bounds (see the module docstring)."""

    def __init__(self, host: str, port: int, args: argparse.Namespace) -> None:
        self.host, self.port, self.args = host, port, args
        self.tally = Tally()
        self.stop = asyncio.Event()
        self.first_ok: set[int] = set()
        self.ready = asyncio.Event()
        self.request = f"GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: saru-loadgen\r\n".encode()

    def _budget(self) -> bool:
        if self.tally.sent >= self.args.max_requests:
            self.stop.set()
        return not self.stop.is_set()

    def _success(self, worker: int, server: str, started: float, gap: Gap) -> None:
        now = time.monotonic()
        self.tally.ok += 1
        self.tally.servers[server] += 1
        self.tally.slowest = max(self.tally.slowest, now - started)
        gap.success(now)
        if worker not in self.first_ok:
            self.first_ok.add(worker)
            if len(self.first_ok) == self.args.conns + self.args.keepalive:
                self.ready.set()

    async def _pause_after_failure(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), 0.01)

    async def new_connection_worker(self, worker: int) -> None:
        gap = Gap(self.tally)
        request = self.request + b"Connection: close\r\n\r\n"
        while self._budget():
            started = time.monotonic()
            gap.started(started)
            self.tally.sent += 1
            writer = None
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT):
                    reader, writer = await asyncio.open_connection(self.host, self.port)
                    writer.write(request)
                    server, _, _ = await read_response(reader)
            except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                    HTTPFailure, ValueError) as exc:
                if self.stop.is_set():
                    self.tally.sent -= 1  # cut off by the end of the load: not a failure
                    break
                self.tally.failed(exc)
                await self._pause_after_failure()
                continue
            finally:
                if writer is not None:
                    writer.close()
            self._success(worker, server, started, gap)

    async def keepalive_worker(self, worker: int) -> None:
        gap = Gap(self.tally)
        request = self.request + b"\r\n"
        while self._budget():
            writer = None
            served = 0
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port),
                                                        REQUEST_TIMEOUT)
            except (OSError, TimeoutError) as exc:
                self.tally.sent += 1
                gap.started(time.monotonic())
                if self.stop.is_set():
                    self.tally.sent -= 1
                    break
                self.tally.failed(exc)
                await self._pause_after_failure()
                continue
            try:
                while self._budget():
                    started = time.monotonic()
                    gap.started(started)
                    self.tally.sent += 1
                    try:
                        async with asyncio.timeout(REQUEST_TIMEOUT):
                            writer.write(request)
                            server, _, keep = await read_response(reader)
                    except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                            HTTPFailure, ValueError) as exc:
                        if self.stop.is_set():
                            self.tally.sent -= 1
                            break
                        if served and closed_before_answer(exc):
                            # an idle connection the server closed: a client sends the request again on
                            # a new one (RFC 9112, 9.3.1); counted apart, not a failure
                            self.tally.sent -= 1
                            self.tally.keepalive_closed += 1
                            break
                        self.tally.failed(exc)
                        self.tally.broken_keepalive += 1
                        await self._pause_after_failure()
                        break
                    served += 1
                    self._success(worker, server, started, gap)
                    if not keep:
                        break
            finally:
                writer.close()

    async def download_worker(self) -> None:
        request = (f"GET {self.args.download_path} HTTP/1.1\r\nHost: {self.host}\r\n"
                   f"Connection: close\r\n\r\n").encode()
        while not self.stop.is_set():
            writer = None
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port),
                                                        REQUEST_TIMEOUT)
                writer.write(request)
                read = asyncio.ensure_future(read_response(reader, self.args.download_rate))
                stopped = asyncio.ensure_future(self.stop.wait())
                done, _ = await asyncio.wait({read, stopped}, return_when=asyncio.FIRST_COMPLETED)
                if read not in done:  # the load ends: the download in flight is neither done nor broken
                    read.cancel()
                    with contextlib.suppress(BaseException):
                        await read
                    break
                stopped.cancel()
                read.result()
                self.tally.downloads_done += 1
            except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                    HTTPFailure, ValueError) as exc:
                if self.stop.is_set():
                    break
                self.tally.downloads_broken += 1
                if len(self.tally.examples) < 10:
                    self.tally.examples.append(f"download: {exc!r}"[:200])
                await self._pause_after_failure()
            finally:
                if writer is not None:
                    writer.close()

    async def run(self) -> dict[str, object]:
        start = time.monotonic()
        workers = [asyncio.create_task(self.new_connection_worker(i)) for i in range(self.args.conns)]
        workers += [asyncio.create_task(self.keepalive_worker(self.args.conns + i))
                    for i in range(self.args.keepalive)]
        workers += [asyncio.create_task(self.download_worker()) for _ in range(self.args.downloads)]
        stdin_task = asyncio.create_task(self._watch_stdin())
        ready_task = asyncio.create_task(self._announce_ready())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), self.args.seconds)
        self.stop.set()
        seconds = time.monotonic() - start
        await asyncio.gather(*workers, return_exceptions=True)
        for task in (stdin_task, ready_task):
            task.cancel()
        return self.tally.summary(seconds)

    async def _announce_ready(self) -> None:
        if self.args.conns + self.args.keepalive == 0:
            self.ready.set()
        await self.ready.wait()
        print(json.dumps({"ready": True}), flush=True)

    async def _watch_stdin(self) -> None:
        """Set ``stop`` on a line ``stop`` or the end of stdin (read by a daemon thread: a blocked read
        must not keep the process alive)."""
        loop = asyncio.get_running_loop()

        def read() -> None:
            for line in sys.stdin:
                if line.strip() == "stop":
                    break
            loop.call_soon_threadsafe(self.stop.set)

        threading.Thread(target=read, daemon=True).start()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--conns", type=int, default=8, help="new-connection workers")
    parser.add_argument("--keepalive", type=int, default=4, help="keep-alive workers")
    parser.add_argument("--downloads", type=int, default=2, help="long downloads at once")
    parser.add_argument("--download-path", default="/big.bin")
    parser.add_argument("--download-rate", type=float, default=1_000_000.0, help="bytes/s per download")
    parser.add_argument("--seconds", type=float, default=60.0, help="upper bound of the load's duration")
    parser.add_argument("--max-requests", type=int, default=500_000, help="upper bound of requests sent")
    args = parser.parse_args(argv)
    summary = asyncio.run(Load(args.host, args.port, args).run())
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
