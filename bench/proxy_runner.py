"""Run a Saru ProxyDataplane in its own process, for the proxy benchmark.

Usage: ``proxy_runner.py LISTEN_HOST:PORT REAL_HOST:PORT [REAL_HOST:PORT …] [--scheduler rr] [--thread]
[--no-splice]``.
Prints ``ready`` on stdout once the service is programmed, and runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from saru.dataplane.proxy import ProxyDataplane
from saru.model import AddDest, AddService, Dest, Op, ServiceKey, ServiceSettings


def hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


async def serve(
    listen: tuple[str, int], reals: list[tuple[str, int]], scheduler: str, udp: bool, threaded: bool,
    splice: bool = True,
) -> None:
    plane = ProxyDataplane(threaded=threaded, splice=splice)
    await plane.start()
    family = 6 if ":" in listen[0] else 4
    key = ServiceKey("udp" if udp else "tcp", listen[0], listen[1], family=family)
    ops: list[Op] = [AddService(key, ServiceSettings(scheduler=scheduler))]
    ops += [AddDest(key, Dest(host, port, "masq", 1)) for host, port in reals]
    await plane.apply(ops)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    await stop.wait()
    await plane.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("listen")
    parser.add_argument("reals", nargs="+")
    parser.add_argument("--scheduler", default="rr")
    parser.add_argument("--udp", action="store_true")
    parser.add_argument("--thread", action="store_true", help="forward in a thread, not on the asyncio loop")
    parser.add_argument("--no-splice", action="store_true", help="copy bulk transfers through Python")
    args = parser.parse_args()
    reals = [hostport(r) for r in args.reals]
    asyncio.run(serve(hostport(args.listen), reals, args.scheduler, args.udp, args.thread, not args.no_splice))


if __name__ == "__main__":
    main()
