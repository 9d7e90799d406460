"""HTTP front door benchmark: ``GET /metrics`` and ``GET /api/v1/status`` of a ``saru run`` directing
10,000 reals, and what a scrape every second costs the check plane.

The daemon runs the proxy plane (100 virtual services of 100 reals on 127.0.0.1) in front of real
nginx processes, each listening on 500 loopback addresses (127.0.0.0/8 is all local), checked with
HTTP negotiate checks; its HTTP side listens on 127.0.0.1 (``saru.toml`` ``[api] listen``).
Measured, on the daemon's process only (utime + stime from ``/proc/PID/stat``, all its threads):

1. CPU per request: with ``checkinterval=60``, after the first pass of the checks and before the
   second (a daemon checks the reals it started with together), ``N`` requests one after the other,
   minus what the daemon spent meanwhile without them (its CPU rate over a quiet second just
   before); also the answer's size and wall time. ``/metrics`` is measured twice: a plain request
   (``Accept-Encoding: identity``), and one accepting gzip, as Prometheus always scrapes. Goal for
   ``/metrics``: < 100 ms.
2. The check plane's checks per CPU-second with and without a ``/metrics`` scrape every second:
   two daemons of the same code side by side (``checkinterval=5``: 2,000 checks a second each, each
   scraped once before), each checking the same reals on its own port; in each window of whole passes
   one of them is scraped every second (accepting gzip, as Prometheus, or plain) and the other is
   not, and the next window swaps them. Both are measured over the same seconds, so the machine's
   drift (the CPU for the same 20,000 checks moves by ±10 % over a minute on this shared machine,
   more than the effect being measured) falls on both alike, and swapping them takes out what differs
   between the two processes. The checks are counted on the backends (one nginx access-log line per
   check, one log per port), so counting them costs the daemons nothing. The windows of each kind are
   added up; each window's own drop is shown too (lowest / median / highest). Goal: <= 5 % lower with
   the (gzip) scrapes.

With ``--peer DIR`` a second source tree (the code before a change) is measured the same way in the
same run, against the same backends, and the table shows both side by side.

Prints a table and writes ``bench/results/api.json``. Takes a few minutes (the first check pass of
10,000 reals, then the windows). Everything started is stopped at the end, even on error.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.proc import cpu_seconds  # noqa: E402
from tests.helpers import free_port, wait_for_port  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "api.json"
GOAL_SCRAPE_MS = 100.0
GOAL_CHECKS_DROP = 0.05
REQUESTS_INTERVAL = 60.0  # checkinterval while the requests are measured (quiet between passes)

NGINX_CONF = """\
{user}
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log error;
events {{ worker_connections 16384; }}
http {{
    log_format one "1";
{servers}
}}
"""
SERVER = """\
    server {{
{listens}
        access_log {dir}/access-{port}.log one;
        root {dir}/root;
    }}
"""


@dataclass
class Backends:
    """One nginx serving /check.html on many loopback addresses, on one port per daemon checking them,
    logging one line per request in one log per port."""

    directory: Path
    hosts: list[str]
    ports: list[int]
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def addresses(self, port: int) -> list[tuple[str, int]]:
        return [(host, port) for host in self.hosts]

    def start(self) -> None:
        (self.directory / "root").mkdir(parents=True)
        (self.directory / "root" / "check.html").write_text("OK alive\n")
        servers = "".join(SERVER.format(dir=self.directory, port=port, listens="\n".join(
            f"        listen {a}:{p} backlog=4096;" for a, p in self.addresses(port))) for port in self.ports)
        user = "user root;" if os.geteuid() == 0 else ""
        (self.directory / "nginx.conf").write_text(NGINX_CONF.format(user=user, dir=self.directory,
                                                                     servers=servers))
        self.process = subprocess.Popen(["nginx", "-c", str(self.directory / "nginx.conf"), "-e",
                                         str(self.directory / "error.log")],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for port in self.ports:
            wait_for_port(self.hosts[-1], port, timeout=20)

    def requests(self, port: int) -> int:
        """Requests served on ``port`` so far (access-log lines)."""
        path = self.directory / f"access-{port}.log"
        return path.stat().st_size // 2 if path.exists() else 0  # "1\n" per request

    def stop(self) -> None:
        """nginx's fast shutdown (its master ends its workers; a killed master would leave them)."""
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None


def hosts(block: int, count: int) -> list[str]:
    return [f"127.{block}.{i // 250}.{i % 250 + 1}" for i in range(count)]


def addresses(block: int, count: int, port: int) -> list[tuple[str, int]]:
    return [(host, port) for host in hosts(block, count)]


def config_text(port: int, reals: list[tuple[str, int]], per_virtual: int, interval: float) -> str:
    blocks = []
    for n, start in enumerate(range(0, len(reals), per_virtual)):
        lines = "\n".join(f"\treal={a}:{p} masq 1" for a, p in reals[start:start + per_virtual])
        blocks.append(f"virtual=127.0.0.1:{port + n}\n{lines}\n\tservice=http\n\tchecktype=negotiate\n"
                      f"\trequest=\"check.html\"\n\treceive=\"OK alive\"\n")
    return f"checkinterval={interval:g}\nchecktimeout=5\nnegotiatetimeout=5\nquiescent=no\n" + "".join(blocks)


def get(url: str, gzip: bool = False) -> tuple[int, int]:
    """(status, size as sent) of one GET; ``gzip``: with ``Accept-Encoding: gzip``, as Prometheus
    always scrapes (the answer is not decompressed: the bench's CPU is not the daemon's)."""
    request = urllib.request.Request(url, headers={"Accept-Encoding": "gzip" if gzip else "identity"})
    try:
        with urllib.request.urlopen(request, timeout=300) as answer:
            return answer.status, len(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, 0


class Daemon:
    """A ``saru run`` of the proxy plane checking the backends on ``port``."""

    def __init__(self, workdir: Path, config: str, api_port: int, code: Path, port: int) -> None:
        self.workdir, self.port = workdir, port
        (workdir / "ldirectord.cf").write_text(config)
        (workdir / "saru.toml").write_text(f'[api]\nlisten = "127.0.0.1:{api_port}"\n')
        self.log = (workdir / "saru.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "saru", "run", "-c", str(workdir / "ldirectord.cf"), "--settings",
             str(workdir / "saru.toml"), "--dataplane", "proxy", "--control", str(workdir / "control.sock"),
             "--no-drop"],  # root stays root, like the bench's nginx (the code may live under /root)
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT, cwd=code)  # -m: cwd's saru first
        self.base = f"http://127.0.0.1:{api_port}"

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"saru run exited: {self.log_tail()}")
            if b"All real servers checked" in (self.workdir / "saru.log").read_bytes():
                return
            time.sleep(0.5)
        raise RuntimeError(f"saru run not ready within {timeout}s: {self.log_tail()}")

    def log_tail(self) -> str:
        return (self.workdir / "saru.log").read_bytes()[-2000:].decode(errors="replace")

    def cpu(self) -> float:
        return cpu_seconds(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def checks_done(groups: list[Backends], port: int | None = None) -> int:
    """Checks the backends served on ``port`` (None: on every port) so far."""
    return sum(g.requests(p) for g in groups for p in (g.ports if port is None else [port]))


def between_passes(groups: list[Backends], interval: float) -> None:
    """Return halfway between two passes of the checks (the reals of a daemon started at once are
    checked together, once per interval; daemons started together check theirs together): a window of
    whole intervals then holds whole passes."""
    deadline = time.monotonic() + 3 * interval
    count = checks_done(groups)
    while time.monotonic() < deadline:  # wait for a pass to start…
        time.sleep(0.02)
        if checks_done(groups) != count:
            break
    start = time.monotonic()
    while time.monotonic() < deadline:  # …and to end (no new check for 0.2 s)
        time.sleep(0.2)
        now = checks_done(groups)
        if now == count:
            break
        count = now
    time.sleep(max(0.0, start + interval / 2 - time.monotonic()))


def paired_window(pair: list[Daemon], scraped: Daemon, groups: list[Backends], seconds: float,
                  gzip: bool) -> dict[str, dict[str, float]]:
    """Both daemons' CPU and checks over the same ``seconds``, one ``/metrics`` scrape of ``scraped`` at
    the start of every second (``gzip``: accepting gzip): {"scraped": …, "quiet": …}."""
    quiet = next(d for d in pair if d is not scraped)
    start = {d: (checks_done(groups, d.port), d.cpu()) for d in pair}
    wall0 = time.monotonic()
    scrapes = 0
    next_at = wall0
    while time.monotonic() - wall0 < seconds:
        status, _size = get(scraped.base + "/metrics", gzip)
        assert status == 200, status
        scrapes += 1
        next_at += 1.0
        time.sleep(max(0.0, next_at - time.monotonic()))
    time.sleep(max(0.0, wall0 + seconds - time.monotonic()))
    wall = time.monotonic() - wall0
    found: dict[str, dict[str, float]] = {}
    for role, d in (("scraped", scraped), ("quiet", quiet)):
        checks, cpu = checks_done(groups, d.port) - start[d][0], d.cpu() - start[d][1]
        found[role] = {"daemon": pair.index(d), "seconds": round(wall, 2), "cpu_seconds": round(cpu, 3),
                       "checks": checks, "scrapes": scrapes if d is scraped else 0,
                       "checks_per_cpu_second": round(checks / cpu) if cpu else 0}
    return found


def pooled(windows: list[dict[str, float]]) -> dict[str, float]:
    """Windows of one kind added up."""
    total = {key: sum(w.get(key, 0) for w in windows) for key in ("seconds", "cpu_seconds", "checks", "scrapes")}
    return {**total, "cpu_rate": total["cpu_seconds"] / total["seconds"],
            "checks_per_cpu_second": round(total["checks"] / total["cpu_seconds"]) if total["cpu_seconds"] else 0}


def transitions(daemon: Daemon) -> int:
    """UP -> DOWN transitions of every real so far (none is expected: the backends never fail)."""
    with urllib.request.urlopen(daemon.base + "/metrics", timeout=60) as answer:
        text = answer.read().decode()
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines()
               if line.startswith("saru_server_check_up_down_total{"))


def per_request(daemon: Daemon, path: str, count: int, gzip: bool = False) -> dict[str, Any]:
    """CPU per request of ``count`` requests one after the other, the quiet daemon's share taken out
    (and of the first one, which writes every line); ``gzip``: accepting gzip."""
    cpu0 = daemon.cpu()
    status, size = get(daemon.base + path, gzip)  # the first one writes what later ones reuse
    if status != 200:
        return {"error": f"HTTP {status}"}
    first = daemon.cpu() - cpu0
    cpu0, wall0 = daemon.cpu(), time.monotonic()
    time.sleep(1.0)
    idle_rate = (daemon.cpu() - cpu0) / (time.monotonic() - wall0)
    cpu0, wall0 = daemon.cpu(), time.monotonic()
    walls = []
    for _ in range(count):
        start = time.monotonic()
        status, size = get(daemon.base + path, gzip)
        walls.append(time.monotonic() - start)
    cpu, wall = daemon.cpu() - cpu0, time.monotonic() - wall0
    per = (cpu - idle_rate * wall) / count
    return {"requests": count, "bytes": size, "cpu_ms": round(per * 1000, 1), "idle_cpu_rate": idle_rate,
            "first_cpu_ms": round(first * 1000, 1),
            "cpu_ms_raw": round(cpu / count * 1000, 1), "wall_ms_mean": round(1000 * sum(walls) / count, 1),
            "wall_ms_max": round(1000 * max(walls), 1)}


def start_daemons(base: Path, groups: list[Backends], ports: list[int], interval: float,
                  code: Path = ROOT) -> list[Daemon]:
    """A daemon per port, each checking every backend on its port, started together (their passes
    come together)."""
    daemons = []
    started = time.monotonic()
    for n, port in enumerate(ports):
        reals = [ep for g in groups for ep in g.addresses(port)]
        workdir = base / f"director-{n}"
        workdir.mkdir(parents=True)
        daemons.append(Daemon(workdir, config_text(20000 + 200 * n, reals, 100, interval), free_port(), code,
                              port))
    for daemon in daemons:
        daemon.wait_ready(600)
    count = sum(len(g.hosts) for g in groups)
    print(f"{len(daemons)} x {count} reals ready in {time.monotonic() - started:.1f}s "
          f"(checkinterval {interval:g}s, HTTP negotiate checks)")
    return daemons


def measure(base: Path, groups: list[Backends], args: argparse.Namespace, code: Path) -> dict[str, Any]:
    """Every measure of one saru source tree (``code``: this one, or a peer to compare with)."""
    daemons: list[Daemon] = []
    ports = groups[0].ports
    try:
        (daemon,) = daemons = start_daemons(base / "requests", groups, ports[:1], REQUESTS_INTERVAL, code)
        time.sleep(1.0)  # the first pass is over; the next one comes a minute after the start
        metrics = per_request(daemon, "/metrics", args.scrapes)
        print(f"  /metrics: {metrics}")
        metrics_gzip = per_request(daemon, "/metrics", args.scrapes, gzip=True)
        print(f"  /metrics, accepting gzip: {metrics_gzip}")
        status = per_request(daemon, "/api/v1/status", max(3, args.scrapes // 4))
        print(f"  /api/v1/status: {status}")
        daemon.stop()
        pair = daemons = start_daemons(base / "checks", groups, ports, args.interval, code)
        for d in pair:
            get(d.base + "/metrics")  # as if Prometheus had been scraping: the first answer writes all
        seconds = args.interval * max(1, round(args.seconds / args.interval))  # whole passes
        between_passes(groups, args.interval)
        windows: dict[str, list[dict[str, dict[str, float]]]] = {"gzip": [], "identity": []}
        for n in range(args.rounds):  # each kind scrapes each daemon in turn, the other one beside it
            for kind in windows:
                for scraped in pair:
                    window = paired_window(pair, scraped, groups, seconds, gzip=kind == "gzip")
                    windows[kind].append(window)
                    print(f"  round {n + 1}, {kind}, daemon {pair.index(scraped)} scraped: {window}")
        flaps = sum(transitions(d) for d in pair)
        print(f"  UP -> DOWN transitions during the windows: {flaps}")
    finally:
        for d in daemons:
            d.stop()

    def kind_of(kind: str) -> dict[str, Any]:
        quiet = pooled([w["quiet"] for w in windows[kind]])
        scraped = pooled([w["scraped"] for w in windows[kind]])
        drops = sorted(round(1 - w["scraped"]["checks_per_cpu_second"] / w["quiet"]["checks_per_cpu_second"], 3)
                       for w in windows[kind])
        # a scrape's CPU next to the checks: the scraped daemon's CPU beyond what the quiet one spent on
        # as many checks
        extra = scraped["cpu_seconds"] - quiet["cpu_seconds"] * scraped["checks"] / quiet["checks"]
        print(f"  {kind}: quiet {quiet}, scraped {scraped}")
        return {"quiet": quiet, "scraped": scraped, "windows": len(windows[kind]),
                "drop": round(1 - scraped["checks_per_cpu_second"] / quiet["checks_per_cpu_second"], 3),
                "window_drops": drops,
                "scrape_cpu_ms_under_checks": round(extra / max(1, scraped["scrapes"]) * 1000, 1)}

    return {"code": str(code), "metrics": {**metrics, "goal_cpu_ms": GOAL_SCRAPE_MS},
            "metrics_gzip": metrics_gzip, "status": status, "rounds": args.rounds,
            "checks_gzip": kind_of("gzip"), "checks_identity": kind_of("identity"), "goal_drop": GOAL_CHECKS_DROP,
            "up_down_transitions": flaps}


def spread(drops: list[float]) -> str:
    return f"{100 * drops[0]:.0f}/{100 * drops[len(drops) // 2]:.0f}/{100 * drops[-1]:.0f} %"


def table(runs: list[dict[str, Any]], reals: int) -> None:
    names = ["this tree", "peer"][:len(runs)]
    print()
    print(f"{'measure (' + str(reals) + ' reals)':<46}" + "".join(f"{n:>14}" for n in names) + f"{'goal':>12}")
    print("-" * (58 + 14 * len(runs)))

    def row(label: str, values: list[str], goal: str = "") -> None:
        print(f"{label:<46}" + "".join(f"{v:>14}" for v in values) + f"{goal:>12}")

    def status_ms(r: dict[str, Any]) -> str:
        return r["status"].get("error") or f"{r['status']['cpu_ms']:.1f} ms"

    row("/metrics: daemon CPU per scrape", [f"{r['metrics']['cpu_ms']:.1f} ms" for r in runs], "< 100 ms")
    row("/metrics: answer size", [f"{r['metrics']['bytes'] / 1e6:.1f} MB" for r in runs])
    row("/metrics: wall time per scrape (mean)", [f"{r['metrics']['wall_ms_mean']:.1f} ms" for r in runs])
    row("/metrics, accepting gzip: daemon CPU per scrape", [f"{r['metrics_gzip']['cpu_ms']:.1f} ms" for r in runs],
        "< 100 ms")
    row("/metrics, accepting gzip: answer size", [f"{r['metrics_gzip']['bytes'] / 1e6:.2f} MB" for r in runs])
    row("/metrics, accepting gzip: wall time (mean)", [f"{r['metrics_gzip']['wall_ms_mean']:.1f} ms" for r in runs])
    row("/metrics: the first scrape (writes every line)", [f"{r['metrics']['first_cpu_ms']:.0f} ms" for r in runs])
    row("/api/v1/status: daemon CPU per request", [status_ms(r) for r in runs], "< 100 ms")
    row("/api/v1/status: answer size", [f"{r['status'].get('bytes', 0) / 1e6:.1f} MB" for r in runs])
    for label, key in (("gzip", "checks_gzip"), ("identity", "checks_identity")):
        row(f"checks per CPU-second, no scrape (beside {label})",
            [f"{r[key]['quiet']['checks_per_cpu_second']:,}" for r in runs])
        row(f"checks per CPU-second, a scrape a second ({label})",
            [f"{r[key]['scraped']['checks_per_cpu_second']:,}" for r in runs])
        row("  lower by", [f"{100 * r[key]['drop']:.1f} %" for r in runs], "<= 5 %" if label == "gzip" else "")
        row("  windows: lowest / median / highest", [spread(r[key]["window_drops"]) for r in runs])
        row("  a scrape next to the checks: daemon CPU", [f"{r[key]['scrape_cpu_ms_under_checks']:.1f} ms"
                                                           for r in runs])
    row("rounds (each kind scrapes each daemon once a round)", [str(r["rounds"]) for r in runs])
    row("UP -> DOWN transitions during the windows", [str(r["up_down_transitions"]) for r in runs], "(0)")


def main(args: argparse.Namespace) -> dict[str, Any]:
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if shutil.which("nginx") is None:
        raise SystemExit("nginx is not installed (make deps)")
    base = Path(tempfile.mkdtemp(prefix="saru-api-bench-"))
    groups: list[Backends] = []
    backend_ports = [free_port(), free_port()]  # one per daemon of the pair
    runs: list[dict[str, Any]] = []
    try:
        per_group = 500
        for i in range(args.reals // per_group):
            groups.append(Backends(base / f"nginx-{i}", hosts(100 + i, per_group), backend_ports))
        for group in groups:
            group.start()
        for n, code in enumerate([ROOT, *([Path(args.peer).resolve()] if args.peer else [])]):
            print(f"{code}:")
            (base / str(n)).mkdir()
            runs.append(measure(base / str(n), groups, args, code))
    finally:
        for group in groups:
            group.stop()
        shutil.rmtree(base, ignore_errors=True)
    reals = args.reals // per_group * per_group
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                    "loadavg_before": load_before, "loadavg_after": Path("/proc/loadavg").read_text().split()[:3]},
        "reals": reals, "checkinterval": args.interval, "checkinterval_requests": REQUESTS_INTERVAL,
        **runs[0], "peer": runs[1] if len(runs) > 1 else None,
    }
    table(runs, reals)
    print(f"load average before / after: {' '.join(load_before)} / {' '.join(results['machine']['loadavg_after'])}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {RESULTS}")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reals", type=int, default=10_000, help="reals (a multiple of 500)")
    parser.add_argument("--interval", type=float, default=5.0, help="checkinterval of every virtual")
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="length of each check window (rounded to whole check intervals)")
    parser.add_argument("--rounds", type=int, default=4,
                        help="rounds of four paired check windows (gzip scrapes, plain scrapes; of either "
                        "daemon, the other one beside it); the windows of a kind are added up")
    parser.add_argument("--scrapes", type=int, default=20, help="scrapes for the CPU per scrape")
    parser.add_argument("--peer", help="another saru source tree measured the same way in the same run, after "
                        "this one (e.g. `git archive main | tar -x -C /tmp/peer`)")
    main(parser.parse_args())
