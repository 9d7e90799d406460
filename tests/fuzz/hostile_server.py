"""Misbehaving servers on 127.0.0.1, written for the check fuzzing (run as a subprocess, so that the
check's memory is measured alone): ``python -m tests.fuzz.hostile_server PLAN.json``.

The plan is a list of ``{"kind": "tcp"|"udp", "behaviour", "prefix", "unit"}`` (bytes as latin-1
strings); each gets a port of its own, chosen by the kernel. TCP behaviours, per connection:

* ``silent``: accept, never send;
* ``slowloris``: ``prefix``, then ``unit`` one byte every 50 ms, for ever;
* ``flood``: ``prefix``, then ``unit`` repeated as fast as the client reads (an endless line, endless
  header lines, endless continuation lines…), at most ``LIMIT`` bytes;
* ``garbage``: 4 KiB of random bytes, then the connection stays open;
* ``truncated``: ``prefix`` (a valid answer) cut in the middle, then close;
* ``reset``: close with a RST at once.

UDP behaviours, per datagram received: ``silent``, ``garbage`` (random bytes), ``truncated`` (the first
bytes of the request echoed), ``huge`` (one 65,000-byte datagram of ``unit``), ``storm`` (200 datagrams).
The process prints the ports (a JSON list, in the plan's order) once every one listens, and exits when
its stdin closes.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import struct
import sys
from typing import Any

LIMIT = 64 << 20  # a flood stops there: a check that buffers everything is seen, the machine is safe


async def serve_tcp(plan: dict[str, Any]) -> asyncio.Server:
    behaviour = plan["behaviour"]
    prefix = plan["prefix"].encode("latin-1")
    unit = plan["unit"].encode("latin-1") or b"a"

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        drain_task = asyncio.create_task(_discard(reader))
        try:
            if behaviour == "reset":
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
                return
            if behaviour == "truncated":
                writer.write(prefix[: max(1, len(prefix) // 2)])
                await writer.drain()
                writer.close()
                return
            if behaviour == "garbage":
                writer.write(random.Random(len(prefix)).randbytes(4096))
                await writer.drain()
            elif behaviour == "slowloris":
                writer.write(prefix)
                while True:
                    for byte in unit:
                        writer.write(bytes([byte]))
                        await writer.drain()
                        await asyncio.sleep(0.05)
            elif behaviour == "flood":
                writer.write(prefix)
                block = unit * max(1, 65536 // len(unit))
                sent = 0
                while sent < LIMIT:
                    writer.write(block)
                    await writer.drain()
                    sent += len(block)
            await asyncio.sleep(3600)  # silent, and what is left of the others: hold the connection
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            drain_task.cancel()
            writer.transport.abort()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def _discard(reader: asyncio.StreamReader) -> None:
    """Read (and forget) whatever the client sends, so that its writes never block."""
    while await reader.read(65536):
        pass


class UDPHostile(asyncio.DatagramProtocol):
    def __init__(self, plan: dict[str, Any]) -> None:
        self.behaviour = plan["behaviour"]
        self.unit = plan["unit"].encode("latin-1") or b"a"
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        send = self.transport.sendto
        if self.behaviour == "garbage":
            send(os.urandom(512), addr)
        elif self.behaviour == "truncated":
            send(data[: len(data) // 2], addr)
        elif self.behaviour == "huge":
            send((self.unit * (65000 // len(self.unit) + 1))[:65000], addr)
        elif self.behaviour == "storm":
            for _ in range(200):
                send(data[:2] + os.urandom(64), addr)  # the request's id (DNS, RADIUS) and then nonsense


async def main(plans: list[dict[str, Any]]) -> None:
    loop = asyncio.get_running_loop()
    ports = []
    for plan in plans:
        if plan["kind"] == "tcp":
            server = await serve_tcp(plan)
            ports.append(server.sockets[0].getsockname()[1])
        else:
            transport, _ = await loop.create_datagram_endpoint(lambda p=plan: UDPHostile(p),
                                                               local_addr=("127.0.0.1", 0))
            ports.append(transport.get_extra_info("sockname")[1])
    print(json.dumps(ports), flush=True)
    await loop.run_in_executor(None, sys.stdin.read)  # until the test closes our stdin


if __name__ == "__main__":
    with open(sys.argv[1]) as fh:
        asyncio.run(main(json.load(fh)))
