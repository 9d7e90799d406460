"""Check-plane benchmark: 1,000 reals on loopback, checked by one Saru Monitor.

Measures, in the checking process only (``resource.getrusage``: user + system CPU):

1. HTTP negotiate checks per CPU-second (goal >= 5,000) over several full passes;
2. TCP connect checks per CPU-second (goal >= 20,000), next to a blocking connect+close loop without
   an event loop (the kernel's share of the cost) for reference; HTTPS checks per CPU-second on
   200 reals for information (a TLS handshake each);
3. detection latency with 10 % of the reals hung (listeners that never answer) — the time from
   stopping (connection refused) or freezing (SIGSTOP: connections hang) a healthy real to its
   ``RealDown`` event, with checkinterval 1 s and timeout 1 s, against the bound interval + timeout.

Backends are real nginx processes, each listening on many 127.0.x.y addresses (all of 127.0.0.0/8
is local on Linux). Prints a table and writes ``bench/results/checks.json``. Takes about a minute.
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
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from saru.events import Event, RealDown
from saru.model import Config, GlobalConfig, RealConfig, VirtualConfig
from saru.monitor import Monitor

RESULTS = Path(__file__).resolve().parent / "results" / "checks.json"
GOAL_HTTP = 5_000
GOAL_CONNECT = 20_000

NGINX_CONF = """\
{user}
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log error;
events {{ worker_connections 16384; }}
http {{
    access_log off;
    server {{
{listens}
{tls}        root {dir}/root;
    }}
}}
"""


@dataclass
class NginxGroup:
    """One nginx process serving /check.html on many loopback addresses."""

    directory: Path
    addresses: list[tuple[str, int]]
    tls: bool = False
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        (self.directory / "root").mkdir(parents=True, exist_ok=True)
        (self.directory / "root" / "check.html").write_text("status: OK alive\n")
        ssl = " ssl" if self.tls else ""
        listens = "\n".join(f"        listen {a}:{p}{ssl} backlog=4096;" for a, p in self.addresses)
        tls = ""
        if self.tls:
            cert, key = self.directory / "cert.pem", self.directory / "key.pem"
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                            "-subj", "/CN=bench.test", "-keyout", str(key), "-out", str(cert)],
                           check=True, capture_output=True)
            tls = f"        ssl_certificate {cert};\n        ssl_certificate_key {key};\n"
        user = "user root;" if os.geteuid() == 0 else ""
        conf = NGINX_CONF.format(user=user, dir=self.directory, listens=listens, tls=tls)
        (self.directory / "nginx.conf").write_text(conf)
        self.process = subprocess.Popen(
            ["nginx", "-c", str(self.directory / "nginx.conf"), "-e", str(self.directory / "error.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        address, port = self.addresses[-1]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection((address, port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"nginx in {self.directory} did not start: {self.error_log()}")

    def error_log(self) -> str:
        path = self.directory / "error.log"
        return path.read_text()[-2000:] if path.exists() else ""

    def signal(self, sig: int) -> None:
        """Signal the whole nginx (master and worker) — SIGSTOP freezes, SIGKILL stops."""
        if self.process is None:
            return
        for pid in [self.process.pid, *children(self.process.pid)]:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def stop(self) -> None:
        if self.process is None:
            return
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGKILL)
        self.process.wait()
        self.process = None


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


class Hung:
    """A listener that completes TCP handshakes (kernel backlog) and never reads or answers."""

    def __init__(self, address: str, port: int) -> None:
        self.sock = socket.socket()
        self.sock.bind((address, port))
        self.sock.listen(4096)

    def close(self) -> None:
        self.sock.close()


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def addresses(block: int, count: int, port: int) -> list[tuple[str, int]]:
    """count loopback endpoints 127.<block>.<i // 250>.<i % 250 + 1>:port."""
    return [(f"127.{block}.{i // 250}.{i % 250 + 1}", port) for i in range(count)]


def build_config(reals: list[tuple[str, int]], checktype: str, interval: float, timeout: float,
                 per_virtual: int = 100, service: str = "http") -> Config:
    virtuals = []
    for n, start in enumerate(range(0, len(reals), per_virtual)):
        chunk = reals[start : start + per_virtual]
        virtuals.append(VirtualConfig(
            "tcp", "192.0.2.1", 10000 + n, service=service, checktype=checktype, request="/check.html",
            receive="OK alive", checkinterval=interval, checktimeout=timeout, negotiatetimeout=timeout,
            reals=tuple(RealConfig(a, p, "masq") for a, p in chunk),
        ))
    return Config("bench.cf", GlobalConfig(), tuple(virtuals))


async def throughput(reals: list[tuple[str, int]], checktype: str, seconds: float,
                     service: str = "http") -> dict[str, float]:
    """Checks per CPU-second over full passes of every real (interval 0.5 s)."""
    monitor = Monitor(lambda event: None)
    monitor.configure(build_config(reals, checktype, interval=0.5, timeout=5, service=service))
    await monitor.first_pass()
    down = sum(1 for up in monitor.health().values() if not up)
    if down:
        print(f"  warning: {down} reals down in the {checktype} run", file=sys.stderr)
    await asyncio.sleep(0.5)  # let the pass after the first one settle
    checks0, cpu0, wall0 = monitor.checks_run, cpu_seconds(), time.perf_counter()
    await asyncio.sleep(seconds)
    checks, cpu, wall = monitor.checks_run - checks0, cpu_seconds() - cpu0, time.perf_counter() - wall0
    await monitor.close()
    return {"checks": checks, "cpu_seconds": round(cpu, 3), "wall_seconds": round(wall, 2),
            "checks_per_cpu_second": round(checks / cpu) if cpu else 0.0, "reals_down": down}


def connect_floor(reals: list[tuple[str, int]], passes: int = 3) -> dict[str, float]:
    """Reference: blocking connect + close in a tight loop — the kernel's share, no event loop."""
    cpu0 = cpu_seconds()
    for _ in range(passes):
        for endpoint in reals:
            sock = socket.socket()
            sock.connect(endpoint)
            sock.close()
    cpu = cpu_seconds() - cpu0
    count = passes * len(reals)
    return {"connects": count, "cpu_seconds": round(cpu, 3), "per_cpu_second": round(count / cpu)}


async def detection(healthy: list[tuple[str, int]], hung: list[tuple[str, int]],
                    victims: list[NginxGroup], mode: str) -> list[float]:
    """Latency from stopping/freezing each victim group to the RealDown of each of its reals."""
    victim_reals = [ep for group in victims for ep in group.addresses]
    reals = healthy + hung + victim_reals
    random.Random(7).shuffle(reals)
    downs: dict[tuple[str, int], float] = {}
    waiters: dict[tuple[str, int], asyncio.Future[None]] = {}

    def on_event(event: Event) -> None:
        if isinstance(event, RealDown):
            key = (event.real.address, event.real.port)
            downs.setdefault(key, time.monotonic())
            if key in waiters and not waiters[key].done():
                waiters[key].set_result(None)

    monitor = Monitor(on_event)
    monitor.configure(build_config(reals, "negotiate", interval=1.0, timeout=1.0))
    await monitor.first_pass()
    health = monitor.health()
    wrong = [r for r, up in health.items() if up is not ((r.address, r.port) not in set(hung))]
    if wrong:
        print(f"  warning: {len(wrong)} reals with an unexpected first verdict", file=sys.stderr)
    latencies: list[float] = []
    rng = random.Random(11)
    loop = asyncio.get_running_loop()
    for group in victims:
        await asyncio.sleep(rng.uniform(0.0, 1.0))  # random phase against the check schedule
        for ep in group.addresses:
            waiters[ep] = loop.create_future()
        stopped = time.monotonic()
        group.signal(signal.SIGSTOP if mode == "freeze" else signal.SIGKILL)
        async with asyncio.timeout(10):
            await asyncio.gather(*(waiters[ep] for ep in group.addresses))
        latencies += [downs[ep] - stopped for ep in group.addresses]
    false_downs = [r for r in health if health[r] and (r.address, r.port) in downs
                   and (r.address, r.port) not in set(victim_reals)]
    if false_downs:
        print(f"  warning: {len(false_downs)} healthy reals went down", file=sys.stderr)
    await monitor.close()
    return latencies


def summarize(latencies: list[float]) -> dict[str, float]:
    return {"samples": len(latencies), "mean": round(statistics.mean(latencies), 3),
            "max": round(max(latencies), 3), "min": round(min(latencies), 3)}


async def main(args: argparse.Namespace) -> dict[str, object]:
    fd_limit = raise_fd_limit()
    base = Path(tempfile.mkdtemp(prefix="saru-checks-bench-"))
    port = 18000 + random.Random().randrange(1000)
    groups: list[NginxGroup] = []
    hung_servers: list[Hung] = []
    try:
        # 1,000 healthy reals in 2 nginx processes (500 loopback addresses each)
        for i in range(2):
            groups.append(NginxGroup(base / f"nginx-{i}", addresses(100 + i, 500, port)))
        for group in groups:
            group.start()
        all_reals = [ep for g in groups for ep in g.addresses]

        print(f"1000 reals, {args.seconds:.0f} s of passes every 0.5 s, fd limit {fd_limit}")
        http = await throughput(all_reals, "negotiate", args.seconds)
        print(f"  http:    {http}")
        connect = await throughput(all_reals, "connect", args.seconds)
        print(f"  connect: {connect}")
        floor = connect_floor(all_reals)
        print(f"  blocking connect+close loop (kernel floor): {floor}")
        tls_group = NginxGroup(base / "nginx-tls", addresses(110, 200, port), tls=True)
        groups.append(tls_group)
        tls_group.start()
        https = await throughput(tls_group.addresses, "negotiate", args.seconds / 2, service="https")
        print(f"  https (200 reals, informational): {https}")

        # detection latency: 880 healthy + 100 hung + 20 victims (4 nginx of 5 reals)
        hung = addresses(120, 100, port)
        hung_servers = [Hung(a, p) for a, p in hung]
        victims = {mode: [NginxGroup(base / f"victim-{mode}-{k}", addresses(130 + k + (10 if mode == "freeze"
                                                                                 else 0), 5, port))
                          for k in range(2)] for mode in ("stop", "freeze")}
        for group in victims["stop"] + victims["freeze"]:
            group.start()
        latency = {}
        for mode in ("stop", "freeze"):
            samples = await detection(all_reals[:880], hung, victims[mode], mode)
            latency[mode] = summarize(samples)
            print(f"  detection ({mode}): {latency[mode]}")
        groups += victims["stop"] + victims["freeze"]
    finally:
        for group in groups:
            group.stop()
        for server in hung_servers:
            server.close()
        shutil.rmtree(base, ignore_errors=True)

    bound = 1.0 + 1.0
    results: dict[str, object] = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "loop": "asyncio"},
        "reals": 1000,
        "http_negotiate": {**http, "goal": GOAL_HTTP},
        "tcp_connect": {**connect, "goal": GOAL_CONNECT},
        "blocking_connect_floor": floor,
        "https_negotiate_200_reals": https,
        "detection_latency": {"interval": 1.0, "timeout": 1.0, "hung_reals": 100, "bound": bound,
                              **{mode: stats for mode, stats in latency.items()}},
    }
    print()
    print(f"{'measure':<42}{'result':>12}{'goal / bound':>16}")
    print("-" * 70)
    print(f"{'HTTP negotiate checks per CPU-second':<42}{http['checks_per_cpu_second']:>12,.0f}"
          f"{'>= ' + format(GOAL_HTTP, ','):>16}")
    print(f"{'TCP connect checks per CPU-second':<42}{connect['checks_per_cpu_second']:>12,.0f}"
          f"{'>= ' + format(GOAL_CONNECT, ','):>16}")
    print(f"{'  reference: blocking connect+close, no loop':<42}{floor['per_cpu_second']:>12,.0f}{'':>16}")
    print(f"{'HTTPS negotiate checks per CPU-second':<42}{https['checks_per_cpu_second']:>12,.0f}"
          f"{'(no goal)':>16}")
    for mode, what in (("stop", "stopped real (refused)"), ("freeze", "frozen real (timeout)")):
        stats = latency[mode]
        print(f"{'detection, ' + what + ', mean':<42}{stats['mean']:>11.2f}s{'<= ' + str(bound) + 's':>16}")
        print(f"{'detection, ' + what + ', max':<42}{stats['max']:>11.2f}s{'<= ' + str(bound) + 's':>16}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {RESULTS}")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="measurement window per throughput run")
    asyncio.run(main(parser.parse_args()))
