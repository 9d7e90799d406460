"""Check-plane benchmark: Saru's checks per CPU-second side by side with the kernel's floor.

One run prints and saves (``bench/results/checks.json``), with the machine's load average:

1. **Rates** at 1,000 reals (2 nginx, 500 loopback addresses each) and 200 TLS reals, in
   interleaved rounds so that every ratio is measured side by side: the kernel's floor (a blocking
   connect+close loop, no event loop), Saru's TCP ``connect``, HTTP ``negotiate``, HTTPS ``negotiate``
   with TLS session resumption (the default) and with full handshakes forced
   (``tls_session_resumption = false``), and a blocking TLS loop (the ``ssl`` module's own floor:
   connect, handshake, GET, close). Each Saru rate is one ``Monitor`` checking every real every
   0.5 s for a window; the cost is the checking process's user + system CPU. The nginx serving the
   HTTPS reals is measured too (its CPU per check, full vs resumed handshakes).
2. **Goal ratios** (issue 16): connect >= 0.5 x floor; HTTP >= 15,000 / 63,000 x floor and HTTPS >=
   5,000 / 63,000 x floor (the goals' absolute numbers against the floor measured on a quiet
   machine, 63,000 connects per CPU-second).
3. **10,000 reals at checkinterval 1 s** (20 nginx), connect and HTTP: the checking process's CPU
   share over a window after the heap is settled as the daemon settles it (``gc.freeze``,
   ``saru.daemon.heap``), how late a 10 ms timer runs meanwhile (what delays the checks' timeouts),
   and the detection time of stopped (refused) and frozen (SIGSTOP: times out) reals among them,
   with 100 hung reals, against the bound interval + timeout. ``--reals N`` checks N reals instead.

Backends are real nginx processes on many 127.x.y.z addresses (all of 127.0.0.0/8 is local on
Linux). Takes about three minutes.

``--peer DIR`` measures another source tree too (e.g. ``git archive main`` extracted to /tmp), side by
side in the same run: each round runs this benchmark once per tree, alternately, each in a fresh
process importing that tree's ``saru`` (``--tree``), and the table puts the trees' medians beside
each other. ``--no-https`` and ``--no-rates`` leave parts out to keep a run short. ``--nice N`` runs
the checks (and the nginx they start) at that nice value: on a machine shared with other work, a
negative value gives the checking process the core it asks for, so that what is measured is the
design and not the neighbours (the load average is printed either way).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import resource
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path


def _tree() -> str:
    """The source tree whose ``saru`` is measured: ``--tree DIR`` (a peer's run), else this one."""
    argv = sys.argv
    if "--tree" in argv[:-1]:
        return str(Path(argv[argv.index("--tree") + 1]).resolve())
    return str(Path(__file__).resolve().parent.parent)


sys.path.insert(0, _tree())

from saru.checks import tlsclient  # noqa: E402
from saru.daemon import heap  # noqa: E402
from saru.events import Event, RealDown  # noqa: E402
from saru.model import Config, GlobalConfig, RealConfig, VirtualConfig  # noqa: E402
from saru.monitor import Monitor  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "checks.json"
#: issue 16's goals: connect >= half the kernel's floor; HTTP and HTTPS as a share of the floor
#: measured on a quiet machine (63,000 connects per CPU-second): 15,000 and 5,000 checks/CPU-s
QUIET_FLOOR = 63_000
#: detection: a real not down this many seconds after its failure counts as missed
MISSED_AFTER = 15.0
GOALS = {"connect": 0.5, "http": 15_000 / QUIET_FLOOR, "https": 5_000 / QUIET_FLOOR}

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

    def cpu_seconds(self) -> float:
        """User + system CPU of the nginx master and workers so far."""
        if self.process is None:
            return 0.0
        total = 0
        for pid in [self.process.pid, *children(self.process.pid)]:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

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


async def throughput(reals: list[tuple[str, int]], checktype: str, seconds: float, service: str = "http",
                     interval: float = 0.5, timeout: float = 5.0, servers: list[NginxGroup] | None = None,
                     settle: bool = False) -> dict[str, float]:
    """Checks per CPU-second of one Monitor checking every real every ``interval`` for ``seconds``
    (after a first pass and one more interval); ``settle``: freeze the heap first, as the daemon does."""
    monitor = Monitor(lambda event: None)
    monitor.configure(build_config(reals, checktype, interval=interval, timeout=timeout, service=service))
    await monitor.first_pass()
    down = sum(1 for up in monitor.health().values() if not up)
    if down:
        print(f"  warning: {down} reals down in the {checktype}/{service} run", file=sys.stderr)
    if settle:
        heap.settle()
    await asyncio.sleep(interval)  # let the pass after the first one settle
    servers = servers or []
    lags: list[float] = []
    probe = asyncio.create_task(loop_lag(lags))
    checks0, cpu0, wall0 = monitor.checks_run, cpu_seconds(), time.perf_counter()
    server0 = sum(group.cpu_seconds() for group in servers)
    await asyncio.sleep(seconds)
    probe.cancel()
    checks, cpu, wall = monitor.checks_run - checks0, cpu_seconds() - cpu0, time.perf_counter() - wall0
    server = sum(group.cpu_seconds() for group in servers) - server0
    await monitor.close()
    if settle:
        gc.unfreeze()
    result = {"checks": checks, "cpu_seconds": round(cpu, 3), "wall_seconds": round(wall, 2),
              "checks_per_cpu_second": round(checks / cpu) if cpu else 0.0, "cpu_share": round(cpu / wall, 3),
              "reals_down": down, **lag_summary(lags)}
    if servers:
        result["server_cpu_us_per_check"] = round(server / checks * 1e6, 1) if checks else 0.0
    return result


LAG_PROBE = 0.01


async def loop_lag(lags: list[float]) -> None:
    """How late the event loop runs a 10 ms timer, again and again (appended to ``lags``): how late
    the checks' own timers — their timeouts — fire."""
    loop = asyncio.get_running_loop()
    while True:
        start = loop.time()
        await asyncio.sleep(LAG_PROBE)
        lags.append(loop.time() - start - LAG_PROBE)


def lag_summary(lags: list[float]) -> dict[str, float]:
    """Median, 90th percentile and largest lateness of the probe's timer, in seconds."""
    if not lags:
        return {}
    ordered = sorted(lags)
    return {"loop_lag_p50": round(ordered[len(ordered) // 2], 4),
            "loop_lag_p90": round(ordered[int(len(ordered) * 0.9)], 4), "loop_lag_max": round(ordered[-1], 4)}


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


def tls_floor(reals: list[tuple[str, int]], resume: bool) -> dict[str, float]:
    """Reference: a blocking TLS check loop with the ``ssl`` module, no event loop (connect, handshake
    — offering the last session when ``resume`` —, GET, read to the end, close)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    request = b"GET /check.html HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
    sessions: dict[tuple[str, int], ssl.SSLSession] = {}

    def one(endpoint: tuple[str, int]) -> bool:
        sock = socket.create_connection(endpoint)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as the check's (saru.checks.tlsclient)
        with context.wrap_socket(sock, session=sessions.get(endpoint)) as tls:
            tls.sendall(request)
            while tls.recv(65536):
                pass
            if resume and not tls.session_reused and tls.session is not None:
                sessions[endpoint] = tls.session
            return tls.session_reused

    if resume:
        for endpoint in reals:
            one(endpoint)
    cpu0 = cpu_seconds()
    reused = sum(one(endpoint) for endpoint in reals)
    cpu = cpu_seconds() - cpu0
    return {"checks": len(reals), "resumed": reused, "cpu_seconds": round(cpu, 3),
            "per_cpu_second": round(len(reals) / cpu)}


async def detection(healthy: list[tuple[str, int]], hung: list[tuple[str, int]],
                    victims: list[NginxGroup], mode: str, checktype: str = "negotiate") -> list[float]:
    """Latency from stopping/freezing each victim group to the RealDown of each of its reals
    (checkinterval 1 s, timeout 1 s; the heap settled after the first pass, as the daemon does)."""
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
    monitor.configure(build_config(reals, checktype, interval=1.0, timeout=1.0))
    await monitor.first_pass()
    heap.settle()
    health = monitor.health()
    hung_set, victim_set = set(hung), set(victim_reals)
    # a hung listener completes TCP handshakes: down for negotiate, up for connect
    wrong = [r for r, up in health.items() if up is not (checktype == "connect" or (r.address, r.port) not in hung_set)]
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
        try:
            async with asyncio.timeout(MISSED_AFTER):
                await asyncio.gather(*(waiters[ep] for ep in group.addresses))
        except TimeoutError:  # a starved checker: counted as missed (latency MISSED_AFTER)
            print(f"  warning: {sum(ep not in downs for ep in group.addresses)} reals not detected "
                  f"within {MISSED_AFTER:g} s", file=sys.stderr)
        latencies += [downs.get(ep, stopped + MISSED_AFTER) - stopped for ep in group.addresses]
    false_downs = [r for r in health if health[r] and (r.address, r.port) in downs
                   and (r.address, r.port) not in victim_set]
    if false_downs:
        print(f"  warning: {len(false_downs)} healthy reals went down", file=sys.stderr)
    await monitor.close()
    gc.unfreeze()
    return latencies


def summarize(latencies: list[float]) -> dict[str, float]:
    return {"samples": len(latencies), "mean": round(statistics.mean(latencies), 3),
            "max": round(max(latencies), 3), "min": round(min(latencies), 3)}


def loadavg() -> str:
    """The 1-, 5- and 15-minute load averages (other work on the machine skews every absolute number)."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


async def rates(args: argparse.Namespace, plain: list[NginxGroup], tls: NginxGroup) -> dict[str, object]:
    """Interleaved rounds: each Saru rate right after a floor loop over the same reals."""
    reals = [ep for group in plain for ep in group.addresses]
    rounds: list[dict[str, object]] = []
    for n in range(args.rounds):
        row: dict[str, object] = {"load": loadavg()}
        for name, checktype, service, endpoints in (("connect", "connect", "http", reals),
                                                    ("http", "negotiate", "http", reals),
                                                    ("https", "negotiate", "https", tls.addresses),
                                                    ("https_full", "negotiate", "https", tls.addresses)):
            if name not in rate_names(args):
                continue
            floor = connect_floor(reals)
            tlsclient.configure(resume=name != "https_full")
            rate = await throughput(endpoints, checktype, args.seconds, service=service,
                                    servers=[tls] if service == "https" else None)
            row[name] = {**rate, "floor": floor["per_cpu_second"],
                         "ratio": round(float(rate["checks_per_cpu_second"]) / floor["per_cpu_second"], 3)}
        tlsclient.configure(resume=True)
        if not args.no_https:
            row["tls_floor_full"] = tls_floor(tls.addresses, resume=False)
            row["tls_floor_resumed"] = tls_floor(tls.addresses, resume=True)
        rounds.append(row)
        print(f"  round {n + 1}: " + ", ".join(
            f"{k} {v['checks_per_cpu_second']:,} ({v['ratio']:.3f}x floor {v['floor']:,})"  # type: ignore[index]
            for k, v in row.items() if isinstance(v, dict) and "ratio" in v)
            + ("" if args.no_https else f"; TLS loop full {row['tls_floor_full']['per_cpu_second']:,}"  # type: ignore[index]
               f" resumed {row['tls_floor_resumed']['per_cpu_second']:,}")  # type: ignore[index]
            + f"; load {row['load']}")
    summary: dict[str, object] = {}
    for name in rate_names(args):
        cells = [r[name] for r in rounds]
        summary[name] = {
            "checks_per_cpu_second_median": statistics.median(c["checks_per_cpu_second"] for c in cells),  # type: ignore[index]
            "floor_median": statistics.median(c["floor"] for c in cells),  # type: ignore[index]
            "ratio_median": statistics.median(c["ratio"] for c in cells),  # type: ignore[index]
            "ratio_best": max(c["ratio"] for c in cells),  # type: ignore[index]
            **({"server_cpu_us_per_check_median": statistics.median(
                c["server_cpu_us_per_check"] for c in cells)} if name.startswith("https") else {}),  # type: ignore[index]
        }
    for name in () if args.no_https else ("tls_floor_full", "tls_floor_resumed"):
        summary[name] = {"per_cpu_second_median": statistics.median(r[name]["per_cpu_second"] for r in rounds)}  # type: ignore[index]
    return {"rounds": rounds, "summary": summary}


async def ten_thousand(args: argparse.Namespace, port: int, base: Path, groups: list[NginxGroup]) -> dict[str, object]:
    """10,000 reals at checkinterval 1 s: CPU share of connect and HTTP checks, detection times."""
    big = addresses(142, args.reals, port)
    servers = [NginxGroup(base / f"nginx-10k-{i}", big[i : i + 500]) for i in range(0, len(big), 500)]
    groups += servers
    for group in servers:
        group.start()
    out: dict[str, object] = {"reals": len(big), "interval": 1.0, "timeout": 1.0}
    for checktype in ("connect", "negotiate"):
        run = await throughput(big, checktype, args.seconds, interval=1.0, timeout=1.0, settle=True)
        # on a shared machine the process may get less than the CPU it asks for; the CPU the checks
        # need is the rate they are due at over their cost
        needed = round(len(big) / float(run["checks_per_cpu_second"]), 3)
        out[f"{checktype}_load"] = {**run, "cpu_needed": needed, "load": loadavg()}
        print(f"  {len(big):,} reals, {checktype}: {run['checks_per_cpu_second']:,} checks/CPU-s, "
              f"so {len(big):,}/s need "
              f"{needed:.2f} of a core (measured share {run['cpu_share']:.2f}, "
              f"{run['checks'] / run['wall_seconds']:,.0f} checks/s), load {loadavg()}")
    hung = addresses(120, 100, port)
    hung_servers = [Hung(a, p) for a, p in hung]
    try:
        index = 0
        # a frozen server's kernel still completes TCP handshakes: only negotiate sees it
        for checktype, mode in (("connect", "stop"), ("negotiate", "stop"), ("negotiate", "freeze")):
            victims = [NginxGroup(base / f"victim-{checktype}-{mode}-{k}", addresses(130 + index + k, 5, port))
                       for k in range(2)]
            index += 2
            groups += victims
            for group in victims:
                group.start()
            samples = await detection(big[: len(big) - 120], hung, victims, mode, checktype)
            out[f"detection_{checktype}_{mode}"] = {**summarize(samples), "load": loadavg()}
            print(f"  detection, {checktype}, {mode}: {out[f'detection_{checktype}_{mode}']}")
    finally:
        for server in hung_servers:
            server.close()
    return out


def rate_names(args: argparse.Namespace) -> tuple[str, ...]:
    """The rates this run measures."""
    if args.no_rates:
        return ()
    return ("connect", "http") if args.no_https else ("connect", "http", "https", "https_full")


async def measure(args: argparse.Namespace) -> dict[str, object]:
    """One run of the benchmark on this process's tree (nginx started and stopped here)."""
    fd_limit = raise_fd_limit()
    if args.nice:
        os.nice(args.nice)  # before nginx starts: it inherits it
    base = Path(tempfile.mkdtemp(prefix="saru-checks-bench-"))
    port = 18000 + random.Random().randrange(1000)
    groups: list[NginxGroup] = []
    load_before = loadavg()
    try:
        plain = [NginxGroup(base / f"nginx-{i}", addresses(100 + i, 500, port)) for i in range(2)]
        tls = NginxGroup(base / "nginx-tls", addresses(110, 200, port), tls=True)
        groups += [*plain, tls]
        for group in groups:
            group.start()
        print(f"rates: 1,000 reals (200 TLS), {args.rounds} rounds of {args.seconds:.0f} s windows, "
              f"fd limit {fd_limit}, load {load_before}, tree {_tree()}")
        measured = await rates(args, plain, tls) if rate_names(args) else {"summary": {}}
        scale = await ten_thousand(args, port, base, groups) if not args.no_10k else {}
    finally:
        for group in groups:
            group.stop()
        shutil.rmtree(base, ignore_errors=True)
    return {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "loop": args.loop,
                    "openssl": ssl.OPENSSL_VERSION, "load_before": load_before, "load_after": loadavg()},
        "tree": _tree(),
        "nice": args.nice,
        "goals": {"quiet_floor": QUIET_FLOOR, **{k: round(v, 3) for k, v in GOALS.items()}},
        "rates": measured,
        "ten_thousand_reals": scale,
    }


def report(results: dict[str, object]) -> None:
    """The table of one tree's run."""
    summary = results["rates"]["summary"]  # type: ignore[index]
    scale = results["ten_thousand_reals"]
    assert isinstance(summary, dict) and isinstance(scale, dict)
    print()
    print(f"{'measure':<46}{'checks/CPU-s':>13}{'x floor':>9}{'goal':>8}{'met':>5}")
    print("-" * 81)
    if summary:
        floor = summary["connect"]["floor_median"]
        print(f"{'kernel floor: blocking connect+close loop':<46}{floor:>13,.0f}{1:>9.3f}{'':>8}")
    for name, label, goal in (("connect", "TCP connect", GOALS["connect"]), ("http", "HTTP negotiate", GOALS["http"]),
                              ("https", "HTTPS negotiate, TLS sessions resumed", GOALS["https"]),
                              ("https_full", "HTTPS negotiate, full handshakes", None)):
        if name not in summary:
            continue
        row = summary[name]
        met = "" if goal is None else ("yes" if row["ratio_median"] >= goal else "NO")
        print(f"{label:<46}{row['checks_per_cpu_second_median']:>13,.0f}{row['ratio_median']:>9.3f}"
              f"{'' if goal is None else format(goal, '.3f'):>8}{met:>5}")
    for name, label in (("tls_floor_full", "ssl module's blocking TLS loop, full"),
                        ("tls_floor_resumed", "ssl module's blocking TLS loop, resumed")):
        if name in summary:
            print(f"{label:<46}{summary[name]['per_cpu_second_median']:>13,.0f}")
    if "https" in summary:
        print(f"{'nginx CPU per HTTPS check, resumed / full':<46}"
              f"{summary['https']['server_cpu_us_per_check_median']:>10,.0f} us / "
              f"{summary['https_full']['server_cpu_us_per_check_median']:,.0f} us")
    for line in ten_thousand_rows(scale):
        print(line)


def ten_thousand_rows(scale: dict[str, object]) -> list[str]:
    """The 10,000-real lines of the table: cores needed, share and rate achieved, detection."""
    lines: list[str] = []
    if not scale:
        return lines
    bound = 2.0
    reals = f"{scale['reals']:,}"
    for checktype in ("connect", "negotiate"):
        run = scale[f"{checktype}_load"]
        assert isinstance(run, dict)
        share = run["cpu_needed"]
        lines.append(f"{reals + ' reals every 1 s, ' + checktype + ': cores':<46}{share:>13.2f}{'':>9}{'<= 1':>8}"
                     f"{'yes' if share <= 1 else 'NO':>5}")
        lines.append(f"{'  measured share, checks/s achieved':<46}{run['cpu_share']:>13.2f}"
                     f"{run['checks'] / run['wall_seconds']:>9,.0f}")
        if "loop_lag_p90" in run:
            lines.append(f"{'  timer lateness p50 / p90 / max (ms)':<46}{run['loop_lag_p50'] * 1000:>7.0f} / "
                         f"{run['loop_lag_p90'] * 1000:.0f} / {run['loop_lag_max'] * 1000:.0f}")
        for mode, what in (("stop", "stopped"), ("freeze", "frozen")):
            stats = scale.get(f"detection_{checktype}_{mode}")
            if not isinstance(stats, dict):
                continue
            lines.append(f"{'  detection, ' + what + ': mean / max':<46}{stats['mean']:>7.2f} / {stats['max']:.2f}s"
                         f"{'':>5}{'<= ' + str(bound):>8}{'yes' if stats['max'] <= bound else 'NO':>5}")
    return lines


def child_args(args: argparse.Namespace, tree: str, out: Path) -> list[str]:
    """The command line of one round of one tree (``compare``)."""
    command = [sys.executable, str(Path(__file__).resolve()), "--tree", tree, "--json", str(out),
               "--rounds", "1", "--seconds", str(args.seconds), "--loop", args.loop, "--nice", str(args.nice),
               "--reals", str(args.reals)]
    return command + [flag for flag, on in (("--no-10k", args.no_10k), ("--no-https", args.no_https),
                                            ("--no-rates", args.no_rates)) if on]


def compare(args: argparse.Namespace) -> dict[str, object]:
    """``--peer``: ``args.rounds`` rounds, each running this tree then the peer (fresh processes), and
    the medians of both side by side."""
    trees = {"this": _tree(), "peer": str(Path(args.peer).resolve())}
    runs: dict[str, list[dict[str, object]]] = {name: [] for name in trees}
    work = Path(tempfile.mkdtemp(prefix="saru-checks-compare-"))
    load_before = loadavg()
    try:
        for n in range(args.rounds):
            for name, tree in trees.items():
                out = work / f"{name}-{n}.json"
                print(f"== round {n + 1}, {name} ({tree})", flush=True)
                subprocess.run(child_args(args, tree, out), check=True)
                runs[name].append(json.loads(out.read_text()))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    combined: dict[str, object] = {"load_before": load_before, "load_after": loadavg(), "trees": trees,
                                   "runs": runs, "medians": {name: medians(r) for name, r in runs.items()}}
    print()
    print(f"{'median of ' + str(args.rounds) + ' rounds':<46}{'this':>16}{'peer':>16}")
    print("-" * 78)
    lines = {name: comparison_rows(combined["medians"][name]) for name in trees}  # type: ignore[index]
    for label in lines["this"]:
        print(f"{label:<46}{lines['this'][label]:>16}{lines['peer'].get(label, ''):>16}")
    print(f"load average before {load_before}, after {loadavg()}")
    return combined


def medians(runs: list[dict[str, object]]) -> dict[str, float]:
    """The median over rounds of every number a side-by-side row shows (rates, 10,000 reals)."""
    values: dict[str, list[float]] = {}
    for run in runs:
        summary = run["rates"]["summary"]  # type: ignore[index]
        for name, row in summary.items():
            for key in ("checks_per_cpu_second_median", "ratio_median"):
                if key in row:
                    values.setdefault(f"{name}.{key}", []).append(row[key])
        for name, row in run["ten_thousand_reals"].items():  # type: ignore[attr-defined]
            if isinstance(row, dict):
                for key in ("cpu_needed", "cpu_share", "mean", "max", "loop_lag_p90", "loop_lag_max"):
                    if key in row:
                        values.setdefault(f"{name}.{key}", []).append(row[key])
                if "checks" in row:
                    values.setdefault(f"{name}.rate", []).append(row["checks"] / row["wall_seconds"])
    return {key: statistics.median(v) for key, v in values.items()}


def _pair(m: dict[str, float], first: str, second: str, scale: float = 1.0, digits: int = 2) -> str:
    """"a / b" of two medians."""
    return f"{m[first] * scale:.{digits}f} / {m[second] * scale:.{digits}f}"


def comparison_rows(m: dict[str, float]) -> dict[str, str]:
    """label → cell of one tree's medians."""
    rows: dict[str, str] = {}
    for name in ("connect", "http", "https", "https_full"):
        if f"{name}.ratio_median" in m:
            rows[f"{name}: checks/CPU-s (x floor)"] = (f"{m[name + '.checks_per_cpu_second_median']:,.0f} "
                                                       f"({m[name + '.ratio_median']:.3f})")
    for checktype in ("connect", "negotiate"):
        key = f"{checktype}_load"
        if f"{key}.cpu_needed" in m:
            rows[f"N@1s {checktype}: cores needed / share"] = _pair(m, f"{key}.cpu_needed", f"{key}.cpu_share")
            rows[f"N@1s {checktype}: checks/s achieved"] = f"{m[key + '.rate']:,.0f}"
            if f"{key}.loop_lag_p90" in m:
                rows[f"N@1s {checktype}: timer late p90/max ms"] = _pair(
                    m, f"{key}.loop_lag_p90", f"{key}.loop_lag_max", scale=1000, digits=0)
        for mode in ("stop", "freeze"):
            detected = f"detection_{checktype}_{mode}"
            if f"{detected}.mean" in m:
                rows[f"N@1s {checktype}, {mode}: detect mean/max s"] = _pair(m, f"{detected}.mean", f"{detected}.max")
    return rows


async def main(args: argparse.Namespace) -> dict[str, object]:
    results = await measure(args)
    report(results)
    print(f"load average before {results['machine']['load_before']}, after {loadavg()}")  # type: ignore[index]
    path = Path(args.json) if args.json else RESULTS
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {path}")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="measurement window per throughput run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the rates")
    parser.add_argument("--no-10k", action="store_true", help="skip the 10,000-real part")
    parser.add_argument("--reals", type=int, default=10_000, help="reals of the '10,000-real' part")
    parser.add_argument("--no-https", action="store_true", help="skip the HTTPS rates")
    parser.add_argument("--no-rates", action="store_true", help="skip the 1,000-real rates")
    parser.add_argument("--peer", metavar="DIR", help="another source tree, measured side by side")
    parser.add_argument("--tree", metavar="DIR", help="the source tree to measure (default: this one)")
    parser.add_argument("--nice", type=int, default=0, help="nice value of the checks and their nginx (root: < 0)")
    parser.add_argument("--json", metavar="PATH", help=f"where the results go (default {RESULTS})")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio",
                        help="event loop (saru run --event-loop; uvloop: pip install 'saru[uvloop]')")
    arguments = parser.parse_args()
    if arguments.peer:
        combined = compare(arguments)
        target = Path(arguments.json) if arguments.json else RESULTS.with_name("checks_compare.json")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(combined, indent=2) + "\n")
        print(f"\nwritten to {target}")
    elif arguments.loop == "uvloop":
        import uvloop

        uvloop.run(main(arguments))
    else:
        asyncio.run(main(arguments))
