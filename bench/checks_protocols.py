"""Cost of one health check per protocol: checks per CPU-second at 1,000 reals, on loopback.

For every check registered in ``saru.checks`` when it runs, this benchmark measures the protocols it
can serve cheaply at 1,000 loopback addresses, and lists the others as skipped with the reason:

* ``negotiate``/``http``, ``connect`` and ``negotiate``/``simpletcp`` (``GET /check.html`` line,
  ``OK alive`` expected): two plain nginx processes, 500 addresses each (127.160-161.x.y);
* ``negotiate``/``https``: two TLS nginx processes, 500 addresses each (127.162-163.x.y);
* ``ping``: ICMP echo to 127.164.x.y (the kernel answers);
* ``external``: ``checkcommand=/bin/true`` (a fork+exec per check; the children's CPU counts);
* ``external-perl``: a Perl file that exits 0, run by the system's perl (children's CPU counts).

One Saru ``Monitor`` checks all 1,000 reals every 0.5 s (timeout 5 s) for a window; the cost is the
checking process's CPU (user + system, plus reaped children for ``external``). Prints a table and writes
``bench/results/checks_protocols.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

from checks_bench import NginxGroup, raise_fd_limit  # noqa: E402

from saru.checks import base  # noqa: E402
from saru.model import Config, GlobalConfig, RealConfig, VirtualConfig  # noqa: E402
from saru.monitor import Monitor  # noqa: E402

RESULTS = BENCH / "results" / "checks_protocols.json"
REALS = 1000
PLAIN_BLOCKS, TLS_BLOCKS, PING_BLOCK = (160, 161), (162, 163), 164


@dataclass(frozen=True)
class Protocol:
    """How one registered check is exercised: its config fields and which backends serve it."""

    name: str
    key: tuple[str, str]  # (checktype, service) as registered
    fields: dict[str, object]
    backend: str  # "plain" | "tls" | "ping"
    children: bool = False  # count reaped children's CPU (fork+exec checks)


PROTOCOLS = [
    Protocol("http", ("negotiate", "http"), {"checktype": "negotiate", "service": "http",
                                              "request": "/check.html", "receive": "OK alive"}, "plain"),
    Protocol("https", ("negotiate", "https"), {"checktype": "negotiate", "service": "https",
                                                "request": "/check.html", "receive": "OK alive"}, "tls"),
    Protocol("connect", ("connect", "*"), {"checktype": "connect", "service": "none"}, "plain"),
    Protocol("simpletcp", ("negotiate", "simpletcp"),
             {"checktype": "negotiate", "service": "simpletcp",
              "request": "/GET /check.html HTTP/1.0\\n\\n", "receive": "OK alive"}, "plain"),
    Protocol("ping", ("ping", "*"), {"checktype": "ping", "service": "none"}, "ping"),
    Protocol("external", ("external", "*"), {"checktype": "external", "service": "none",
                                             "checkcommand": "/bin/true"}, "plain", children=True),
    Protocol("external-perl", ("external-perl", "*"),
             {"checktype": "external-perl", "service": "none", "checkcommand": "{work}/ok.pl"}, "plain",
             children=True),
]
NO_IO = {("on", "*"), ("off", "*"), ("negotiate", "none")}


def registered() -> set[tuple[str, str]]:
    """Every (checktype, service) registered by saru.checks right now."""
    return base.registered_checks()


def endpoints(blocks: tuple[int, ...], count: int, port: int) -> list[tuple[str, int]]:
    per = -(-count // len(blocks))
    return [(f"127.{b}.{i // 250}.{i % 250 + 1}", port) for b in blocks for i in range(per)][:count]


def cpu_seconds(children: bool) -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    total = own.ru_utime + own.ru_stime
    if children:
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        total += kids.ru_utime + kids.ru_stime
    return total


def build_config(reals: list[tuple[str, int]], fields: dict[str, object]) -> Config:
    virtuals = []
    for n, start in enumerate(range(0, len(reals), 100)):
        chunk = reals[start:start + 100]
        virtuals.append(VirtualConfig(
            "tcp", "192.0.2.1", 10000 + n, checkinterval=0.5, checktimeout=5, negotiatetimeout=5,
            reals=tuple(RealConfig(a, p, "masq") for a, p in chunk), **fields,  # type: ignore[arg-type]
        ))
    return Config("bench.cf", GlobalConfig(), tuple(virtuals))


async def measure(proto: Protocol, reals: list[tuple[str, int]], seconds: float,
                  work: Path) -> dict[str, object]:
    """Checks per CPU-second over full passes of every real."""
    fields = {k: v.format(work=work) if isinstance(v, str) else v for k, v in proto.fields.items()}
    monitor = Monitor(lambda event: None)
    try:
        monitor.configure(build_config(reals, fields))
        await monitor.first_pass()
        down = sum(1 for up in monitor.health().values() if not up)
        await asyncio.sleep(0.5)
        checks0, cpu0, wall0 = monitor.checks_run, cpu_seconds(proto.children), time.perf_counter()
        await asyncio.sleep(seconds)
        checks = monitor.checks_run - checks0
        cpu, wall = cpu_seconds(proto.children) - cpu0, time.perf_counter() - wall0
    finally:
        await monitor.close()
    return {"checks": checks, "cpu_seconds": round(cpu, 3), "wall_seconds": round(wall, 2),
            "checks_per_cpu_second": round(checks / cpu) if cpu else None,
            "checks_per_wall_second": round(checks / wall), "reals_down": down,
            "cpu_includes_children": proto.children}


def print_table(results: dict[str, dict[str, object]], skipped: dict[str, str]) -> None:
    print(f"\n{'protocol':<20}{'checks/CPU-s':>14}{'checks/s':>11}{'CPU s':>8}{'down':>6}")
    print("-" * 59)
    for name, r in results.items():
        per_cpu = r["checks_per_cpu_second"]
        per_cpu_text = f"{per_cpu:,}" if isinstance(per_cpu, int) else "n/a"
        print(f"{name:<20}{per_cpu_text:>14}{r['checks_per_wall_second']:>11,}{r['cpu_seconds']:>8}"
              f"{r['reals_down']:>6}")
    for name, why in skipped.items():
        print(f"{name:<20}{'skipped':>14}  {why}")


async def main(args: argparse.Namespace) -> dict[str, object]:
    fd_limit = raise_fd_limit()
    present = registered()
    wanted = [p for p in PROTOCOLS if p.key in present and (not args.only or p.name in args.only)]
    skipped: dict[str, str] = {}
    for p in PROTOCOLS:
        if p.key not in present:
            skipped[p.name] = "not registered in saru.checks"
    if wanted and any(p.name == "ping" for p in wanted) and not ping_allowed():
        wanted = [p for p in wanted if p.name != "ping"]
        skipped["ping"] = "ICMP sockets not permitted for this user"
    covered = {p.key for p in PROTOCOLS}
    for checktype, service in sorted(present - covered):
        name = checktype if service == "*" else f"{checktype}/{service}"
        skipped[name] = ("no network I/O: nothing to measure" if (checktype, service) in NO_IO else
                         "needs a server of that protocol on 1,000 loopback addresses (not cheap here)")

    port = 19000 + random.Random().randrange(1000)
    work = Path(tempfile.mkdtemp(prefix="saru-checks-protocols-"))
    (work / "ok.pl").write_text("exit 0;\n")
    groups: dict[str, list[NginxGroup]] = {}
    results: dict[str, dict[str, object]] = {}
    serve: dict[str, Callable[[], list[tuple[str, int]]]] = {}
    try:
        def backend(kind: str) -> list[tuple[str, int]]:
            if kind == "ping":
                return endpoints((PING_BLOCK,), REALS, 0)
            if kind not in groups:
                blocks = PLAIN_BLOCKS if kind == "plain" else TLS_BLOCKS
                groups[kind] = [NginxGroup(work / f"{kind}-{b}", endpoints((b,), REALS // 2, port),
                                           tls=kind == "tls") for b in blocks]
                for group in groups[kind]:
                    group.start()
            return [ep for g in groups[kind] for ep in g.addresses]

        serve = {p.name: (lambda p=p: backend(p.backend)) for p in wanted}
        print(f"{REALS} reals, passes every 0.5 s, {args.seconds:.0f} s window per protocol, "
              f"fd limit {fd_limit}")
        for p in wanted:
            results[p.name] = await measure(p, serve[p.name](), args.seconds, work)
            print(f"  {p.name}: {results[p.name]}", flush=True)
    finally:
        for kind in groups.values():
            for group in kind:
                group.stop()
        shutil.rmtree(work, ignore_errors=True)

    print_table(results, skipped)
    document: dict[str, object] = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "loop": "asyncio"},
        "reals": REALS, "interval": 0.5, "window_seconds": args.seconds,
        "protocols": results, "skipped": skipped,
    }
    if not args.only:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(document, indent=2) + "\n")
        print(f"\nwritten to {RESULTS}")
    return document


def ping_allowed() -> bool:
    import socket

    for kind in (socket.SOCK_RAW, socket.SOCK_DGRAM):
        try:
            socket.socket(socket.AF_INET, kind, socket.IPPROTO_ICMP).close()
            return True
        except PermissionError:
            continue
    return False


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measurement window per protocol")
    parser.add_argument("--only", nargs="*", help="only these protocols (results file not written)")
    asyncio.run(main(parser.parse_args()))
