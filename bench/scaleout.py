"""Scale-out benchmark (issue 15): active-active directors behind a BIRD router doing L4 ECMP.

The BGP bed of tests/bgp (``tests.lab.bgp.BGPBed``: a BIRD router installing ECMP routes, Saru
directors with ``[bgp]`` on the nftables DR plane, four nginx reals with the VIP on lo, two clients)
in network namespaces. Three measurements, side by side in the same run:

1. **Connections broken per event**, with 24 long downloads (12 per client, rate-limited by nginx)
   in flight: a director killed (link down + SIGKILL, BFD), a director added, a director drained
   (``saru drain``), a real failed (its own downloads do not count: they cannot survive), and a real
   added followed by a director added (the flows ECMP moves meet the new table). Saru's ``mh`` (Maglev:
   every director computes the same table from config and health alone) against two baselines:
   ``rr`` — the nftables DR plane's mod-N hash (the same on every director, but a change of the real
   set remaps most flows) — and a per-director scheduler (``wrr`` with each director weighing a
   different real double: its slot sequence is its own, as independent schedulers' choices are). All
   runs see the same history: a real flaps while only ld1 and ld2 run, then ld3 starts.
2. **Recovery after a director's death**: two clients each open a new connection every 5 ms (100 ms
   timeout); the time from the death (link down, then SIGKILL) until every later connection succeeds,
   with BFD (Saru's default, 100 ms x 3) and with the BGP hold timer alone (3 s, BIRD's minimum). The
   event runs use the test bed's 200 ms x 5 and a 9 s hold time, which do not flap on a loaded machine.
3. **Announce/withdraw latency**: from the moment the director's table loses its last real (or gets
   one back) to the moment the router's kernel route changes.

Prints tables, writes ``bench/results/scaleout.json`` with the load average. Goals: 0 broken on the
surviving directors and on drains and additions; <= 1 s recovery with BFD.

    sudo .venv/bin/python bench/scaleout.py [--runs 3] [--only events,recovery,latency]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("SARU_DROP_PRIVILEGES", "0")
os.environ.setdefault("SARU_COMMAND_USER", "root")

from tests.lab import wait_for
from tests.lab.bgp import CLIENTS, DIRECTORS, REALS, VIP, BGPBed, Downloads

RESULTS = Path(__file__).resolve().parent / "results" / "scaleout.json"
GOAL_BFD = 1.0

PROBE = r"""
import socket, sys, time
host, until = sys.argv[1], time.monotonic() + float(sys.argv[2])
print("ready", flush=True)
while time.monotonic() < until:
    start = time.monotonic()
    ok = 0
    try:
        with socket.create_connection((host, 80), timeout=0.1) as s:
            s.settimeout(0.1)
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            ok = int(s.recv(16).startswith(b"HTTP/1.1 200"))
    except OSError:
        pass
    print(f"{start:.6f} {ok}")
    time.sleep(0.005)
"""


def probe(bed: BGPBed, role: str, seconds: float) -> subprocess.Popen[str]:
    """A client opening a new connection every 5 ms for ``seconds``; prints (start, ok) of each."""
    proc = bed.popen(role, sys.executable, "-c", PROBE, VIP, str(seconds), stdout=subprocess.PIPE,
                     stderr=subprocess.DEVNULL)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def recovered(output: str, since: float) -> tuple[bool, float | None]:
    """Whether a connection after ``since`` failed, and the start of the first one from which on every
    one succeeded (at least 40 in a row, about 0.3 s), or None."""
    after = [(float(t), ok == "1") for t, ok in (line.split() for line in output.splitlines()) if float(t) > since]
    failures = [t for t, ok in after if not ok]
    last = failures[-1] if failures else since
    later = [t for t, ok in after if ok and t > last]
    return bool(failures), (later[0] if len(later) >= 40 else None)


def load(bed: BGPBed) -> list[Downloads]:
    return [bed.downloads("cl1", 12), bed.downloads("cl2", 12)]


def outcome(loads: list[Downloads], exclude_real: str | None = None) -> dict[str, Any]:
    total = broken = 0
    for d in loads:
        for r in d.results():
            if exclude_real and r["real"] == exclude_real:
                continue
            total += 1
            broken += int(r["error"] is not None or r["bytes"] != r["length"])
    return {"connections": total, "broken": broken}


def in_tables(bed: BGPBed, real: str, present: bool) -> None:
    def check() -> bool:
        for d in bed.directors.values():
            table = d.ask("table")["table"]
            has = any(x["address"] == REALS[real] for s in table for x in s.get("dests", []))
            if has != present:
                return False
        return True
    wait_for(check, 15, f"{real} {'in' if present else 'out of'} every table", interval=0.02)


class Start:
    """Starts directors with one scheduler; ``local``: each director weighs a different real double, so
    each one's slot sequence differs (what directors scheduling on their own amount to)."""

    def __init__(self, bed: BGPBed, scheduler: str, flags: str, local: bool) -> None:
        self.bed, self.scheduler, self.flags, self.local = bed, scheduler, flags, local

    def __call__(self, role: str) -> None:
        weights = {list(REALS)[list(DIRECTORS).index(role)]: 2} if self.local else None
        self.bed.director(role, scheduler=self.scheduler, flags=self.flags, weights=weights)


def events(workdir: Path, name: str, scheduler: str, flags: str, local: bool = False) -> dict[str, Any]:
    """The five events on one bed whose directors all run ``scheduler``."""
    out: dict[str, Any] = {"name": name, "scheduler": scheduler}
    with BGPBed(workdir) as bed:
        start = Start(bed, scheduler, flags, local)
        start("ld1")
        start("ld2")
        bed.stop_nginx("fe2")  # a flap only ld1 and ld2 see
        in_tables(bed, "fe2", False)
        bed.nginx("fe2")
        in_tables(bed, "fe2", True)
        start("ld3")
        # director killed
        loads = load(bed)
        moved = bed.flows_by_director(loads)["ld3"]
        bed.dead("ld3")
        bed.wait_paths(lambda p: DIRECTORS["ld3"] not in p, "ld3 gone")
        res = outcome(loads)
        res["through_killed"] = len(moved)
        out["director killed"] = res
        bed.revive("ld3")
        start("ld3")
        # director added
        loads = load(bed)
        start("ld4")
        out["director added"] = outcome(loads)
        bed.directors.pop("ld4").stop()
        bed.wait_paths(lambda p: DIRECTORS["ld4"] not in p, "ld4 gone")
        # director drained
        loads = load(bed)
        d = bed.directors["ld2"]
        bed.run("ld2", sys.executable, "-m", "saru", "drain", "--control", str(d.control), "--quiet", "1.5",
                "--timeout", "30", timeout=60)
        d.proc.wait(10)
        out["director drained"] = outcome(loads)
        start("ld2")
        # real failed (its own downloads excluded)
        loads = load(bed)
        bed.stop_nginx("fe4")
        in_tables(bed, "fe4", False)
        out["real failed"] = outcome(loads, exclude_real="fe4")
        # real added, then a director added (ECMP moves flows that were scheduled before the real came)
        loads = load(bed)
        bed.nginx("fe4")
        in_tables(bed, "fe4", True)
        start("ld4")
        out["real added + director added"] = outcome(loads)
    return out


def recovery(workdir: Path, bfd: bool, runs: int) -> dict[str, Any]:
    times: list[float] = []
    failed = unmeasured = 0
    with BGPBed(workdir, bfd=bfd, hold=3, bfd_interval=0.1, bfd_multiplier=3) as bed:
        for role in ("ld1", "ld2", "ld3"):
            bed.director(role)
        window = 4.0 if bfd else 8.0  # seconds of probing after the death
        for run in range(runs):
            victim = ("ld1", "ld2", "ld3")[run % 3]
            probes = [probe(bed, role, 0.5 + window) for role in CLIENTS]
            time.sleep(0.5)  # probes flowing through all three
            death = time.monotonic()
            bed.dead(victim)
            found = [recovered(p.communicate(timeout=window + 10)[0], death) for p in probes]
            ends = [end for _, end in found]
            if not any(hit for hit, _ in found):
                unmeasured += 1  # no new connection went to the victim: nothing to recover from
            elif None in ends:
                failed += 1
            else:
                times.append(max(end for end in ends if end is not None) - death)
            bed.revive(victim)
            bed.director(victim)
    res: dict[str, Any] = {"bfd": bfd, "hold_time": 3, "runs": runs, "failed_runs": failed,
                           "unmeasured_runs": unmeasured, "seconds": times}
    if times:
        res.update(min=min(times), median=statistics.median(times), max=max(times))
    return res


def latency(workdir: Path, runs: int) -> dict[str, Any]:
    withdraw: list[float] = []
    announce: list[float] = []
    with BGPBed(workdir) as bed:
        for role in ("ld1", "ld2"):
            bed.director(role)
        d = bed.directors["ld1"]

        def empty() -> bool:
            table = d.ask("table")["table"]
            return not any(s.get("dests") for s in table)

        for _ in range(runs):
            bed.nft("ld1", "add table inet block\nadd chain inet block out { type filter hook output priority 0; }\n"
                           "add rule inet block out ip daddr 10.88.0.0/24 tcp dport 80 drop\n")
            wait_for(empty, 15, "ld1's table empty", interval=0.005)
            t0 = time.monotonic()
            bed.wait_paths(lambda p: DIRECTORS["ld1"] not in p, "ld1 withdrawn")
            withdraw.append(time.monotonic() - t0)
            bed.run("ld1", "nft", "delete", "table", "inet", "block")
            wait_for(lambda: not empty(), 15, "ld1's table back", interval=0.005)
            t0 = time.monotonic()
            bed.wait_paths(lambda p: DIRECTORS["ld1"] in p, "ld1 announced")
            announce.append(time.monotonic() - t0)
    return {"runs": runs, "withdraw": withdraw, "announce": announce,
            "withdraw_median": statistics.median(withdraw), "announce_median": statistics.median(announce)}


def report(results: dict[str, Any]) -> None:
    if "events" in results:
        names = [k for k in results["events"][0] if k not in ("name", "scheduler")]
        print()
        print(f"{'broken / downloads in flight':<30}" + "".join(f"{r['name']:>16}" for r in results["events"]))
        for name in names:
            print(f"{name:<30}" + "".join(f"{str(r[name]['broken']) + '/' + str(r[name]['connections']):>16}"
                                          for r in results["events"]))
        print(f"{'  (through the killed one)':<30}" + "".join(f"{r['director killed']['through_killed']:>16}"
                                                             for r in results["events"]))
    if "recovery" in results:
        print()
        print(f"{'recovery after a director dies':<34} {'runs':>4} {'lost':>4} {'min':>7} {'median':>7} {'max':>7}")
        for r in results["recovery"]:
            name = "BFD 100 ms x 3" if r["bfd"] else "hold timer 3 s (no BFD)"
            cells = " ".join(f"{r.get(k, float('nan')):>7.3f}" for k in ("min", "median", "max"))
            print(f"{name:<34} {r['runs']:>4} {r['failed_runs']:>4} {cells}")
    if "latency" in results:
        lat = results["latency"]
        print(f"\nroute change after the table changed (median of {lat['runs']}): withdraw "
              f"{lat['withdraw_median'] * 1000:.0f} ms, announce {lat['announce_median'] * 1000:.0f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default="events,recovery,latency", help="which parts (comma-separated)")
    args = parser.parse_args()
    parts = set(args.only.split(","))
    ok, why = BGPBed.available()
    if not ok:
        print(f"cannot run: {why}", file=sys.stderr)
        return 2
    results: dict[str, Any] = {"loadavg_before": Path("/proc/loadavg").read_text().split()[:3]}
    with tempfile.TemporaryDirectory(prefix="saru-scaleout-") as tmp:
        base = Path(tmp)
        if "events" in parts:
            results["events"] = [events(base / "mh", "Saru mh", "mh", "mh-port"),
                                 events(base / "rr", "rr (mod-N)", "rr", ""),
                                 events(base / "local", "per-director", "wrr", "", local=True)]
        if "recovery" in parts:
            results["recovery"] = [recovery(base / "bfd", True, args.runs),
                                   recovery(base / "hold", False, args.runs)]
        if "latency" in parts:
            results["latency"] = latency(base / "lat", args.runs)
    results["loadavg_after"] = Path("/proc/loadavg").read_text().split()[:3]
    report(results)
    print(f"goals: 0 broken on surviving directors, drains and additions; <= {GOAL_BFD} s recovery with BFD")
    print(f"load average before/after: {' '.join(results['loadavg_before'])} / {' '.join(results['loadavg_after'])}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
