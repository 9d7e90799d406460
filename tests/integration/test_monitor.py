"""The Monitor end to end on loopback: real nginx, a counting HTTP server, hung servers."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import pytest

import saru.monitor.scheduler as monitor_module
from saru.events import Event, FailuresReset, RealDown, RealUp, SoftFailure
from saru.model import CheckResult, CheckSpec, Config, GlobalConfig, RealConfig, RealRef, VirtualConfig
from saru.monitor import Monitor

pytestmark = pytest.mark.needs_nginx

PAGE = {"/check.html": "status: OK alive\n"}


# ---- helpers -----------------------------------------------------------------------------------------

class Recorder:
    """Event sink whose ``wait`` resolves on the first matching event (past or future)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._waiters: list[tuple[Callable[[Event], bool], asyncio.Future[Event]]] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)
        for predicate, future in self._waiters:
            if not future.done() and predicate(event):
                future.set_result(event)

    async def wait(self, predicate: Callable[[Event], bool], since: int = 0, timeout: float = 5) -> Event:
        for event in self.events[since:]:
            if predicate(event):
                return event
        future: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
        self._waiters.append((predicate, future))
        async with asyncio.timeout(timeout):
            return await future

    def mark(self) -> int:
        return len(self.events)

    def after(self, mark: int) -> list[Event]:
        return self.events[mark:]


def is_(kind: type, ref: RealRef) -> Callable[[Event], bool]:
    return lambda e: isinstance(e, kind) and e.real == ref  # type: ignore[attr-defined]


class CountingServer:
    """HTTP server that logs every connection as "request" or "connect" (closed without a request)."""

    def __init__(self) -> None:
        self.log: list[tuple[float, str]] = []
        self.healthy = True
        self.delay = 0.0  # seconds before answering
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self.port = 0

    async def start(self) -> CountingServer:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    def requests(self, since: float = 0.0) -> list[float]:
        return [t for t, kind in self.log if kind == "request" and t >= since]

    async def wait_requests(self, n: int, timeout: float = 5) -> None:
        if len(self.requests()) >= n:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((n, future))
        async with asyncio.timeout(timeout):
            await future

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            self.log.append((time.monotonic(), "connect"))
            writer.close()
            return
        self.log.append((time.monotonic(), "request"))
        for n, future in self._waiters:
            if not future.done() and len(self.requests()) >= n:
                future.set_result(None)
        if self.delay:
            await asyncio.sleep(self.delay)  # simulates a slow backend
        status, body = (b"200 OK", b"alive") if self.healthy else (b"503 Service Unavailable", b"")
        writer.write(b"HTTP/1.1 %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (
            status, len(body), body))
        try:
            await writer.drain()
        except ConnectionError:
            pass
        writer.close()

    async def close(self) -> None:
        self.server.close()
        await self.server.wait_closed()


@pytest.fixture
async def counting() -> AsyncIterator[Callable[[], asyncio.Future[CountingServer]]]:
    servers: list[CountingServer] = []

    async def start() -> CountingServer:
        server = await CountingServer().start()
        servers.append(server)
        return server

    yield start  # type: ignore[misc]
    for server in servers:
        await server.close()


@pytest.fixture
async def monitors() -> AsyncIterator[Callable[..., tuple[Monitor, Recorder]]]:
    made: list[Monitor] = []

    def make(**kwargs: object) -> tuple[Monitor, Recorder]:
        recorder = Recorder()
        monitor = Monitor(recorder, **kwargs)  # type: ignore[arg-type]
        made.append(monitor)
        return monitor, recorder

    yield make
    for monitor in made:
        await monitor.close()


def virtual(port: int, *reals: RealConfig, **kw: object) -> VirtualConfig:
    defaults: dict[str, object] = {
        "service": "http", "request": "/check.html", "receive": "alive", "checkinterval": 0.1,
        "checktimeout": 1.0, "negotiatetimeout": 1.0,
    }
    return VirtualConfig("tcp", "192.0.2.1", port, reals=reals, **{**defaults, **kw})  # type: ignore[arg-type]


def config(*virtuals: VirtualConfig, maintenancedir: str | None = None) -> Config:
    return Config("test.cf", GlobalConfig(maintenancedir=maintenancedir), virtuals)


def ref(v: VirtualConfig, real: RealConfig) -> RealRef:
    return RealRef(v.key, real.address, real.port)


# ---- verdicts ------------------------------------------------------------------------------------------

async def test_first_pass_gives_every_real_a_verdict(nginx, monitors):
    good, empty = nginx(files=PAGE), nginx(name="empty")
    r_good, r_404 = RealConfig("127.0.0.1", good.port), RealConfig("127.0.0.1", empty.port)
    r_refused = RealConfig("127.0.0.1", 1)
    v = virtual(80, r_good, r_404, r_refused)
    monitor, events = monitors()
    monitor.configure(config(v))
    await monitor.first_pass()
    assert monitor.health() == {ref(v, r_good): True, ref(v, r_404): False, ref(v, r_refused): False}
    snap = monitor.snapshot()[ref(v, r_404)]
    assert snap.last_result is not None and snap.last_result.message.startswith("HTTP 404")
    assert snap.checktype == "negotiate" and snap.last_checked is not None
    kinds = sorted((type(e).__name__, e.real.port) for e in events.events)  # type: ignore[attr-defined]
    assert kinds == sorted([("RealUp", good.port), ("RealDown", empty.port), ("RealDown", 1)])


async def test_listener_is_called_on_verdict_changes(nginx, monitors):
    server = nginx(files=PAGE)
    monitor, events = monitors()
    calls: list[dict[RealRef, bool | None]] = []
    monitor.add_listener(lambda: calls.append(monitor.health()))
    r = RealConfig("127.0.0.1", server.port)
    v = virtual(80, r)
    monitor.configure(config(v))
    await monitor.first_pass()
    assert calls == [{ref(v, r): True}]
    server.remove("/check.html")
    await events.wait(is_(RealDown, ref(v, r)))
    assert calls[-1] == {ref(v, r): False}


# ---- deduplication and scheduling --------------------------------------------------------------------

async def test_shared_real_is_checked_once_per_interval(counting, monitors):
    server = await counting()
    r = RealConfig("127.0.0.1", server.port)
    v1, v2 = virtual(80, r, checkinterval=0.2), virtual(8080, r, checkinterval=0.2)
    monitor, _ = monitors()
    monitor.configure(config(v1, v2))
    assert monitor.groups == 1
    await monitor.first_pass()
    assert len(server.requests()) == 1
    assert monitor.health() == {ref(v1, r): True, ref(v2, r): True}
    await server.wait_requests(5)
    times = server.requests()
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # after the first check the group moves onto its phase of the interval (saru.monitor.spread):
    # the second request comes within one interval, and from then on one request per 0.2 s, not two
    assert gaps[0] < 0.25, gaps
    assert all(0.15 < gap < 0.5 for gap in gaps[1:]), gaps


async def test_shared_check_uses_the_smallest_interval(counting, monitors):
    server = await counting()
    r = RealConfig("127.0.0.1", server.port)
    monitor, _ = monitors()
    monitor.configure(config(virtual(80, r, checkinterval=5), virtual(81, r, checkinterval=0.1)))
    await server.wait_requests(4, timeout=2)
    times = server.requests()
    assert times[3] - times[0] < 0.6


async def test_interval_is_measured_start_to_start(counting, monitors):
    server = await counting()
    server.delay = 0.06  # each check takes 60 ms: interval + duration would give 0.16 s periods
    r = RealConfig("127.0.0.1", server.port)
    monitor, _ = monitors()
    monitor.configure(config(virtual(80, r, checkinterval=0.1)))
    await server.wait_requests(11, timeout=3)
    times = server.requests()
    assert 0.9 <= times[10] - times[0] < 1.3  # 10 periods of 0.1 s (not 1.6 s)


async def test_one_hung_real_does_not_delay_the_others(counting, hung_server, monitors):
    server = await counting()
    good, hung = RealConfig("127.0.0.1", server.port), RealConfig("127.0.0.1", hung_server.port)
    v = virtual(80, good, hung, negotiatetimeout=1.0, checkinterval=0.1)
    monitor, events = monitors()
    start = time.time()
    monitor.configure(config(v))
    up = await events.wait(is_(RealUp, ref(v, good)))
    assert up.at - start < 0.2
    down = await events.wait(is_(RealDown, ref(v, hung)))
    assert 0.95 <= down.at - start < 1.3
    assert "timeout after 1s" in down.detail  # type: ignore[attr-defined]
    # while the hung check waited for its timeout, the good real kept its 0.1 s rhythm
    assert len(server.requests()) >= 8


def signal_nginx(server: object, sig: int) -> None:
    """Signal a test nginx's master and its workers (SIGSTOP: the kernel still completes handshakes)."""
    pid = server.process.pid  # type: ignore[attr-defined]
    for child in [pid, *map(int, Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]:
        os.kill(child, sig)


async def test_a_frozen_real_is_detected_by_the_timeout(nginx, monitors):
    """A real that still accepts connections but never answers (its process frozen) goes down with a
    timeout, within checkinterval + negotiatetimeout of the freeze (and a little slack)."""
    server = nginx(files=PAGE)
    r = RealConfig("127.0.0.1", server.port)
    v = virtual(80, r, checkinterval=0.3, negotiatetimeout=0.5)
    monitor, events = monitors()
    monitor.configure(config(v))
    await events.wait(is_(RealUp, ref(v, r)))
    mark = events.mark()
    frozen = time.time()
    signal_nginx(server, signal.SIGSTOP)
    try:
        down = await events.wait(is_(RealDown, ref(v, r)), since=mark)
    finally:
        signal_nginx(server, signal.SIGCONT)
    assert down.detail == "timeout after 0.5s"  # type: ignore[attr-defined]
    result = monitor.snapshot()[ref(v, r)].last_result
    assert result is not None and (result.failure, result.layer) == ("timeout", "L7")
    assert 0.5 <= down.at - frozen < 0.3 + 0.5 + 0.5


async def test_first_pass_is_bounded_by_the_timeout(hung_server, monitors):
    r = RealConfig("127.0.0.1", hung_server.port)
    monitor, _ = monitors()
    monitor.configure(config(virtual(80, r, negotiatetimeout=0.5, checkinterval=10)))
    start = time.monotonic()
    await monitor.first_pass()
    assert 0.45 <= time.monotonic() - start < 0.9
    assert list(monitor.health().values()) == [False]


# ---- hysteresis ------------------------------------------------------------------------------------------

async def test_failurecount_soft_failures_then_down_then_immediate_recovery(nginx, monitors):
    server = nginx(files=PAGE)
    r = RealConfig("127.0.0.1", server.port)
    v = virtual(80, r, failurecount=3, checkinterval=0.05)
    rr = ref(v, r)
    monitor, events = monitors()
    monitor.configure(config(v))
    await monitor.first_pass()
    mark = events.mark()
    server.remove("/check.html")
    await events.wait(is_(RealDown, rr), since=mark)
    got = [(type(e).__name__, getattr(e, "count", None)) for e in events.after(mark)]
    assert got == [("SoftFailure", 1), ("SoftFailure", 2), ("RealDown", None)]
    soft = events.after(mark)[0]
    assert isinstance(soft, SoftFailure) and soft.limit == 3 and soft.detail.startswith("HTTP 404")
    mark = events.mark()
    server.write("/check.html", PAGE["/check.html"])
    await events.wait(is_(RealUp, rr), since=mark)
    assert [type(e) for e in events.after(mark)] == [RealUp]


async def test_success_after_soft_failures_resets_the_count(counting, monitors):
    server = await counting()
    r = RealConfig("127.0.0.1", server.port)
    v = virtual(80, r, failurecount=5, checkinterval=0.05)
    rr = ref(v, r)
    monitor, events = monitors()
    monitor.configure(config(v))
    await monitor.first_pass()
    server.healthy = False
    await events.wait(lambda e: isinstance(e, SoftFailure) and e.count == 2)
    server.healthy = True
    await events.wait(is_(FailuresReset, rr))
    assert not any(isinstance(e, RealDown) for e in events.events)
    assert monitor.snapshot()[rr].failures == 0


async def test_rise_needs_consecutive_successes(counting, monitors):
    server = await counting()
    server.healthy = False
    r = RealConfig("127.0.0.1", server.port)
    v = virtual(80, r, checkinterval=0.05)
    monitor, events = monitors(rise=3)
    monitor.configure(config(v))
    await monitor.first_pass()
    assert monitor.health()[ref(v, r)] is False
    since = time.monotonic()
    server.healthy = True
    await events.wait(is_(RealUp, ref(v, r)))
    assert len(server.requests(since)) == 3


# ---- maintenancedir ------------------------------------------------------------------------------------

async def test_maintenance_file_forces_down_and_removal_restores(nginx, monitors, tmp_path: Path):
    server = nginx(files=PAGE)
    r = RealConfig("127.0.0.1", server.port)
    v = virtual(80, r, failurecount=5, checkinterval=0.05)
    rr = ref(v, r)
    monitor, events = monitors()
    monitor.configure(config(v, maintenancedir=str(tmp_path)))
    await monitor.first_pass()
    assert monitor.health()[rr] is True
    (tmp_path / f"127.0.0.1:{server.port}").touch()
    down = await events.wait(is_(RealDown, rr))
    assert down.detail == "Server in maintenance"  # type: ignore[attr-defined]
    assert not any(isinstance(e, SoftFailure) for e in events.events)  # bypasses failurecount
    assert monitor.snapshot()[rr].maintenance
    mark = events.mark()
    (tmp_path / f"127.0.0.1:{server.port}").unlink()
    await events.wait(is_(RealUp, rr), since=mark)
    assert not monitor.snapshot()[rr].maintenance


async def test_maintenance_by_reverse_dns_name(nginx, monitors, tmp_path: Path):
    try:
        name = socket.getnameinfo(("127.0.0.1", 0), socket.NI_NAMEREQD)[0]
    except OSError:
        pytest.skip("127.0.0.1 has no reverse name here")
    server = nginx(files=PAGE)
    r = RealConfig("127.0.0.1", server.port)
    v = virtual(80, r, checkinterval=0.05)
    (tmp_path / name).touch()
    monitor, events = monitors()
    monitor.configure(config(v, maintenancedir=str(tmp_path)))
    await monitor.first_pass()
    assert monitor.health()[ref(v, r)] is False
    assert monitor.snapshot()[ref(v, r)].maintenance
    assert not any(isinstance(e, RealUp) for e in events.events)  # no flap at start


async def test_maintenance_is_per_real_even_when_the_check_is_shared(nginx, monitors, tmp_path: Path):
    server = nginx(files=PAGE)
    a, b = RealConfig("127.0.0.1", 1111), RealConfig("127.0.0.1", 2222)
    v = virtual(80, a, b, checkport=server.port, checkinterval=0.05)
    monitor, events = monitors(maintenance_dir=str(tmp_path))
    monitor.configure(config(v))  # maintenance_dir from the constructor when the config has none
    assert monitor.groups == 1
    await monitor.first_pass()
    (tmp_path / "127.0.0.1:1111").touch()
    await events.wait(is_(RealDown, ref(v, a)))
    assert monitor.health() == {ref(v, a): False, ref(v, b): True}


# ---- combined checktype ---------------------------------------------------------------------------------

async def test_combined_runs_n_connects_between_negotiates(counting, monitors):
    server = await counting()
    r = RealConfig("127.0.0.1", server.port)
    monitor, _ = monitors()
    monitor.configure(config(virtual(80, r, checktype="2", checkinterval=0.03)))
    await server.wait_requests(3)
    kinds = [kind for _, kind in server.log][:7]
    assert kinds == ["request", "connect", "connect", "request", "connect", "connect", "request"]


async def test_combined_failed_connect_forces_a_negotiate(monitors, monkeypatch):
    script = iter([True, True, False, True, True, True, True, True, True])
    ran: list[str] = []
    done = asyncio.Event()

    async def fake_run_check(spec: CheckSpec) -> CheckResult:
        ran.append(spec.checktype)
        if len(ran) == 7:
            done.set()
        return CheckResult(ok=next(script, True), message=spec.checktype)

    monkeypatch.setattr(monitor_module, "run_check", fake_run_check)
    r = RealConfig("127.0.0.1", 80)
    monitor, _ = monitors()
    monitor.configure(config(virtual(80, r, checktype="3", checkinterval=0.01)))
    await asyncio.wait_for(done.wait(), 5)
    assert ran[:7] == ["negotiate", "connect", "connect", "negotiate", "connect", "connect", "connect"]


# ---- on / off / reconfigure ----------------------------------------------------------------------------

async def test_on_is_up_at_once_and_off_is_never_checked(monitors):
    on_real, off_real = RealConfig("127.0.0.1", 1), RealConfig("127.0.0.2", 1)
    v_on, v_off = virtual(80, on_real, checktype="on"), virtual(81, off_real, checktype="off")
    monitor, events = monitors()
    monitor.configure(config(v_on, v_off))
    assert monitor.health() == {ref(v_on, on_real): True, ref(v_off, off_real): None}
    assert monitor.groups == 0
    await monitor.first_pass()
    assert [type(e) for e in events.events] == [RealUp]
    assert monitor.snapshot()[ref(v_off, off_real)].checktype == "off"


async def test_configure_keeps_the_state_of_unchanged_reals(counting, nginx, monitors):
    server = await counting()
    page = nginx(files=PAGE)
    a, b = RealConfig("127.0.0.1", server.port), RealConfig("127.0.0.1", page.port)
    v = virtual(80, a, b, failurecount=3, checkinterval=0.05)
    ra, rb = ref(v, a), ref(v, b)
    monitor, events = monitors()
    monitor.configure(config(v))
    await monitor.first_pass()
    server.healthy = False
    await events.wait(lambda e: isinstance(e, SoftFailure) and e.real == ra)
    server.healthy = True
    before = monitor.snapshot()
    mark = events.mark()
    # reload: same check for a, a changed request for b, a new virtual
    c = RealConfig("127.0.0.1", page.port, request="/check.html")
    v2 = replace(v, reals=(a, replace(b, request="/check.html?reloaded")))
    v3 = virtual(90, c)
    monitor.configure(config(v2, v3))
    assert monitor.health()[ra] is True and monitor.health()[rb] is True  # nothing reset to unknown
    assert monitor.snapshot()[ra].last_result == before[ra].last_result
    await monitor.first_pass()
    await events.wait(is_(RealUp, ref(v3, c)), since=mark)
    assert [e for e in events.after(mark) if isinstance(e, (RealUp, RealDown))
            and e.real in (ra, rb)] == []  # no flap of the kept reals
    # a removed real disappears
    monitor.configure(config(replace(v, reals=(a,))))
    assert set(monitor.health()) == {ra}


async def test_close_stops_checking(counting, monitors):
    server = await counting()
    r = RealConfig("127.0.0.1", server.port)
    monitor, _ = monitors()
    monitor.configure(config(virtual(80, r, checkinterval=0.02)))
    await server.wait_requests(2)
    await monitor.close()
    count = len(server.log)
    await asyncio.sleep(0.1)  # nothing to wait for: asserting that nothing happens
    assert len(server.log) == count
