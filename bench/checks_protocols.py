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
checking process's CPU (user + system, plus reaped children for ``external``).

The protocols that need a real server of their own (dns, ftp, http_proxy, imap, imaps, ldap, ldaps,
mysql, nntp, pgsql, pop, pops, radius, sip, smtp, submission; see ``checks_protocol_servers.py``) are
measured against ONE server instance each ("1 server x 1,000 checks"): a pass is 1,000 CheckSpecs built
with ``check_spec_for`` and run with ``run_check``, at most ``concurrency`` in flight (1,000 unless the
server cannot sustain that many), passes back to back for a window after a warm-up round. The cost is
the checking process's ``time.process_time()`` (the servers are other processes: their CPU is excluded);
every failed check is counted per pass.

Prints a table with the kernel's floor measured on the same reals in the same run (a blocking
connect+close loop, as in ``checks_bench.py``) and each nginx-backed protocol's rate as a multiple of
it, the load average, and writes ``bench/results/checks_protocols.json`` (not with ``--only``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

from checks_bench import NginxGroup, connect_floor, loadavg, raise_fd_limit  # noqa: E402
from checks_protocol_servers import SERVER_PROTOCOLS, STARTERS, Running, ServerProtocol, virtual_fields  # noqa: E402

from saru.checks import base  # noqa: E402
from saru.checks.spec import check_spec_for  # noqa: E402
from saru.model import CheckResult, CheckSpec, Config, GlobalConfig, RealConfig, VirtualConfig  # noqa: E402
from saru.monitor import Monitor  # noqa: E402

RESULTS = BENCH / "results" / "checks_protocols.json"
REALS = 1000
HOST = "127.0.0.1"
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
NO_SERVER = {("negotiate", "oracle"): "needs an Oracle server (none installable from Debian here)"}
FIRST_PASS_LIMIT = 30.0  # seconds the Monitor's first pass may take before the window starts anyway
SERVER_TIMEOUT = 10.0  # negotiatetimeout of the one-server checks: slow answers are counted, not cut short


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
        try:  # a machine too loaded to fork 1,000 children per pass may never finish the first one
            async with asyncio.timeout(FIRST_PASS_LIMIT):
                await monitor.first_pass()
            down: int | None = sum(1 for up in monitor.health().values() if not up)
        except TimeoutError:
            down = None
        await asyncio.sleep(0.5)
        checks0, cpu0, wall0 = monitor.checks_run, cpu_seconds(proto.children), time.perf_counter()
        await asyncio.sleep(seconds)
        checks = monitor.checks_run - checks0
        cpu, wall = cpu_seconds(proto.children) - cpu0, time.perf_counter() - wall0
    finally:
        await monitor.close()
    return {"method": f"{len(reals):,} addresses (Monitor)",
            "checks": checks, "cpu_seconds": round(cpu, 3), "wall_seconds": round(wall, 2),
            "checks_per_cpu_second": round(checks / cpu) if cpu else None,
            "checks_per_wall_second": round(checks / wall), "reals_down": down,
            "cpu_includes_children": proto.children}


def server_specs(proto: ServerProtocol, ports: dict[str, int], count: int = REALS) -> list[CheckSpec]:
    """``count`` checks of one server, built from a virtual service the way the monitor builds them."""
    virtual = VirtualConfig(
        proto.protocol, "192.0.2.1", 10000, service=proto.key[1], checktype=proto.key[0],  # type: ignore[arg-type]
        checktimeout=SERVER_TIMEOUT, negotiatetimeout=SERVER_TIMEOUT, **virtual_fields(proto, ports),  # type: ignore[arg-type]
    )
    real = RealConfig(HOST, ports[proto.role], "masq")
    return [check_spec_for(virtual, real) for _ in range(count)]


async def one_pass(specs: list[CheckSpec], concurrency: int) -> list[CheckResult]:
    """Run every spec once, at most ``concurrency`` at a time (a pool of workers); results in order."""
    results: list[CheckResult] = [CheckResult(ok=False, message="not run")] * len(specs)
    todo: Iterator[int] = iter(range(len(specs)))

    async def worker() -> None:
        for i in todo:
            results[i] = await base.run_check(specs[i])

    await asyncio.gather(*(worker() for _ in range(min(concurrency, len(specs)))))
    return results


async def measure_server(proto: ServerProtocol, running: Running, seconds: float) -> dict[str, object]:
    """Checks per CPU-second of this process over back-to-back passes of 1,000 checks of one server."""
    specs = server_specs(proto, running.ports)
    # warm-up (imports, TLS contexts, server caches): one full round of in-flight checks, at least 100
    warm = await one_pass(specs[:max(proto.concurrency, 100)], proto.concurrency)
    failures: Counter[str] = Counter(r.message for r in warm if not r.ok)
    failed_per_pass: list[int] = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    while not failed_per_pass or time.perf_counter() - wall0 < seconds:
        results = await one_pass(specs, proto.concurrency)
        failed = [r.message for r in results if not r.ok]
        failed_per_pass.append(len(failed))
        failures.update(failed)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    checks = len(specs) * len(failed_per_pass)
    return {"method": f"1 server \u00d7 {len(specs):,} checks", "concurrency": proto.concurrency,
            "concurrency_note": proto.why_lower, "passes": len(failed_per_pass), "checks": checks,
            "cpu_seconds": round(cpu, 3), "wall_seconds": round(wall, 2),
            "checks_per_cpu_second": round(checks / cpu) if cpu else None,
            "checks_per_wall_second": round(checks / wall), "failed_per_pass": failed_per_pass,
            "warmup_failed": sum(1 for r in warm if not r.ok),
            "failure_messages": dict(failures.most_common(3)), "cpu_includes_children": False}


async def measure_servers(wanted: list[ServerProtocol], seconds: float, work: Path,
                          results: dict[str, dict[str, object]], skipped: dict[str, str]) -> None:
    """Start each server once, measure the protocols it serves, stop it (even on error)."""
    by_server: dict[str, list[ServerProtocol]] = {}
    for proto in wanted:
        by_server.setdefault(proto.server, []).append(proto)
    for server, protos in by_server.items():
        try:
            running = STARTERS[server](work)
        except Exception as exc:
            for proto in protos:
                skipped[proto.name] = f"{server} did not start: {str(exc).splitlines()[0][:200]}"
            print(f"  {server} did not start: {exc}", flush=True)
            continue
        except BaseException as exc:  # tests.helpers.require skips/fails with pytest's outcomes
            if isinstance(exc, (KeyboardInterrupt, SystemExit, asyncio.CancelledError)):
                raise
            for proto in protos:
                skipped[proto.name] = f"{server} unavailable: {exc}"
            continue
        try:
            for proto in protos:
                results[proto.name] = await measure_server(proto, running, seconds)
                print(f"  {proto.name}: {results[proto.name]}", flush=True)
        finally:
            running.stop()


def failed_text(r: dict[str, object]) -> str:
    per_pass = r.get("failed_per_pass")
    if isinstance(per_pass, list):
        return f"{max(per_pass)}" if per_pass else "-"
    return "n/a" if r["reals_down"] is None else f"{r['reals_down']}"


def print_table(results: dict[str, dict[str, object]], skipped: dict[str, str]) -> None:
    print(f"\n{'protocol':<15}{'checks/CPU-s':>13}{'checks/s':>10}{'CPU s':>8}{'failed':>7}  method")
    print("-" * 100)
    for name, r in results.items():
        per_cpu = r["checks_per_cpu_second"]
        per_cpu_text = f"{per_cpu:,}" if isinstance(per_cpu, int) else "n/a"
        method = str(r.get("method", "1,000 addresses (Monitor)"))
        if "concurrency" in r:
            method += f", {r['concurrency']:,} in flight"
            if r.get("concurrency_note"):
                method += f" ({r['concurrency_note']})"
            method += f", {r['passes']} passes"
        print(f"{name:<15}{per_cpu_text:>13}{r['checks_per_wall_second']:>10,}{r['cpu_seconds']:>8}"
              f"{failed_text(r):>7}  {method}")
    for name, why in skipped.items():
        print(f"{name:<15}{'skipped':>13}  {why}")
    print("failed: reals down after the first pass (Monitor; n/a: no first pass within "
          f"{FIRST_PASS_LIMIT:g} s) / most failed checks in one pass (1 server)")
    for name, r in results.items():
        if r.get("warmup_failed"):
            messages = "; ".join(f"{n} x {m}" for m, n in dict(r["failure_messages"]).items())  # type: ignore[call-overload]
            print(f"warm-up round of {name}: {r['warmup_failed']} failed ({messages[:300]})")


def selected(names: list[str] | None) -> set[str] | None:
    """``--only a,b c`` → {"a", "b", "c"}; None when not given."""
    if not names:
        return None
    return {n for arg in names for n in arg.split(",") if n}


async def main(args: argparse.Namespace) -> dict[str, object]:
    fd_limit = raise_fd_limit()
    present = registered()
    only = selected(args.only)
    wanted = [p for p in PROTOCOLS if p.key in present and (only is None or p.name in only)]
    wanted_servers = [p for p in SERVER_PROTOCOLS if p.key in present and (only is None or p.name in only)]
    skipped: dict[str, str] = {}
    for p in [*PROTOCOLS, *SERVER_PROTOCOLS]:
        if p.key not in present:
            skipped[p.name] = "not registered in saru.checks"
    if wanted and any(p.name == "ping" for p in wanted) and not ping_allowed():
        wanted = [p for p in wanted if p.name != "ping"]
        skipped["ping"] = "ICMP sockets not permitted for this user"
    covered = {p.key for p in PROTOCOLS} | {p.key for p in SERVER_PROTOCOLS}
    for checktype, service in sorted(present - covered):
        name = checktype if service == "*" else f"{checktype}/{service}"
        if only is not None and name not in only and service not in only:
            continue
        skipped[name] = ("no network I/O: nothing to measure" if (checktype, service) in NO_IO else
                         NO_SERVER.get((checktype, service), "no server to measure it against"))

    port = 19000 + random.Random().randrange(1000)
    floor: float | None = None
    load_before = loadavg()
    work = Path(tempfile.mkdtemp(prefix="saru-checks-protocols-"))
    os.chmod(work, 0o755)  # servers that drop privileges read their files under it
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
        if wanted:
            print(f"{REALS} reals, passes every 0.5 s, {args.seconds:.0f} s window per protocol, "
                  f"fd limit {fd_limit}")
        for p in wanted:
            results[p.name] = await measure(p, serve[p.name](), args.seconds, work)
            print(f"  {p.name}: {results[p.name]}", flush=True)
        if "plain" in groups:  # the kernel's floor on the same reals, for the ratios
            floor = connect_floor([ep for g in groups["plain"] for ep in g.addresses])["per_cpu_second"]
        for kind in groups.values():  # done with nginx before the servers' own measurements
            for group in kind:
                group.stop()
        groups.clear()
        if wanted_servers:
            print(f"1 server \u00d7 {REALS:,} checks per pass, back-to-back passes for {args.server_seconds:.0f} s "
                  f"after a warm-up round, timeout {SERVER_TIMEOUT:g} s")
            measured: dict[str, dict[str, object]] = {}
            try:
                await measure_servers(wanted_servers, args.server_seconds, work, measured, skipped)
            finally:
                results.update(sorted(measured.items()))
    finally:
        for kind in groups.values():
            for group in kind:
                group.stop()
        shutil.rmtree(work, ignore_errors=True)

    print_table(results, skipped)
    if floor:
        ratios = ", ".join(f"{name} {r['checks_per_cpu_second'] / floor:.3f}" for name, r in results.items()
                           if isinstance(r["checks_per_cpu_second"], int) and "concurrency" not in r)
        print(f"kernel floor (blocking connect+close loop on the same reals): {floor:,.0f}/CPU-s; "
              f"x floor: {ratios}")
    print(f"load average before {load_before}, after {loadavg()}")
    document: dict[str, object] = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "loop": "asyncio",
                    "load_before": load_before, "load_after": loadavg()},
        "kernel_floor_connects_per_cpu_second": floor,
        "reals": REALS, "interval": 0.5, "window_seconds": args.seconds,
        "server_window_seconds": args.server_seconds, "server_check_timeout": SERVER_TIMEOUT,
        "protocols": results, "skipped": skipped,
    }
    if only is None:
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
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM unwinds: every server is stopped
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measurement window per protocol")
    parser.add_argument("--server-seconds", type=float, default=3.0,
                        help="measurement window per protocol measured against one server")
    parser.add_argument("--only", nargs="*", help="only these protocols, e.g. --only dns,ldap "
                        "(results file not written)")
    asyncio.run(main(parser.parse_args()))
