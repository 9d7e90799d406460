"""System calls per request of Saru's proxy and of haproxy (``mode tcp``, one thread), side by side.

Where the proxy's CPU goes, beside ``bench/proxy_bench.py``'s times: ``strace -c -f`` is attached to
each director while the same load runs through it — ``wrk -t1 -c50`` with ``Connection: close`` (a
new connection per request) and with keep-alive, on one real nginx on 127.0.0.1 — and every system
call is divided by the number of requests wrk completed. (strace slows the directors down; the counts
per request are what it is for.) Saru is measured in both its modes: on the asyncio loop (the
daemon's default) and in its own thread. Writes ``bench/results/proxy_syscalls.json``.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.proxy_bench import HAPROXY_CONF, SMALL, Processes  # noqa: E402
from tests.helpers import free_port, start_nginx, wait_for_port  # noqa: E402


def start(name: str, procs: Processes, workdir: Path, real_port: int) -> tuple[int, int]:
    port = free_port()
    if name == "haproxy":
        conf = workdir / "haproxy.cfg"
        conf.write_text(HAPROXY_CONF.format(port=port, servers=f"  server s0 127.0.0.1:{real_port}"))
        p = subprocess.Popen(["haproxy", "-f", str(conf), "-db"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        procs.popens.append(p)
        wait_for_port("127.0.0.1", port)
        return port, p.pid
    args = [sys.executable, str(ROOT / "bench" / "proxy_runner.py"), f"127.0.0.1:{port}", f"127.0.0.1:{real_port}"]
    if name == "saru-thread":
        args.append("--thread")
    p = subprocess.Popen(args, stdout=subprocess.PIPE)
    procs.popens.append(p)
    assert p.stdout is not None
    if p.stdout.readline().strip() != b"ready":
        raise RuntimeError(f"{name} did not start")
    return port, p.pid


def count(pid: int, port: int, close: bool, duration: int, out: Path) -> dict[str, Any]:
    tracer = subprocess.Popen(["strace", "-c", "-f", "-p", str(pid), "-o", str(out)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)  # attached
    args = ["wrk", "-t1", "-c50", f"-d{duration}s", *(["-H", "Connection: close"] if close else []),
            f"http://127.0.0.1:{port}/small.txt"]
    text = subprocess.run(args, capture_output=True, text=True, check=True, timeout=duration + 60).stdout
    tracer.send_signal(signal.SIGINT)
    tracer.wait(30)
    match = re.search(r"(\d+) requests in", text)
    if not match:
        raise RuntimeError(f"cannot parse wrk output:\n{text}")
    requests = int(match.group(1))
    calls: dict[str, float] = {}
    for line in out.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[3].isdigit() and parts[-1] != "total":
            calls[parts[-1]] = int(parts[3]) / max(requests, 1)
    return {"requests": requests, "per_request": dict(sorted(calls.items(), key=lambda kv: -kv[1])),
            "total_per_request": sum(calls.values())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=3, help="seconds of wrk per measurement (default 3)")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "proxy_syscalls.json")
    args = parser.parse_args()
    for tool in ("nginx", "haproxy", "wrk", "strace"):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed", file=sys.stderr)
            return 2
    procs = Processes()
    results: dict[str, dict[str, Any]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="saru-proxy-syscalls-") as tmp:
            workdir = Path(tmp)
            real = start_nginx(workdir / "rs1", name="rs1", files={"/small.txt": SMALL})
            procs.nginx.append(real)
            for name in ("haproxy", "saru", "saru-thread"):
                port, pid = start(name, procs, workdir, real.port)
                for case, close in (("close", True), ("keepalive", False)):
                    results.setdefault(case, {})[name] = count(pid, port, close, args.duration,
                                                               workdir / f"{name}-{case}.strace")
    finally:
        procs.stop()
    for case, by_name in results.items():
        print(f"{case}: system calls per request")
        names = sorted({call for r in by_name.values() for call in r["per_request"]},
                       key=lambda c: -max(r["per_request"].get(c, 0) for r in by_name.values()))
        print(f"  {'call':14s}" + "".join(f"{n:>13s}" for n in by_name))
        for call in names:
            print(f"  {call:14s}" + "".join(f"{r['per_request'].get(call, 0):13.3f}" for r in by_name.values()))
        print(f"  {'total':14s}" + "".join(f"{r['total_per_request']:13.3f}" for r in by_name.values()))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
        "results": results,
    }, indent=2) + "\n")
    print(f"written {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
