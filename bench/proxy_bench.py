"""Saru's userspace proxy against haproxy (``mode tcp``, one thread) on the same nginx backends.

Starts two real nginx on 127.0.0.1, haproxy round-robin over them, and the Saru proxy
(``bench/proxy_runner.py``, its own process) round-robin over them, then runs ``wrk -t1 -c50`` against
each side by side in the same run, for three cases: ``Connection: close`` (a new connection per
request) and keep-alive on a small file, and keep-alive on a 1 MiB file (bulk: the proxy splices;
``saru-copy``, the same proxy copying through Python, is measured beside it). For each it reports
requests/s and the director's CPU time per request (utime+stime from ``/proc/PID/stat`` before and
after, and the user part alone), with Saru/haproxy ratios, and writes everything (with the load
average) to ``bench/results/proxy.json``. The order of the directors rotates from round to round.
Only 127.0.0.1 is used; everything started is stopped at the end, even on error.

Goals (issue 16): CPU per new connection <= 1.1x haproxy's; keep-alive req/s >= 1.0x haproxy's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.proc import cpu_times  # noqa: E402
from tests.helpers import Nginx, free_port, start_nginx, wait_for_port  # noqa: E402

SMALL = "x" * 100 + "\n"
LARGE = "0123456789abcdef" * 65536  # 1 MiB: the bulk case (splice)
#: (case, Connection: close, wrk connections, path)
CASES = (("close", True, 50, "/small.txt"), ("keepalive", False, 50, "/small.txt"),
         ("bulk", False, 10, "/large.bin"))
HAPROXY_CONF = """\
global
  nbthread 1
  maxconn 9000
defaults
  mode tcp
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend f
  bind 127.0.0.1:{port}
  default_backend b
backend b
  balance roundrobin
{servers}
"""


def run_wrk(port: int, duration: int, close: bool, connections: int = 50, path: str = "/small.txt") -> dict[str, Any]:
    args = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s"]
    if close:
        args += ["-H", "Connection: close"]
    args.append(f"http://127.0.0.1:{port}{path}")
    out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=duration + 60).stdout
    m = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    if not m:
        raise RuntimeError(f"cannot parse wrk output:\n{out}")
    requests, secs = int(m.group(1)), float(m.group(2)) / (1000 if m.group(3) == "ms" else 1)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "requests": requests,
        "seconds": secs,
        "rps": requests / secs,
        "socket_errors": sum(int(x) for x in errors.groups()) if errors else 0,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
    }


def measure(port: int, pid: int | None, duration: int, close: bool, connections: int = 50,
            path: str = "/small.txt") -> dict[str, Any]:
    before = cpu_times(pid) if pid else (0.0, 0.0)
    result = run_wrk(port, duration, close, connections, path)
    if pid:
        after = cpu_times(pid)
        user, system = after[0] - before[0], after[1] - before[1]
        requests = max(result["requests"], 1)
        result["cpu_seconds"] = user + system
        result["cpu_us_per_request"] = (user + system) / requests * 1e6
        result["user_us_per_request"] = user / requests * 1e6
        result["sys_us_per_request"] = system / requests * 1e6
    return result


class Processes:
    """Everything the benchmark started, stopped in reverse order."""

    def __init__(self) -> None:
        self.popens: list[subprocess.Popen[bytes]] = []
        self.nginx: list[Nginx] = []

    def stop(self) -> None:
        for p in reversed(self.popens):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        for n in self.nginx:
            n.stop()


def start_haproxy(procs: Processes, workdir: Path, backends: list[Nginx]) -> tuple[int, int]:
    port = free_port()
    servers = "\n".join(f"  server s{i} 127.0.0.1:{b.port}" for i, b in enumerate(backends))
    conf = workdir / "haproxy.cfg"
    conf.write_text(HAPROXY_CONF.format(port=port, servers=servers))
    cmd = ["haproxy", "-f", str(conf), "-db"]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    procs.popens.append(p)
    wait_for_port("127.0.0.1", port)
    return port, p.pid


def start_saru(procs: Processes, backends: list[Nginx], threaded: bool = False,
               splice: bool = True) -> tuple[int, int]:
    port = free_port()
    args = [sys.executable, str(ROOT / "bench" / "proxy_runner.py"), f"127.0.0.1:{port}"]
    args += [f"127.0.0.1:{b.port}" for b in backends]
    if threaded:
        args.append("--thread")
    if not splice:
        args.append("--no-splice")
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    procs.popens.append(p)
    assert p.stdout is not None
    line = p.stdout.readline()
    if line.strip() != b"ready":
        raise RuntimeError(f"saru proxy did not start: {line!r} {p.stderr.read() if p.stderr else b''!r}")
    return port, p.pid


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run (default 5)")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of every case (default 1)")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "proxy.json")
    parser.add_argument("--thread", action="store_true",
                        help="also measure the proxy forwarding in its own thread (saru-thread)")
    args = parser.parse_args()
    for tool in ("nginx", "haproxy", "wrk"):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed (make deps installs it)", file=sys.stderr)
            return 2

    procs = Processes()
    rounds: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="saru-proxy-bench-") as tmp:
            workdir = Path(tmp)
            for name in ("rs1", "rs2"):
                procs.nginx.append(start_nginx(workdir / name, name=name,
                                               files={"/small.txt": SMALL, "/large.bin": LARGE}))
            directors = {
                "haproxy": start_haproxy(procs, workdir, procs.nginx),
                "saru": start_saru(procs, procs.nginx),
            }
            if args.thread:
                directors["saru-thread"] = start_saru(procs, procs.nginx, threaded=True)
            directors["saru-copy"] = start_saru(procs, procs.nginx, splice=False)  # bulk case only
            for port, _ in directors.values():  # warm up (and check the relay works)
                run_wrk(port, 1, close=False, connections=10)
            for r in range(args.repeat):
                for case, close, connections, path in CASES:
                    row: dict[str, Any] = {"round": r + 1, "case": case}
                    names = [n for n in directors if case == "bulk" or n != "saru-copy"]
                    names = names[r % len(names):] + names[:r % len(names)]  # who goes first rotates
                    for name in names:
                        port, pid = directors[name]
                        row[name] = measure(port, pid, args.duration, close, connections, path)
                    rounds.append(row)
                    print_row(row, flush=True)
    finally:
        procs.stop()

    summary = summarize(rounds)
    print_summary(summary)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": {"cpus": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release(),
                 "loadavg": Path("/proc/loadavg").read_text().split()[:3]},
        "wrk": {"threads": 1, "cases": [list(c) for c in CASES], "duration": args.duration,
                "file_bytes": {"small": len(SMALL), "large": len(LARGE)}},
        "rounds": rounds,
        "summary": summary,
    }, indent=2) + "\n")
    print(f"written {args.output}")
    return 0


def directors_of(row: dict[str, Any]) -> list[str]:
    return [k for k in row if k not in ("round", "case")]


def print_row(row: dict[str, Any], flush: bool = False) -> None:
    parts = []
    for name in directors_of(row):
        r = row[name]
        errors = r["socket_errors"] + r["non_2xx"]
        parts.append(f"{name} {r['rps']:7.0f} req/s {r['cpu_us_per_request']:6.1f} us/req "
                     f"(user {r['user_us_per_request']:.1f})"
                     + (f" ({errors} errors)" if errors else ""))
    print(f"round {row['round']} {row['case']:9s}  " + "  |  ".join(parts), flush=flush)


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for case in [c[0] for c in CASES]:
        rows = [r for r in rounds if r["case"] == case]
        if not rows:
            continue

        def total(name: str, field: str, rows: list[dict[str, Any]] = rows) -> float:
            return sum(r[name][field] for r in rows)

        entry: dict[str, Any] = {}
        for name in directors_of(rows[0]):
            entry[name] = {
                "rps": total(name, "requests") / total(name, "seconds"),
                "cpu_us_per_request": total(name, "cpu_seconds") / total(name, "requests") * 1e6,
                "user_us_per_request": sum(r[name]["user_us_per_request"] * r[name]["requests"] for r in rows)
                / total(name, "requests"),
            }
            if name != "haproxy":
                e, h = entry[name], entry["haproxy"]
                e["rps_ratio"] = e["rps"] / h["rps"]
                e["cpu_ratio"] = e["cpu_us_per_request"] / h["cpu_us_per_request"]
        entry["rps_ratio"] = entry["saru"]["rps_ratio"]
        entry["cpu_ratio"] = entry["saru"]["cpu_ratio"]
        summary[case] = entry
    if "close" in summary:
        summary["close"]["goal"] = "cpu_ratio <= 1.1"
        summary["close"]["goal_met"] = summary["close"]["cpu_ratio"] <= 1.1
    if "keepalive" in summary:
        summary["keepalive"]["goal"] = "rps_ratio >= 1.0"
        summary["keepalive"]["goal_met"] = summary["keepalive"]["rps_ratio"] >= 1.0
    if "bulk" in summary:
        summary["bulk"]["goal"] = "splice: cpu below saru-copy's"
        summary["bulk"]["goal_met"] = summary["bulk"]["saru"]["cpu_us_per_request"] < summary["bulk"][
            "saru-copy"]["cpu_us_per_request"]
    return summary


def print_summary(summary: dict[str, Any]) -> None:
    print()
    print(f"{'case':10s} {'director':13s} {'req/s':>9s} {'CPU us/req':>11s} {'user us':>8s}"
          f" {'req/s ratio':>12s} {'CPU ratio':>10s}")
    for case, entry in summary.items():
        for name, e in entry.items():
            if not isinstance(e, dict):
                continue
            ratios = f"{e['rps_ratio']:12.2f} {e['cpu_ratio']:10.2f}" if "rps_ratio" in e else ""
            print(f"{case:10s} {name:13s} {e['rps']:9.0f} {e['cpu_us_per_request']:11.1f}"
                  f" {e['user_us_per_request']:8.1f} {ratios}")
        verdict = "met" if entry["goal_met"] else "MISSED"
        print(f"{case:10s} goal {entry['goal']} (saru vs haproxy): {verdict}")


if __name__ == "__main__":
    sys.exit(main())
