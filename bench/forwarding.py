"""Forwarding overhead of the nftables data plane against a direct connection and haproxy.

In the UltraMonkey namespace network of the kernel tests (``tests/lab/guide.py``, all
namespaces named ``saru-…``, created here and deleted afterwards even on error; no address leaves
them), ``wrk`` in the client namespace measures requests/s of four paths to the same kind of real
(nginx, one worker, a small page), in the same run:

* ``direct``: the client straight to the direct-routing real (through the router only);
* ``nat``: the VIP, Saru's nftables LVS-NAT (conntrack + DNAT in the director) to the NAT real;
* ``nat-stateless``: the same virtual with ``[nft] nat = "stateless"`` (payload rewriting both
  ways, ``notrack``: no conntrack; the director's controller is restarted in that mode before the
  run and back after it);
* ``nat-flowtable``: the same virtual, stateful, with ``[nft] flowtable = ["eth0"]`` (established
  flows offloaded to a flowtable at the director's ingress). Only where the kernel can make a
  flowtable (this machine's own kernel cannot: run the bench in the QEMU guest, see
  docs/benchmarks.md); elsewhere the variant is left out and the report says so;
* ``routed``: the NAT real's own address (port 8080), forwarded by the director without NAT or conntrack:
  the same path as NAT (through the director both ways) with nothing of Saru's on it, so the floor
  of any NAT on this topology;
* ``dr``: the VIP, Saru's nftables LVS-DR (netdev ingress ``fwd``; replies bypass the director);
* ``haproxy``: the VIP, haproxy ``mode tcp`` (2 threads) in the director, to the NAT real.

Each with keep-alive and with a new connection per request (``Connection: close``), ``--repeats``
rounds of ``--duration`` seconds; the variants are interleaved (rotated order) within a round and
every variant's req/s is divided by direct's of the same round (paired ratios). The 2 cores are
shared by wrk, the director, nginx and other workloads on the machine: the busy share of the
machine during each run is recorded as a noise indicator.

Next to req/s, each run records the CPU it cost per request: wrk's and the reals' nginx processes'
CPU time, haproxy's, and all CPUs' softirq time (where forwarding is charged when no task of ours
carries it; the other users of the machine do little networking). direct's CPU per request divided
by a variant's is what the req/s ratio would be if the path were CPU-bound on a machine of its own,
and depends much less than req/s on how busy others keep the machine.

Goals (issue "kernel data planes"): NAT >= 0.95x direct with keep-alive; DR >= 0.95x direct with
keep-alive and with connection-per-request (judged on the median paired ratio). Results go to
``bench/results/forwarding.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.dataplane import noise  # noqa: E402
from bench.dataplane.fwtopo import (  # noqa: E402
    EXPECTED_SERVER,
    NAT_MODE,
    URLS,
    NftCtl,
    configure_reals,
    flowtable_usable,
    saru_table,
    served_by,
    start_haproxy,
)
from bench.proc import TICK, cpu_seconds  # noqa: E402
from tests.lab.guide import Topology  # noqa: E402

VARIANTS = ("direct", "nat", "nat-stateless", "nat-flowtable", "routed", "dr", "haproxy")
MODES = ("keepalive", "close")
GOALS = (("nat", "keepalive"), ("nat-stateless", "keepalive"), ("nat-flowtable", "keepalive"), ("dr", "keepalive"),
         ("dr", "close"))
GOAL_RATIO = 0.95
NOISY = 0.25  # load from others above which the report warns


def parse_wrk(out: str) -> dict[str, Any]:
    m = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    if not m:
        raise RuntimeError(f"cannot parse wrk output:\n{out}")
    requests, secs = int(m.group(1)), float(m.group(2)) / (1000 if m.group(3) == "ms" else 1)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"requests": requests, "seconds": secs, "rps": requests / secs,
            "socket_errors": sum(int(x) for x in errors.groups()) if errors else 0,
            "non_2xx": int(non2xx.group(1)) if non2xx else 0}


def namespace_pids(topo: Topology, roles: tuple[str, ...]) -> list[int]:
    """The processes living in the network namespaces of ``roles`` (the reals' nginx)."""
    wanted = {f"net:[{os.stat(f'/run/netns/{topo[role].netns}').st_ino}]" for role in roles}
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "ns" / "net") in wanted:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def our_cpu(pids: list[int]) -> float:
    """CPU seconds of ``pids`` (those still alive), plus every CPU's softirq time so far: where
    the kernel's forwarding work in the namespaces is charged when no task of ours carries it."""
    total = 0.0
    for pid in pids:
        try:
            total += cpu_seconds(pid)
        except OSError:
            continue
    softirq = sum(int(line.split()[7]) for line in Path("/proc/stat").read_text().splitlines()[:1])
    return total + softirq / TICK


def run_wrk(topo: Topology, url: str, mode: str, duration: float, connections: int,
            haproxy_pid: int | None) -> dict[str, Any]:
    argv = ["wrk", "-t2", f"-c{connections}", f"-d{duration:g}s"]
    if mode == "close":
        argv += ["-H", "Connection: close"]
    before = noise.jiffies()
    cpu0 = cpu_seconds(haproxy_pid) if haproxy_pid else 0.0
    servers = namespace_pids(topo, ("fe1", "fe2"))
    ours0, children0 = our_cpu(servers), os.times()
    done = topo.run("cl", *argv, url, timeout=duration + 30)
    children1 = os.times()
    result = parse_wrk(done.stdout)
    result["machine_busy"] = noise.busy_share(before, noise.jiffies())
    # wrk (a child: ``ip netns exec`` execs it) + nginx + softirq: the CPU the path costs, which
    # unlike req/s hardly depends on how much of the machine others leave us
    ours = our_cpu(servers) - ours0 + (children1.children_user - children0.children_user) \
        + (children1.children_system - children0.children_system)
    if haproxy_pid:
        ours += cpu_seconds(haproxy_pid) - cpu0
    result["cpu_us_per_request"] = ours / max(result["requests"], 1) * 1e6
    if haproxy_pid:
        cpu = cpu_seconds(haproxy_pid) - cpu0
        result["director_cpu_us_per_request"] = cpu / max(result["requests"], 1) * 1e6
    return result


def summarize(rounds: list[dict[str, Any]], variants: tuple[str, ...] = VARIANTS) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for mode in MODES:
        per_mode: dict[str, Any] = {}
        for variant in variants:
            rps = [r["runs"][variant]["rps"] for r in rounds if r["mode"] == mode]
            ratios = [r["runs"][variant]["rps"] / r["runs"]["direct"]["rps"] for r in rounds if r["mode"] == mode]
            cpu = [r["runs"][variant]["cpu_us_per_request"] for r in rounds if r["mode"] == mode]
            cpu_ratios = [r["runs"]["direct"]["cpu_us_per_request"] / r["runs"][variant]["cpu_us_per_request"]
                          for r in rounds if r["mode"] == mode]
            per_mode[variant] = {"rps_median": statistics.median(rps), "rps": rps,
                                 "ratio_median": statistics.median(ratios), "ratios": ratios,
                                 "cpu_us_median": statistics.median(cpu), "cpu_us": cpu,
                                 "cpu_ratio_median": statistics.median(cpu_ratios), "cpu_ratios": cpu_ratios}
        summary[mode] = per_mode
    verdicts = {f"{v} {m}": {"ratio": summary[m][v]["ratio_median"],
                             "met": summary[m][v]["ratio_median"] >= GOAL_RATIO} for v, m in GOALS if v in variants}
    return {"by_mode": summary, "goals": verdicts, "variants": list(variants)}


def print_table(summary: dict[str, Any], title: str, unit: str, value: str, fmt: str, ratio: str) -> None:
    """One table: per variant and mode, the median ``value`` and the ``ratio`` median [min-max]."""
    print(f"\n{title}")
    print(f"| variant | keep-alive {unit} | keep-alive ratio | conn/request {unit} | conn/request ratio |")
    print("|---|---|---|---|---|")
    for variant in summary["variants"]:
        cells = []
        for mode in MODES:
            s = summary["by_mode"][mode][variant]
            cells.append(format(s[value], fmt))
            cells.append(f"{s[f'{ratio}_median']:.2f} [{min(s[f'{ratio}s']):.2f}-{max(s[f'{ratio}s']):.2f}]")
        print(f"| {variant} | " + " | ".join(cells) + " |")


def print_report(summary: dict[str, Any], rounds: list[dict[str, Any]], foreign: dict[str, float]) -> None:
    print_table(summary, "requests/s (median of rounds) and paired ratio to direct (median [min-max])",
                "req/s", "rps_median", ",.0f", "ratio")
    print_table(summary, "CPU per request (wrk + nginx + haproxy + all softirq, µs; median) and direct's / "
                "the variant's (the req/s ratio a CPU-bound director would see; median [min-max])",
                "µs", "cpu_us_median", ",.1f", "cpu_ratio")
    busy = [run["machine_busy"] for r in rounds for run in r["runs"].values()]
    errors = sum(run["socket_errors"] + run["non_2xx"] for r in rounds for run in r["runs"].values())
    print(f"machine busy during runs: {min(busy):.0%}-{max(busy):.0%} of 2 cores; "
          f"socket errors + non-2xx in all runs: {errors}")
    print(f"load from others (machine busy while we ran nothing): {foreign['before']:.0%} before, "
          f"{foreign['after']:.0%} after")
    if max(foreign.values()) > NOISY:
        print(f"WARNING: others kept the machine {max(foreign.values()):.0%} busy: absolute numbers and "
              "verdicts are unreliable (compare the paired ratios' ranges)")
    print(f"\nGoals (median paired ratio >= {GOAL_RATIO}):")
    for name, v in summary["goals"].items():
        print(f"  {name}: {v['ratio']:.2f} -> {'MET' if v['met'] else 'NOT MET'}")


class Director:
    """The director's controller, restarted in the NAT mode a variant needs."""

    def __init__(self, topo: Topology) -> None:
        self.topo = topo
        self.ctl = NftCtl(topo)
        self.ctl.apply(saru_table())

    def mode(self, variant: str) -> None:
        wanted = NAT_MODE.get(variant)
        if wanted is None or wanted == self.ctl.nat:
            return
        self.ctl.close()
        self.ctl = NftCtl(self.topo, wanted)
        self.ctl.apply(saru_table())  # nothing changed but the mode: the NAT virtual is rewritten
        deadline = time.monotonic() + 10
        while (got := served_by(self.topo, URLS[variant])) != EXPECTED_SERVER[variant]:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{variant} answered by {got!r} after the switch to {wanted}")
            time.sleep(0.1)


def measure(topo: Topology, args: argparse.Namespace, haproxy_pid: int, director: Director,
            variants: tuple[str, ...]) -> list[dict[str, Any]]:
    rounds = []
    for variant in variants:  # warm-up (ARP/neighbour entries, nginx, haproxy)
        director.mode(variant)
        run_wrk(topo, URLS[variant], "keepalive", 1, 10, None)
    for r in range(args.repeats):
        for mode in MODES:
            shift = (r + MODES.index(mode)) % len(variants)
            order = variants[shift:] + variants[:shift]
            runs = {}
            for variant in order:
                director.mode(variant)
                pid = haproxy_pid if variant == "haproxy" else None
                runs[variant] = run_wrk(topo, URLS[variant], mode, args.duration, args.connections, pid)
            rounds.append({"round": r + 1, "mode": mode, "order": list(order), "runs": runs})
            print(f"round {r + 1} {mode}: " + ", ".join(
                f"{v} {runs[v]['rps']:,.0f} ({runs[v]['rps'] / runs['direct']['rps']:.2f})" for v in variants),
                flush=True)
    return rounds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5, help="seconds per wrk run (default 5)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections (default 50)")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "forwarding.json")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="comma-separated subset of the variants (direct is always run: the baseline)")
    args = parser.parse_args()
    wanted = {"direct", *args.variants.split(",")}
    if wanted - set(VARIANTS):
        parser.error(f"unknown variants {sorted(wanted - set(VARIANTS))} (choose from {', '.join(VARIANTS)})")
    ok, why = Topology.available()
    if not ok:
        print(why, file=sys.stderr)
        return 2
    for tool in ("wrk", "haproxy", "nginx"):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed (make deps installs it)", file=sys.stderr)
            return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that the finally block cleans up
    started = time.monotonic()
    foreign = {"before": noise.foreign_load()}
    with tempfile.TemporaryDirectory(prefix="saru-forwarding-") as tmp:
        topo = Topology(Path(tmp))
        try:
            topo.up()
            configure_reals(topo)
            topo.nginx("fe1")
            topo.nginx("fe2")
            director = Director(topo)
            haproxy_pid = start_haproxy(topo, Path(tmp))
            variants = tuple(v for v in VARIANTS if v in wanted)
            if "nat-flowtable" in variants and not flowtable_usable(topo):
                variants = tuple(v for v in variants if v != "nat-flowtable")
                print("nat-flowtable left out: this kernel cannot make a flowtable (CONFIG_NF_FLOW_TABLE_INET)",
                      flush=True)
            deadline = time.monotonic() + 10
            for variant in variants:  # every path answers, from the expected real
                url = URLS[variant]
                director.mode(variant)
                while (got := served_by(topo, url)) != EXPECTED_SERVER[variant]:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{variant} ({url}) answered by {got!r}, "
                                           f"expected {EXPECTED_SERVER[variant]}")
                    time.sleep(0.1)
            rounds = measure(topo, args, haproxy_pid, director, variants)
        finally:
            topo.down()
    foreign["after"] = noise.foreign_load()
    summary = summarize(rounds, variants)
    print_report(summary, rounds, foreign)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": {"cpus": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release(),
                 "loadavg": Path("/proc/loadavg").read_text().split()[:3]},
        "settings": {"duration": args.duration, "repeats": args.repeats, "connections": args.connections,
                     "variants": list(variants),
                     "wrk_threads": 2, "urls": URLS, "nginx_workers": 1, "haproxy_threads": 2},
        "foreign_load": foreign,
        "rounds": rounds,
        "summary": summary,
        "wall_seconds": time.monotonic() - started,
    }, indent=2) + "\n")
    print(f"written {args.output} ({time.monotonic() - started:.0f} s in all)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
