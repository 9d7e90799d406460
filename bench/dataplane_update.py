"""Table update latency of Saru's three data planes against one process per change (ldirectord's way).

For one service with N = 1, 100 and 10,000 reals it times three changes, each handed to the data
plane's ``apply`` in ONE call: add the N reals; set weight 0 on all N; change a single real on the
table of N (``bench.dataplane.workload``). Next to each, the same changes made the way the original
ldirectord makes them, one process per change (``ipvsadm -a/-e`` per real; ``nft add element`` /
``nft -f`` per real for the nftables plane; above ``--nft-cap`` / ``--vm-cap`` changes only that many
processes are timed and the total is extrapolated, labelled so). Saru's side is the median of
``--repeats`` cycles (``--big-repeats`` for 10,000), as wall time and as CPU time of the process
(user + system: it includes the kernel's work on the transaction, and is steadier than wall time on
a shared machine). Where it runs:

* ``proxy``: on the host (the userspace proxy binds 127.0.0.1 only);
* ``nft``: inside a network namespace ``saru-dpu-<pid>`` created here and deleted afterwards, even on
  error (so the host's own nftables are never touched);
* ``ipvs``: inside one QEMU guest (``tests/vm/harness.py``, Debian's kernel; this host has no IPVS).
  Under TCG emulation the guest is much slower than the host: a fixed pure-Python workload is timed
  on both to measure that factor, and the IPVS numbers are given as measured in the guest plus an
  ESTIMATE of the host value (guest value / factor).

Goal (issue "kernel data planes"): 10,000 reals applied in one transaction in under 100 ms, judged
on the slower of the two 10,000-real changes (add, weight 0). The table is printed and everything is
written to ``bench/results/dataplane_update.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.dataplane import noise  # noqa: E402
from bench.dataplane import workload as w  # noqa: E402
from tests.vm.harness import missing_prerequisites, run_in_vm  # noqa: E402

GOAL_SECONDS = 0.100
GOAL_N = "10000"
NOISY = 0.25  # load from others above which the report warns


def parse_result(output: str) -> dict[str, Any]:
    for line in reversed(output.splitlines()):
        if line.startswith("RESULT "):
            result: dict[str, Any] = json.loads(line[len("RESULT "):])
            return result
    raise RuntimeError(f"the runner printed no result:\n{output[-3000:]}")


def runner_args(plane: str, args: argparse.Namespace, cap: int) -> list[str]:
    return [sys.executable, "-m", "bench.dataplane.runner", plane, "--repeats", str(args.repeats),
            "--big-repeats", str(args.big_repeats), "--cap", str(cap)]


def run_proxy(args: argparse.Namespace) -> dict[str, Any]:
    done = subprocess.run(runner_args("proxy", args, 0), cwd=ROOT, capture_output=True, text=True,
                          timeout=300, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"proxy runner failed: {done.stderr[-3000:]}")
    return parse_result(done.stdout)


def run_nft(args: argparse.Namespace) -> dict[str, Any]:
    ns = f"saru-dpu-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True)
    try:
        subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"], check=True,
                       capture_output=True)
        done = subprocess.run(["ip", "netns", "exec", ns, *runner_args("nft", args, args.nft_cap)], cwd=ROOT,
                              capture_output=True, text=True, timeout=300, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"nft runner failed: {done.stderr[-3000:]}")
        return parse_result(done.stdout)
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def run_ipvs(args: argparse.Namespace) -> dict[str, Any]:
    missing = missing_prerequisites()
    if missing:
        raise RuntimeError("cannot boot the IPVS guest, missing: " + "; ".join(missing))
    vm = run_in_vm(runner_args("ipvs", args, args.vm_cap), cwd=str(ROOT), modules=["ip_vs"],
                   env={"PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}, timeout=480)
    if vm.returncode != 0:
        raise RuntimeError(f"ipvs runner in the guest failed ({vm.returncode}):\n{vm.output[-3000:]}"
                           f"\n{vm.console[-2000:]}")
    result = parse_result(vm.output)
    result["vm"] = {"accel": vm.accel, "boot_seconds": vm.boot_seconds, "total_seconds": vm.total_seconds}
    return result


# -- report --------------------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    value = seconds * 1000
    return f"{value:,.0f}" if value >= 100 else f"{value:.2f}" if value < 10 else f"{value:.1f}"


def speedup(ratio: float | None) -> str:
    """How many times faster Saru's one apply is than one process per change (< 1: slower)."""
    if not ratio:
        return "-"
    if ratio >= 10:
        return f"{ratio:,.0f}x"
    return f"{ratio:.1f}x" if ratio >= 1 else f"{ratio:.2g}x (1/{1 / ratio:,.0f})"


def rows(results: dict[str, dict[str, Any]], factor: float) -> list[dict[str, Any]]:
    out = []
    for plane, result in results.items():
        guest = plane == "ipvs" and result.get("vm", {}).get("accel") == "tcg"
        for n, entry in result["sizes"].items():
            for phase in w.PHASES:
                saru = entry["saru"][phase]["median"]
                row: dict[str, Any] = {"plane": plane, "n": int(n), "phase": phase, "saru_s": saru,
                                       "saru_cpu_s": entry["saru"][phase].get("cpu_median")}
                if guest:
                    row["saru_host_estimate_s"] = saru / factor
                other = entry.get("one_process_per_change", {}).get(phase)
                if other:
                    row["per_process_s"] = other["seconds"]
                    row["per_process_extrapolated"] = other["extrapolated"]
                    row["processes_timed"] = other["processes_timed"]
                    row["speedup"] = other["seconds"] / saru if saru else None
                out.append(row)
    return out


def goals(results: dict[str, dict[str, Any]], factor: float) -> dict[str, Any]:
    verdicts = {}
    for plane, result in results.items():
        entry = result["sizes"].get(GOAL_N)
        if entry is None:
            continue
        worst = max(entry["saru"][p]["median"] for p in ("add", "weight0"))
        guest = plane == "ipvs" and result.get("vm", {}).get("accel") == "tcg"
        verdict: dict[str, Any] = {"measured_s": worst, "where": "TCG guest" if guest else "host"}
        cpu = [entry["saru"][p].get("cpu_median") for p in ("add", "weight0")]
        if None not in cpu:
            verdict["cpu_s"] = max(c for c in cpu if c is not None)
        if guest:
            verdict["host_estimate_s"] = worst / factor
            verdict["met_estimate"] = worst / factor < GOAL_SECONDS
        else:
            verdict["met"] = worst < GOAL_SECONDS
        verdicts[plane] = verdict
    return verdicts


def print_report(table: list[dict[str, Any]], verdicts: dict[str, Any], factor: float) -> None:
    print(f"\nTable update latency, one apply per change, median (ms). TCG slowdown factor: {factor:.1f}x")
    header = ("plane", "N", "change", "Saru ms", "Saru CPU ms", "host est. ms", "1 proc/change ms",
              "1 proc/change ÷ Saru")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in table:
        where = " (guest)" if "saru_host_estimate_s" in r else ""
        est = ms(r["saru_host_estimate_s"]) + " (est.)" if "saru_host_estimate_s" in r else "-"
        if "per_process_s" in r:
            pp = ms(r["per_process_s"]) + (f" (extrap. from {r['processes_timed']})"
                                          if r["per_process_extrapolated"] else "")
            ratio = speedup(r["speedup"])
        else:
            pp, ratio = "n/a", "-"
        cpu = ms(r["saru_cpu_s"]) if r.get("saru_cpu_s") is not None else "-"
        print(f"| {r['plane']}{where} | {r['n']:,} | {w.PHASE_TITLES[r['phase']]} | {ms(r['saru_s'])} | {cpu} | {est} "
              f"| {pp} | {ratio} |")
    print(f"\nGoal: {int(GOAL_N):,} reals in one transaction < {GOAL_SECONDS * 1000:.0f} ms "
          "(slower of add / weight 0):")
    for plane, v in verdicts.items():
        if "met" in v:
            cpu = f" (CPU of the process: {ms(v['cpu_s'])} ms)" if "cpu_s" in v else ""
            print(f"  {plane}: {ms(v['measured_s'])} ms on the {v['where']}{cpu} -> "
                  f"{'MET' if v['met'] else 'NOT MET'}")
        else:
            print(f"  {plane}: {ms(v['measured_s'])} ms measured in the TCG guest; ESTIMATE for the host "
                  f"{ms(v['host_estimate_s'])} ms (/ {factor:.1f}) -> "
                  f"{'met (estimate)' if v['met_estimate'] else 'NOT met (estimate)'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--planes", nargs="+", default=["proxy", "nft", "ipvs"], choices=["proxy", "nft", "ipvs"])
    parser.add_argument("--repeats", type=int, default=3, help="cycles for N <= 100 (default 3)")
    parser.add_argument("--big-repeats", type=int, default=5, help="cycles for N = 10,000 (default 5)")
    parser.add_argument("--nft-cap", type=int, default=1000,
                        help="most nft processes timed per phase; the rest is extrapolated (default 1000)")
    parser.add_argument("--vm-cap", type=int, default=100,
                        help="most ipvsadm processes timed per phase in the guest (default 100)")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "dataplane_update.json")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces, nftables, QEMU guest)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that the finally blocks clean up
    started = time.monotonic()
    foreign = {"before": noise.foreign_load()}
    host_probe = w.cpu_probe()
    runners = {"proxy": run_proxy, "nft": run_nft, "ipvs": run_ipvs}
    results: dict[str, dict[str, Any]] = {}
    for plane in args.planes:
        t0 = time.monotonic()
        results[plane] = runners[plane](args)
        print(f"{plane}: done in {time.monotonic() - t0:.0f} s", flush=True)
    host_probe = min(host_probe, w.cpu_probe())
    foreign["after"] = noise.foreign_load()
    guest_probe = results.get("ipvs", {}).get("cpu_probe")
    factor = guest_probe / host_probe if guest_probe else 1.0
    table = rows(results, factor)
    verdicts = goals(results, factor)
    print_report(table, verdicts, factor)
    print(f"load from others (machine busy while we ran nothing): {foreign['before']:.0%} before, "
          f"{foreign['after']:.0%} after")
    if max(foreign.values()) > NOISY:
        print("WARNING: the machine was shared with other workloads: latencies (and the TCG factor) are "
              "inflated and vary between runs")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": {"cpus": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release(),
                 "loadavg": Path("/proc/loadavg").read_text().split()[:3]},
        "settings": vars(args) | {"output": str(args.output)},
        "foreign_load": foreign,
        "tcg_slowdown": {"host_probe_s": host_probe, "guest_probe_s": guest_probe, "factor": factor},
        "goal": {"n": int(GOAL_N), "seconds": GOAL_SECONDS, "verdicts": verdicts},
        "rows": table,
        "raw": results,
        "wall_seconds": time.monotonic() - started,
    }, indent=2) + "\n")
    print(f"written {args.output} ({time.monotonic() - started:.0f} s in all)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
