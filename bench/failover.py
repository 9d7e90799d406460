"""Failover benchmark: how long a client of the VIP goes unserved when the active director dies.

The guide's topology in network namespaces (``tests.ha.bed.HABed``: client, router, LD1, LD2, FE1/FE2
with nginx, direct routing, nftables data plane). A probe in the client namespace starts a new
TCP connection to VIP:80 and a GET of ``/`` every 5 ms — attempts overlap, each with 0.3 s timeouts, so
the resolution is 5 ms even while nothing answers — and reports each success with the CLOCK_MONOTONIC
times it was started and answered. One run = the active director dies — its bridge port
goes down (the node is gone) and its daemon gets SIGKILL — and the failover time is the time from
that moment until the first request sent after it is answered (requests in flight do not count).
The dead director is then brought back (it rejoins as backup, so the roles alternate).

Pairs, in the same run: Saru with its defaults (advert 0.1 s), Saru tuned (advert 0.03 s, VIPcheck
timeout 0.05 s, 2 gratuitous ARPs), Saru fast (advert 0.02 s, VIPcheck timeout 0.03 s, 2 gratuitous
ARPs, ``warm_standby``: the backup's table is already programmed; VIPcheck stays on), and
keepalived 2.2 with its defaults (VRRPv2, advert_int 1; the table is programmed by a Saru without
``[ha]`` on both directors). Then a planned switchover
(resign → peer master → take back) in DR mode under 20 established downloads: how many were lost.

Prints a table and writes ``bench/results/failover.json``. Goals (median): <= 0.5 s with Saru's
defaults, <= 0.1 s tuned ("fast"), and zero established connections lost on a planned DR switchover.

    sudo .venv/bin/python bench/failover.py [--runs 20] [--only saru-defaults,saru-tuned,keepalived]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.ha.bed import DIRECTORS, Director, HABed, keepalived_conf, start_keepalived, wait_for
from tests.lab.guide import VIP

RESULTS = Path(__file__).resolve().parent / "results" / "failover.json"
GOAL_DEFAULTS = 0.5
GOAL_TUNED = 0.1

PROBE = r"""
import asyncio, sys, time
host = sys.argv[1]

async def attempt(start):
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, 80), 0.3)
        try:
            writer.write(b"GET / HTTP/1.0\r\n\r\n")
            head = await asyncio.wait_for(reader.read(16), 0.3)
        finally:
            writer.close()
        if head.startswith(b"HTTP/1.1 200"):
            print(f"{start:.6f} {time.monotonic():.6f}", flush=True)
    except (OSError, asyncio.TimeoutError):
        pass

async def main():
    print("ready", flush=True)
    running = set()
    while True:  # a new attempt every 5 ms, whether or not the earlier ones were answered
        task = asyncio.create_task(attempt(time.monotonic()))
        running.add(task)
        task.add_done_callback(running.discard)
        await asyncio.sleep(0.005)

asyncio.run(main())
"""

class ProbeReader:
    """The client probe; ``first_after(t)`` waits for the first success later than ``t``."""

    def __init__(self, bed: HABed) -> None:
        self.proc = bed.popen("cl", sys.executable, "-c", PROBE, VIP, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL)
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready"
        self.times: list[tuple[float, float]] = []
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            start, end = (float(x) for x in line.split())
            with self.cond:
                self.times.append((start, end))
                self.cond.notify_all()

    def first_after(self, t: float, timeout: float) -> float | None:
        """When the first request that was *sent* after ``t`` succeeded (in-flight ones do not count)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                later = [end for start, end in self.times[-200:] if start > t]
                if later:
                    return later[0]
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(5)


def reset(bed: HABed) -> None:
    for role in DIRECTORS:
        bed.run("br", "ip", "link", "set", f"p-{role}", "up", check=False)
        bed.run(role, "ip", "route", "replace", "default", "via", "10.77.6.1", check=False)
        bed.run(role, "ip", "addr", "del", f"{VIP}/24", "dev", "eth0", check=False)
        bed.run(role, "nft", "delete", "table", "netdev", "saru", check=False)


def crash(bed: HABed, role: str, kill: Any) -> float:
    """The node ``role`` dies: bridge port down, then SIGKILL; returns when the port was down for sure
    (``ip`` has returned: requests sent before may still have gone through, so they do not count)."""
    bed.run("br", "ip", "link", "set", f"p-{role}", "down")
    t0 = time.monotonic()
    kill()
    return t0


def bench_saru(bed: HABed, name: str, runs: int, probe: ProbeReader, **ha: Any) -> dict[str, Any]:
    nodes: dict[str, Director] = {}
    times: list[float] = []
    failures = 0
    try:
        nodes["ld1"] = bed.director("ld1", **ha)
        nodes["ld1"].wait_state("master")
        nodes["ld2"] = bed.director("ld2", **ha)
        nodes["ld2"].wait_state("backup")
        bed.served()
        for i in range(runs):
            master = next(r for r, d in nodes.items() if d.state() == "master")
            other = next(r for r in nodes if r != master)
            t0 = crash(bed, master, nodes[master].kill9)
            first = probe.first_after(t0, 10)
            if first is None:
                failures += 1
            else:
                times.append(first - t0)
            nodes[other].wait_state("master", 10)
            bed.run("br", "ip", "link", "set", f"p-{master}", "up")
            nodes[master] = bed.director(master, **ha)
            nodes[master].wait_state("backup")
            print(f"  {name} run {i + 1}: {'lost' if first is None else f'{(first - t0) * 1000:.0f} ms'}",
                  flush=True)
    finally:
        for d in nodes.values():
            d.stop()
        reset(bed)
    return summary(name, times, failures)


def bench_keepalived(bed: HABed, runs: int, probe: ProbeReader) -> dict[str, Any]:
    tables: list[Director] = []
    kas: dict[str, subprocess.Popen[str]] = {}
    times: list[float] = []
    failures = 0
    conf = keepalived_conf(state="BACKUP", priority=100, interval=1, nopreempt=False).replace(
        "    vrrp_version 3\n", "")  # keepalived's defaults: VRRPv2, advert_int 1
    try:
        for role in DIRECTORS:
            d = bed.director(role, start=False, with_ha=False)
            tables.append(d)
            wait_for(lambda d=d: d.ask("status")["ready"], 20, f"table-only saru in {role}")
        kas["ld1"] = start_keepalived(bed, "ld1", conf)
        wait_for(lambda: bed.vip_on("ld1"), 15, "keepalived master on ld1")
        kas["ld2"] = start_keepalived(bed, "ld2", conf)
        time.sleep(2)  # keepalived has no state query: let ld2 settle as backup
        bed.served()
        for i in range(runs):
            master = "ld1" if bed.vip_on("ld1") and kas["ld1"].poll() is None else "ld2"
            other = "ld2" if master == "ld1" else "ld1"
            proc = kas[master]
            t0 = crash(bed, master, proc.kill)
            proc.wait(5)
            first = probe.first_after(t0, 15)
            if first is None:
                failures += 1
            else:
                times.append(first - t0)
            wait_for(lambda other=other: bed.vip_on(other), 10, f"keepalived master on {other}")
            bed.run(master, "ip", "addr", "del", f"{VIP}/24", "dev", "eth0", check=False)  # keepalived -9 leaves it
            bed.run("br", "ip", "link", "set", f"p-{master}", "up")
            kas[master] = start_keepalived(bed, master, conf)
            time.sleep(1.5)  # startup as backup (no state query)
            print(f"  keepalived run {i + 1}: {'lost' if first is None else f'{(first - t0) * 1000:.0f} ms'}",
                  flush=True)
    finally:
        for proc in kas.values():
            if proc.poll() is None:
                proc.terminate()
                proc.wait(10)
        for d in tables:
            d.stop()
        reset(bed)
    return summary("keepalived defaults (VRRPv2, advert 1 s)", times, failures)


def planned_switchover(bed: HABed, downloads: int = 20) -> dict[str, Any]:
    """Resign → peer master → take back, under ``downloads`` rate-limited downloads; how many failed."""
    nodes: list[Director] = []
    for role in ("fe1", "fe2"):
        with (bed.workdir / f"nginx-{role}" / "root" / "big.bin").open("wb") as handle:
            handle.truncate(8 * 1024 * 1024)
    try:
        ld1 = bed.director("ld1")
        nodes.append(ld1)
        ld1.wait_state("master")
        ld2 = bed.director("ld2")
        nodes.append(ld2)
        ld2.wait_state("backup")
        bed.served()
        procs = [bed.popen("cl", "curl", "-s", "-f", "--limit-rate", "2M", "-o", "/dev/null", "-w",
                           "%{size_download}", f"http://{VIP}/big.bin", stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE) for _ in range(downloads)]
        time.sleep(0.5)
        test = bed.run("cl", sys.executable, "-m", "saru", "failover-test", "--control", str(ld1.control),
                       "--probe", f"{VIP}:80", "--http", "/", "--back", "--json", check=False, timeout=60)
        lost = 0
        for p in procs:
            out, _ = p.communicate(timeout=60)
            if p.returncode != 0 or out.strip() != str(8 * 1024 * 1024):
                lost += 1
        result = json.loads(test.stdout) if test.returncode == 0 else {"error": test.stderr.strip()}
        return {"downloads": downloads, "lost": lost, "failover_test": result}
    finally:
        for d in nodes:
            d.stop()
        reset(bed)


def summary(name: str, times: list[float], failures: int) -> dict[str, Any]:
    doc: dict[str, Any] = {"name": name, "runs": len(times) + failures, "failed_runs": failures,
                           "seconds": [round(t, 4) for t in times]}
    if times:
        ordered = sorted(times)
        doc.update(min=round(ordered[0], 4), median=round(statistics.median(ordered), 4),
                   p90=round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))], 4), max=round(ordered[-1], 4))
    return doc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--only", default="saru-defaults,saru-tuned,saru-fast,keepalived,planned")
    args = parser.parse_args()
    ok, why = HABed.available()
    if not ok:
        print(f"cannot run: {why}", file=sys.stderr)
        return 2
    wanted = set(args.only.split(","))
    results: dict[str, Any] = {"runs": args.runs, "loadavg_start": os.getloadavg()[0], "pairs": [],
                               "goal": {"defaults": GOAL_DEFAULTS, "tuned": GOAL_TUNED, "planned_lost": 0}}
    with tempfile.TemporaryDirectory(prefix="saru-failover-") as tmp:
        bed = HABed(Path(tmp))
        try:
            bed.up()
            bed.mode("dr")
            bed.nginx("fe1")
            bed.nginx("fe2")
            probe = ProbeReader(bed)
            try:
                if "saru-defaults" in wanted:
                    results["pairs"].append(bench_saru(bed, "saru defaults (advert 0.1 s)", args.runs, probe))
                if "saru-tuned" in wanted:
                    results["pairs"].append(bench_saru(bed, "saru tuned (advert 0.03 s)", args.runs, probe,
                                                       advert_interval=0.03, vipcheck_timeout=0.05, garp_repeat=2))
                if "saru-fast" in wanted:
                    results["pairs"].append(bench_saru(bed, "saru fast (advert 0.02, VIPcheck 0.03, warm)", args.runs,
                                                       probe, advert_interval=0.02, vipcheck_timeout=0.03,
                                                       garp_repeat=2, warm_standby=True))
                if "keepalived" in wanted:
                    results["pairs"].append(bench_keepalived(bed, args.runs, probe))
            finally:
                probe.stop()
            if "planned" in wanted:
                results["planned"] = planned_switchover(bed)
        finally:
            bed.down()
    print()
    print(f"{'pair':<44} {'runs':>4} {'lost':>4} {'min':>7} {'median':>7} {'p90':>7} {'max':>7}  (seconds, kill -9 "
          "+ link down -> client served)")
    for pair in results["pairs"]:
        cells = " ".join(f"{pair.get(k, float('nan')):>7.3f}" for k in ("min", "median", "p90", "max"))
        print(f"{pair['name']:<44} {pair['runs']:>4} {pair['failed_runs']:>4} {cells}")
    print(f"goal: <= {GOAL_DEFAULTS} s with Saru's defaults, <= {GOAL_TUNED} s fast (median)"
          f"; load {os.getloadavg()[0]:.1f}")
    if "planned" in results:
        planned = results["planned"]
        print(f"planned DR switchover (resign + take back) under {planned['downloads']} downloads: "
              f"{planned['lost']} lost (goal 0)")
        for step in planned.get("failover_test", {}).get("steps", []):
            print(f"  {step['action']}: switch {step['switch_seconds'] * 1000:.0f} ms, longest client gap "
                  f"{step['client']['longest_gap'] * 1000:.0f} ms")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    # the bed's daemons run as root, like the test suite's (tests/conftest.py): this Python may live
    # where the `saru` user cannot read it
    os.environ.setdefault("SARU_DROP_PRIVILEGES", "0")
    os.environ.setdefault("SARU_COMMAND_USER", "root")
    sys.exit(main())
