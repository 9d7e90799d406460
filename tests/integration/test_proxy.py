"""The userspace proxy data plane against real nginx backends (and UDP/TCP echo servers) on loopback.

The HTTP client here is asyncio-based so that it shares the event loop with the proxy under test.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from functools import partial
from typing import Any

import pytest

from saru.dataplane.base import DataplaneError
from saru.dataplane.proxy import ProxyDataplane
from saru.model import (
    AddDest,
    AddService,
    DelDest,
    DelService,
    Dest,
    EditDest,
    EditService,
    Op,
    ServiceKey,
    ServiceSettings,
    Table,
)
from tests.helpers import Nginx, free_port, require

pytestmark = pytest.mark.needs_nginx
Two = tuple[Nginx, Nginx]
NginxFactory = Callable[..., Nginx]


class Http:
    """A minimal HTTP/1.1 client connection (keep-alive unless asked otherwise)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.sent = self.received = 0

    @classmethod
    async def open(cls, host: str, port: int) -> Http:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
        return cls(reader, writer)

    async def get(self, path: str = "/index.html", close: bool = False) -> tuple[int, dict[str, str], bytes]:
        extra = "Connection: close\r\n" if close else ""
        request = f"GET {path} HTTP/1.1\r\nHost: test\r\n{extra}\r\n"
        self.writer.write(request.encode())
        self.sent += len(request)
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 5)
        lines = head.decode().split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        body = await asyncio.wait_for(self.reader.readexactly(int(headers.get("content-length", "0"))), 5)
        self.received += len(head) + len(body)
        return status, headers, body

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except OSError:
            pass


async def real_of(port: int, host: str = "127.0.0.1", path: str = "/index.html") -> str:
    """Which real answers a fresh connection."""
    conn = await Http.open(host, port)
    try:
        status, headers, _ = await conn.get(path, close=True)
        assert status == 200
        return headers["x-real-server"]
    finally:
        await conn.close()


async def wait_until(condition: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    """Wait for a condition that has no event of its own (e.g. a UDP flow timing out)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def tcp(port: int, host: str = "127.0.0.1") -> ServiceKey:
    return ServiceKey("tcp", host, port, family=6 if ":" in host else 4)


def service_ops(key: ServiceKey, reals: Sequence[Nginx | tuple[str, int]], scheduler: str = "rr",
                weights: list[int] | None = None, **settings: Any) -> list[Op]:
    ops: list[Op] = [AddService(key, ServiceSettings(scheduler=scheduler, **settings))]
    for i, real in enumerate(reals):
        host, port = (real.host, real.port) if isinstance(real, Nginx) else real
        ops.append(AddDest(key, Dest(host, port, "masq", weights[i] if weights else 1)))
    return ops


@pytest.fixture(params=[True, False], ids=["thread", "asyncio"])
async def plane(request: pytest.FixtureRequest) -> AsyncIterator[ProxyDataplane]:
    p = ProxyDataplane(udp_timeout=0.3, connect_timeout=0.3, threaded=request.param)
    await p.start()
    yield p
    await p.close()


@pytest.fixture
def two(nginx: Callable[..., Nginx]) -> Two:
    return (
        nginx(name="rs1", files={"/index.html": "one\n"}),
        nginx(name="rs2", files={"/index.html": "two\n"}),
    )


async def test_rr_alternates(plane: ProxyDataplane, two: Two) -> None:
    key = tcp(free_port())
    await plane.apply(service_ops(key, list(two)))
    assert [await real_of(key.port) for _ in range(4)] == ["rs1", "rs2", "rs1", "rs2"]


async def test_wrr_three_to_one_and_edit_dest(plane: ProxyDataplane, two: Two) -> None:
    key = tcp(free_port())
    await plane.apply(service_ops(key, list(two), "wrr", [3, 1]))
    assert collections.Counter([await real_of(key.port) for _ in range(8)]) == {"rs1": 6, "rs2": 2}
    await plane.apply([EditDest(key, Dest(two[1].host, two[1].port, "masq", 3))])
    got = collections.Counter([await real_of(key.port) for _ in range(12)])
    assert got == {"rs1": 6, "rs2": 6}
    table = await plane.read()
    assert table.services[key].dests[(two[1].host, two[1].port)].weight == 3


async def test_weight_zero_stops_new_connections_but_keeps_established(
    plane: ProxyDataplane, two: Two
) -> None:
    key = tcp(free_port())
    await plane.apply(service_ops(key, list(two)))
    kept = await Http.open("127.0.0.1", key.port)
    assert (await kept.get())[1]["x-real-server"] == "rs1"
    await plane.apply([EditDest(key, Dest(two[0].host, two[0].port, "masq", 0))])
    assert {await real_of(key.port) for _ in range(4)} == {"rs2"}
    assert (await kept.get())[1]["x-real-server"] == "rs1"
    stats = await plane.stats()
    assert stats[key].dests[(two[0].host, two[0].port)].active_connections == 1
    await kept.close()


async def test_del_dest_drains(plane: ProxyDataplane, two: Two) -> None:
    key = tcp(free_port())
    await plane.apply(service_ops(key, list(two)))
    kept = await Http.open("127.0.0.1", key.port)
    assert (await kept.get())[1]["x-real-server"] == "rs1"
    await plane.apply([DelDest(key, two[0].host, two[0].port)])
    assert {await real_of(key.port) for _ in range(4)} == {"rs2"}
    for _ in range(3):
        assert (await kept.get())[1]["x-real-server"] == "rs1"
    await kept.close()
    assert list((await plane.read()).services[key].dests) == [(two[1].host, two[1].port)]


async def test_expire_nodest_conn_resets_a_removed_real_s_connections_not_a_drained_one(
    plane: ProxyDataplane, two: Two
) -> None:
    plane.expire_nodest_conn = True
    key = tcp(free_port())
    await plane.apply(service_ops(key, list(two)))
    first, second = await Http.open("127.0.0.1", key.port), await Http.open("127.0.0.1", key.port)
    assert [(await c.get())[1]["x-real-server"] for c in (first, second)] == ["rs1", "rs2"]
    await plane.apply([EditDest(key, Dest(two[0].host, two[0].port, "masq", 0))])  # drain: kept
    assert (await first.get())[1]["x-real-server"] == "rs1"
    await plane.apply([DelDest(key, two[0].host, two[0].port), DelDest(key, two[1].host, two[1].port),
                       AddDest(key, Dest(two[1].host, two[1].port, "masq", 1))])  # rs2 re-added: kept
    with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
        await first.get()
    assert (await second.get())[1]["x-real-server"] == "rs2"
    assert plane._poller is not None and len(plane._poller.live) == 1
    await asyncio.gather(first.close(), second.close())


async def test_expire_nodest_conn_ends_a_removed_real_s_udp_flows(plane: ProxyDataplane, echoes: list[int]) -> None:
    plane.expire_nodest_conn = True
    key = ServiceKey("udp", "127.0.0.1", free_port("127.0.0.1", socket.SOCK_DGRAM))
    await plane.apply(service_ops(key, [("127.0.0.1", p) for p in echoes[:1]]))
    transport, client = await udp_client(key.port)
    transport.sendto(b"a")
    assert await asyncio.wait_for(client.replies.get(), 5) == b"e1:a"
    await plane.apply([AddDest(key, Dest("127.0.0.1", echoes[1], "masq", 1)),
                       DelDest(key, "127.0.0.1", echoes[0])])
    transport.sendto(b"b")  # the flow to e1 ended with it: the client is scheduled anew
    assert await asyncio.wait_for(client.replies.get(), 5) == b"e2:b"
    transport.close()


async def test_del_service_closes_listener_and_drains(plane: ProxyDataplane, two: Two) -> None:
    key = tcp(free_port())
    await plane.apply(service_ops(key, list(two)))
    kept = await Http.open("127.0.0.1", key.port)
    assert (await kept.get())[0] == 200
    await plane.apply([DelService(key)])
    with pytest.raises(ConnectionRefusedError):
        await Http.open("127.0.0.1", key.port)
    assert (await kept.get())[0] == 200
    await kept.close()
    assert await plane.read() == Table()
    await plane.apply(service_ops(key, [two[1]]))  # the port can be bound again
    assert await real_of(key.port) == "rs2"


async def test_del_and_re_add_in_one_batch_keeps_the_listener(
    plane: ProxyDataplane, two: Two
) -> None:
    key = tcp(free_port())
    await plane.apply(service_ops(key, [two[0]]))
    await plane.apply([DelService(key), *service_ops(key, [two[1]])])
    assert await real_of(key.port) == "rs2"


async def test_edit_service_changes_scheduler(plane: ProxyDataplane, two: Two) -> None:
    key = tcp(free_port())
    await plane.apply(service_ops(key, list(two), "wrr", [1, 1]))
    await plane.apply([EditService(key, ServiceSettings(scheduler="fo"))])
    assert {await real_of(key.port) for _ in range(4)} == {"rs1"}
    assert (await plane.read()).services[key].settings.scheduler == "fo"


async def test_persistence_keeps_a_client_on_one_real(plane: ProxyDataplane, two: Two) -> None:
    key = tcp(free_port())
    await plane.apply(service_ops(key, list(two), "rr", persistent=60))
    assert len({await real_of(key.port) for _ in range(6)}) == 1


@pytest.mark.parametrize("scheduler", ["sh", "mh", "dh"])
async def test_hash_schedulers_are_stable(plane: ProxyDataplane, two: Two, scheduler: str) -> None:
    key = tcp(free_port())
    await plane.apply(service_ops(key, list(two), scheduler))
    assert len({await real_of(key.port) for _ in range(6)}) == 1


async def test_connect_failure_retries_on_another_real(plane: ProxyDataplane, two: Two) -> None:
    key = tcp(free_port())
    dead = ("127.0.0.1", free_port())  # nothing listens there
    await plane.apply(service_ops(key, [dead, (two[0].host, two[0].port)]))
    assert [await real_of(key.port) for _ in range(4)] == ["rs1"] * 4


async def test_connect_timeout_retries_on_another_real(plane: ProxyDataplane, two: Two) -> None:
    # A listener with a full accept queue drops SYNs: connects to it hang.
    blackhole = socket.socket()
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(0)
    fillers = []
    for _ in range(3):
        f = socket.socket()
        f.setblocking(False)
        f.connect_ex(blackhole.getsockname())
        fillers.append(f)
    key = tcp(free_port())
    await plane.apply(service_ops(key, [blackhole.getsockname(), (two[0].host, two[0].port)]))
    try:
        assert [await real_of(key.port) for _ in range(3)] == ["rs1"] * 3
    finally:
        for s in [*fillers, blackhole]:
            s.close()


async def test_large_response_and_stats_count_bytes(plane: ProxyDataplane, nginx: NginxFactory) -> None:
    big = "0123456789abcdef" * 65536  # 1 MiB: exercises the relay's back-pressure path
    real = nginx(name="rs1", files={"/big.txt": big, "/index.html": "one\n"})
    key = tcp(free_port())
    await plane.apply(service_ops(key, [real]))
    conn = await Http.open("127.0.0.1", key.port)
    for path in ("/big.txt", "/index.html", "/big.txt"):
        status, _, body = await conn.get(path)
        assert status == 200 and len(body) == len(big if path == "/big.txt" else "one\n")
    stats = (await plane.stats())[key]
    d = stats.dests[(real.host, real.port)]
    assert (stats.connections, d.connections, d.active_connections) == (1, 1, 1)
    assert (stats.bytes_in, stats.bytes_out) == (conn.sent, conn.received)
    assert (d.bytes_in, d.bytes_out) == (conn.sent, conn.received)
    await conn.close()
    await real_of(key.port)
    stats = (await plane.stats())[key]
    assert stats.connections == 2


async def test_a_reading_in_which_nothing_moved_gives_the_same_objects(plane: ProxyDataplane,
                                                                     nginx: NginxFactory) -> None:
    """A service none of whose counters moved is read as the same ServiceStats (the metrics skip it);
    a new connection, its bytes and its end each give a new reading."""
    real = nginx(name="rs1", files={"/index.html": "one\n"})
    key = tcp(free_port())
    await plane.apply(service_ops(key, [real]))
    first = (await plane.stats())[key]
    assert (await plane.stats())[key] is first
    conn = await Http.open("127.0.0.1", key.port)
    status, _, _ = await conn.get("/index.html")
    during = (await plane.stats())[key]
    assert status == 200 and during is not first
    assert during.dests[(real.host, real.port)].active_connections == 1
    assert (await plane.stats())[key] is during
    await conn.close()

    async def ended() -> bool:  # (the relay sees the FIN shortly after)
        return (await plane.stats())[key].dests[(real.host, real.port)].active_connections == 0

    await wait_until(ended)
    after = (await plane.stats())[key]
    assert after is not during and (after.connections, after.bytes_in) == (1, conn.sent)
    await plane.zero(key)
    assert (await plane.stats())[key].connections == 0


async def test_half_close_is_forwarded(plane: ProxyDataplane) -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read()  # until the client's FIN
        writer.write(data[::-1])
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    key = tcp(free_port())
    await plane.apply(service_ops(key, [("127.0.0.1", port)]))
    reader, writer = await asyncio.open_connection("127.0.0.1", key.port)
    writer.write(b"hello")
    writer.write_eof()
    assert await asyncio.wait_for(reader.read(), 5) == b"olleh"
    writer.close()
    server.close()
    await server.wait_closed()


async def test_server_speaks_first_and_big_upload(plane: ProxyDataplane) -> None:
    """A banner before the client says anything (SMTP-like), then 2 MiB each way."""

    async def banner_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 ready\r\n")
        await writer.drain()
        data = await reader.read()
        writer.write(hashlib.sha256(data).hexdigest().encode() + b"\r\n" + data)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(banner_echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    key = tcp(free_port())
    await plane.apply(service_ops(key, [("127.0.0.1", port)]))
    reader, writer = await asyncio.open_connection("127.0.0.1", key.port)
    assert await asyncio.wait_for(reader.readline(), 5) == b"220 ready\r\n"
    payload = bytes(range(256)) * 8192
    writer.write(payload)
    writer.write_eof()
    digest = await asyncio.wait_for(reader.readline(), 10)
    assert digest.strip() == hashlib.sha256(payload).hexdigest().encode()
    assert await asyncio.wait_for(reader.read(), 10) == payload
    writer.close()
    server.close()
    await server.wait_closed()


async def test_bulk_transfers_are_spliced_both_ways(plane: ProxyDataplane) -> None:
    """16 MiB streamed up and echoed back at once: both directions switch to splice (their pipes end
    in the pool), every byte arrives in order, and the counters count them."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1 << 20):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    key = tcp(free_port())
    await plane.apply(service_ops(key, [("127.0.0.1", server.sockets[0].getsockname()[1])]))
    reader, writer = await asyncio.open_connection("127.0.0.1", key.port)
    payload = hashlib.sha256(b"seed").digest() * (1 << 19)  # 16 MiB, not a repeating byte pattern

    async def send() -> None:
        for i in range(0, len(payload), 1 << 20):
            writer.write(payload[i:i + (1 << 20)])
            await writer.drain()
        writer.write_eof()

    got, _ = await asyncio.wait_for(asyncio.gather(reader.read(), send()), 30)
    assert len(got) == len(payload) and got == payload
    writer.close()
    assert plane._poller is not None
    poller = plane._poller

    async def pooled() -> bool:
        return len(poller.pipes) == 2  # one pipe per direction, back in the pool once the relay ended

    await wait_until(pooled)
    stats = (await plane.stats())[key]
    assert stats.bytes_in == stats.bytes_out == len(payload)
    server.close()
    await server.wait_closed()


async def test_slow_reader_gets_everything(plane: ProxyDataplane, nginx: NginxFactory) -> None:
    """A client with a tiny receive buffer: the relay must hold back and resume, losing nothing."""
    big = "".join(f"{i:07d}\n" for i in range(400_000))  # 3.2 MB
    real = nginx(name="rs1", files={"/big.txt": big})
    key = tcp(free_port())
    await plane.apply(service_ops(key, [real]))
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", key.port))
    await loop.sock_sendall(sock, b"GET /big.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    chunks = []
    while chunk := await asyncio.wait_for(loop.sock_recv(sock, 1000), 10):
        chunks.append(chunk)
    sock.close()
    response = b"".join(chunks)
    assert response.split(b"\r\n\r\n", 1)[1] == big.encode()


async def test_two_threaded_planes_in_one_process_keep_their_data_apart(nginx: NginxFactory) -> None:
    bodies = {name: "".join(f"{name}{i:07d}\n" for i in range(100_000)) for name in ("rs1", "rs2")}
    reals = [nginx(name=name, files={"/big.txt": body}) for name, body in bodies.items()]
    planes = [ProxyDataplane(threaded=True) for _ in reals]
    keys = [tcp(free_port()) for _ in reals]
    try:
        for plane, key, real in zip(planes, keys, reals, strict=True):
            await plane.apply(service_ops(key, [real]))

        async def fetch(port: int) -> bytes:
            conn = await Http.open("127.0.0.1", port)
            try:
                return (await conn.get("/big.txt"))[2]
            finally:
                await conn.close()

        for _ in range(3):
            got = await asyncio.gather(*(fetch(k.port) for k in keys for _ in range(3)))
            assert got == [bodies[n].encode() for n in bodies for _ in range(3)]
    finally:
        for plane in planes:
            await plane.close()


async def test_many_concurrent_clients(plane: ProxyDataplane, two: Two) -> None:
    key = tcp(free_port())
    await plane.apply(service_ops(key, list(two), "wlc"))
    got = await asyncio.gather(*(real_of(key.port) for _ in range(200)))
    assert set(got) == {"rs1", "rs2"}
    assert (await plane.stats())[key].connections == 200

    async def all_closed() -> bool:  # the clients are done; the relays see both FINs shortly after
        return sum(d.active_connections for d in (await plane.stats())[key].dests.values()) == 0

    await wait_until(all_closed)


class Echo(asyncio.DatagramProtocol):
    """A UDP echo server that prefixes replies with its name."""

    def __init__(self, name: str) -> None:
        self.name = name.encode()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(self.name + b":" + data, addr)


class Client(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.replies: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.replies.put_nowait(data)


@pytest.fixture
async def echoes() -> AsyncIterator[list[int]]:
    loop = asyncio.get_running_loop()
    transports = []
    ports = []
    for name in ("e1", "e2"):
        t, _ = await loop.create_datagram_endpoint(partial(Echo, name), local_addr=("127.0.0.1", 0))
        transports.append(t)
        ports.append(t.get_extra_info("sockname")[1])
    yield ports
    for t in transports:
        t.close()


async def udp_client(port: int) -> tuple[asyncio.DatagramTransport, Client]:
    loop = asyncio.get_running_loop()
    return await loop.create_datagram_endpoint(Client, remote_addr=("127.0.0.1", port))


async def test_udp_relay_round_robin_per_client_flow(plane: ProxyDataplane, echoes: list[int]) -> None:
    key = ServiceKey("udp", "127.0.0.1", free_port("127.0.0.1", socket.SOCK_DGRAM))
    await plane.apply(service_ops(key, [("127.0.0.1", p) for p in echoes]))
    clients = [await udp_client(key.port) for _ in range(2)]
    answers = []
    for transport, proto in clients:
        for i in range(3):
            transport.sendto(f"ping{i}".encode())
            answers.append(await asyncio.wait_for(proto.replies.get(), 5))
    assert answers == [b"e1:ping0", b"e1:ping1", b"e1:ping2", b"e2:ping0", b"e2:ping1", b"e2:ping2"]
    stats = (await plane.stats())[key]
    assert stats.connections == 2
    assert stats.bytes_in == 6 * 5 and stats.bytes_out == 6 * 8

    async def idle() -> bool:  # udp_timeout=0.3: both flows end once quiet
        return sum(d.active_connections for d in (await plane.stats())[key].dests.values()) == 0

    await wait_until(idle)
    for transport, _ in clients:
        transport.close()


async def test_udp_one_packet_scheduling(plane: ProxyDataplane, echoes: list[int]) -> None:
    key = ServiceKey("udp", "127.0.0.1", free_port("127.0.0.1", socket.SOCK_DGRAM))
    await plane.apply(service_ops(key, [("127.0.0.1", p) for p in echoes], ops=True))
    transport, proto = await udp_client(key.port)
    answers = []
    for i in range(4):
        transport.sendto(f"p{i}".encode())
        answers.append(await asyncio.wait_for(proto.replies.get(), 5))
    assert answers == [b"e1:p0", b"e2:p1", b"e1:p2", b"e2:p3"]
    stats = (await plane.stats())[key]
    assert stats.connections == 4  # every datagram is a connection, as in IPVS
    assert sum(d.active_connections for d in stats.dests.values()) == 2  # one flow per real carries replies
    transport.close()


async def test_ipv6(plane: ProxyDataplane, nginx: NginxFactory) -> None:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        require(False, "::1 is not available")
    real = nginx(name="rs6", host="::1", files={"/index.html": "six\n"})
    key = tcp(free_port("::1"), "::1")
    await plane.apply(service_ops(key, [real], persistent=30, netmask="64"))
    assert await real_of(key.port, "::1") == "rs6"


async def test_bind_failure_raises_and_changes_nothing(plane: ProxyDataplane, two: Two) -> None:
    first = tcp(free_port())
    await plane.apply(service_ops(first, [two[0]]))
    before = await plane.read()
    fresh = tcp(free_port())
    busy = two[1].port  # nginx listens there
    with pytest.raises(DataplaneError, match="cannot listen"):
        await plane.apply([
            DelDest(first, two[0].host, two[0].port),
            *service_ops(fresh, [two[0]]),
            *service_ops(tcp(busy), [two[0]]),
        ])
    assert await plane.read() == before
    assert await real_of(first.port) == "rs1"
    with socket.socket() as s:  # the service bound before the failure was released
        s.bind(("127.0.0.1", fresh.port))


@pytest.mark.parametrize(
    ("ops_of", "message"),
    [
        (lambda k: [AddService(ServiceKey("fwm", "", 0, 7), ServiceSettings())], "firewall marks"),
        (lambda k: [AddService(tcp(free_port()), ServiceSettings(scheduler="lbl"))], "unknown scheduler"),
        (lambda k: [DelDest(k, "127.0.0.9", 80)], "no destination"),
        (lambda k: [AddService(k, ServiceSettings())], "already exists"),
        (lambda k: [AddDest(k, Dest("not-an-ip", 80))], "not an IP"),
    ],
)
async def test_invalid_batches_are_refused_whole(
    plane: ProxyDataplane, two: Two, ops_of: Callable[[ServiceKey], list[Op]], message: str
) -> None:
    key = tcp(free_port())
    await plane.apply(service_ops(key, [two[0]]))
    before = await plane.read()
    with pytest.raises(DataplaneError, match=message):
        await plane.apply([EditDest(key, Dest(two[0].host, two[0].port, "masq", 0)), *ops_of(key)])
    assert await plane.read() == before
    assert await real_of(key.port) == "rs1"


def test_capabilities_say_what_a_proxy_does() -> None:
    caps = ProxyDataplane.capabilities
    assert {"gate", "masq", "ipip"} == caps.forwards and "fwm" not in caps.protocols
    assert {"rr", "wrr", "lc", "wlc", "sh", "dh", "mh", "sed", "nq"} <= caps.schedulers
    assert "direct routing" in caps.notes  # type: ignore[attr-defined]


