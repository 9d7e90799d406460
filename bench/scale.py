"""Saru at 10,000 and 100,000 reals: planner, diff, memory per real, ``saru status`` and the apply.

Two parts, each size in a fresh process so peak memory is that size's:

1. **Pure pipeline** (in process): parse a generated ldirectord.cf (virtual services of 100 reals
   each, ``checktype=on``), plan the desired table with every real up (``saru.planner``), diff it
   against an empty table (the first apply) and against itself with one real changed (a health
   change), apply the ops to the pure table (``saru.diff.apply_ops``); time per step and memory
   per real (``tracemalloc``: the config and the table, the Python objects Saru keeps per real).
2. **A running daemon** (``saru run``, ``checktype=on`` so no check traffic): on the proxy plane
   (loopback, 1,000 listening ports at 100,000 reals) and on nftables inside a network namespace
   ``saru-scale-<pid>`` created here and deleted afterwards, even on error: time from start to ready
   (first apply included), resident memory, ``saru status --json`` (wall time, size; it compares
   the table with the plane's), ``saru ipvsadm -L -n``, and a reload with one real's weight changed
   (wall time of ``saru reload``, the apply it caused from the daemon's own apply histogram).

The baseline next to each 100,000 figure is the same measurement at 10,000 (the ratio shows whether
the cost is linear). Prints a table and writes ``bench/results/scale.json``.

    sudo .venv/bin/python bench/scale.py [--sizes 10000,100000] [--planes proxy,nft]
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
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.proc import cpu_seconds, rss_mb  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "scale.json"
PER_VIRTUAL = 100
BASE_PORT = 21000

PURE = r"""
import json, sys, time, tracemalloc
from dataclasses import replace
from saru.config.ldirectord import parse_file
from saru.diff import apply_ops, diff
from saru.model import Table
from saru.planner import desired_table, real_ref

path = sys.argv[1]
out = {}
tracemalloc.start()
t = time.perf_counter(); config = parse_file(path); out["parse_s"] = time.perf_counter() - t
out["config_bytes"] = tracemalloc.get_traced_memory()[0]
reals = [real_ref(v, r) for v in config.virtuals for r in v.reals]
health = dict.fromkeys(reals, True)
tracemalloc.stop()
t = time.perf_counter(); desired = desired_table(config, health, None, kernel_ports=False)
out["plan_s"] = time.perf_counter() - t
tracemalloc.start()
desired2 = desired_table(config, health, None, kernel_ports=False)
out["table_bytes"] = tracemalloc.get_traced_memory()[0]
tracemalloc.stop()
del desired2
empty = Table.of([])
t = time.perf_counter(); ops = diff(empty, desired); out["diff_initial_s"] = time.perf_counter() - t
out["initial_ops"] = len(ops)
t = time.perf_counter(); applied = apply_ops(empty, ops); out["apply_ops_s"] = time.perf_counter() - t
assert applied == desired
health[reals[len(reals) // 2]] = False
t = time.perf_counter()
changed = desired_table(config, health, desired, kernel_ports=False)
one = diff(desired, changed)
out["health_change_plan_and_diff_s"] = time.perf_counter() - t
out["health_change_ops"] = len(one)
# the same change as the daemon's reconciler plans it now: only the virtual of the changed real
from saru.daemon.reconciler import Basis, changed_virtuals, plan_changed
before_health = dict(health)
before_health[reals[len(reals) // 2]] = True
present = frozenset(desired.services)
basis = Basis(config, before_health, {}, {}, present)
t = time.perf_counter()
scope = changed_virtuals(basis, health, {}, present)
part_before, part_after = plan_changed([v for v in config.virtuals if v.key in scope], health, desired,
                                       kernel_ports=False, overrides={}, held=frozenset())
part = diff(part_before, part_after, owned=scope)
out["health_change_incremental_s"] = time.perf_counter() - t
assert part == one, (part, one)
out["reals"] = len(reals)
print(json.dumps(out))
"""


def config_text(reals: int, plane: str) -> str:
    """``reals`` reals in virtual services of PER_VIRTUAL, ``checktype=on`` (no check traffic)."""
    blocks = []
    for n in range(reals // PER_VIRTUAL):
        if plane == "proxy":
            virtual = f"127.0.0.1:{BASE_PORT + n}"
        else:
            virtual = f"10.99.{n // 250}.{n % 250 + 1}:80"
        lines = "".join(f"\treal=10.{100 + (n * PER_VIRTUAL + i) // 62500}.{(n * PER_VIRTUAL + i) // 250 % 250}"
                        f".{(n * PER_VIRTUAL + i) % 250 + 1}:8080 masq 1\n" for i in range(PER_VIRTUAL))
        blocks.append(f"virtual={virtual}\n{lines}\tchecktype=on\n\tscheduler=wrr\n")
    return "quiescent=no\n" + "".join(blocks)


def pure(workdir: Path, reals: int) -> dict[str, Any]:
    path = workdir / f"pure-{reals}.cf"
    path.write_text(config_text(reals, "proxy"))
    done = subprocess.run([sys.executable, "-c", PURE, str(path)], capture_output=True, text=True, cwd=ROOT,
                          check=True, timeout=1800)
    result: dict[str, Any] = json.loads(done.stdout)
    result["bytes_per_real"] = round((result["config_bytes"] + result["table_bytes"]) / result["reals"])
    return result


def saru(*args: str, netns: str | None = None, timeout: float = 600) -> tuple[float, subprocess.CompletedProcess[str]]:
    argv = [sys.executable, "-m", "saru", *args]
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=timeout)
    return time.perf_counter() - start, done


def daemon(workdir: Path, reals: int, plane: str) -> dict[str, Any]:
    d = workdir / f"{plane}-{reals}"
    d.mkdir()
    cf = d / "ldirectord.cf"
    text = config_text(reals, plane)
    cf.write_text(text)
    control = d / "control.sock"
    api = d / "api.sock"
    (d / "saru.toml").write_text(f'[api]\nlisten = "unix:{api}"\n')
    netns = f"saru-scale-{os.getpid()}" if plane == "nft" else None
    if netns:
        subprocess.run(["ip", "netns", "add", netns], check=True)
    argv = [sys.executable, "-m", "saru", "run", "-c", str(cf), "--settings", str(d / "saru.toml"),
            "--dataplane", plane, "--control", str(control), "--no-drop"]
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    log = (d / "saru.log").open("wb")
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    result: dict[str, Any] = {"plane": plane, "reals": reals}
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"saru run exited: {(d / 'saru.log').read_text()[-2000:]}")
            if control.exists():
                _, done = saru("status", "--json", "--control", str(control), netns=netns)
                if done.returncode == 0 and json.loads(done.stdout).get("ready"):
                    break
            if time.perf_counter() - start > 1800:
                raise RuntimeError("not ready within 30 min")
            time.sleep(0.2)
        result["ready_s"] = time.perf_counter() - start
        result["rss_mb"] = rss_mb(proc.pid)
        cpu = cpu_seconds(proc.pid)
        wall, done = saru("status", "--json", "--control", str(control), netns=netns)
        result["status_cpu_s"] = cpu_seconds(proc.pid) - cpu
        if done.returncode != 0:
            raise RuntimeError(f"saru status failed: {done.stderr}")
        status = json.loads(done.stdout)
        result["status_s"], result["status_bytes"] = wall, len(done.stdout)
        result["status_reals"] = sum(len(v.get("reals", [])) for v in status.get("virtuals", []))
        cpu = cpu_seconds(proc.pid)
        wall, done = saru("ipvsadm", "-L", "-n", "--control", str(control), netns=netns)
        result["ipvsadm_cpu_s"] = cpu_seconds(proc.pid) - cpu
        result["ipvsadm_s"], result["ipvsadm_lines"] = wall, done.stdout.count("\n")
        before = _applies(api)
        cf.write_text(text.replace(":8080 masq 1\n", ":8080 masq 2\n", 1))
        cpu = cpu_seconds(proc.pid)
        wall, done = saru("reload", "--control", str(control), netns=netns)
        result["reload_cpu_s"] = cpu_seconds(proc.pid) - cpu
        if done.returncode != 0:
            raise RuntimeError(f"reload failed: {done.stderr}")
        result["reload_s"] = wall
        after = _applies(api)
        result["reload_apply_s"] = after[1] - before[1] if after[0] > before[0] else None
        result["rss_after_mb"] = rss_mb(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(300)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        if netns:
            subprocess.run(["ip", "netns", "del", netns], check=False)
    return result


def _applies(api: Path) -> tuple[int, float]:
    """(count, sum of seconds) of the daemon's data-plane applies, from its ``/metrics``."""
    done = subprocess.run(["curl", "-sf", "--unix-socket", str(api), "http://saru/metrics"], capture_output=True,
                          text=True, timeout=600, check=True)
    values = {}
    for line in done.stdout.splitlines():
        if line.startswith("saru_dataplane_apply_duration_seconds_"):
            name, value = line.rsplit(" ", 1)
            values[name.split("{", 1)[0]] = float(value)
    return int(values.get("saru_dataplane_apply_duration_seconds_count", 0)), \
        values.get("saru_dataplane_apply_duration_seconds_sum", 0.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--planes", default="proxy,nft")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    planes = [p for p in args.planes.split(",") if p]
    if "nft" in planes and (os.geteuid() != 0 or not shutil.which("nft")):
        print("nftables part skipped: needs root and nft", file=sys.stderr)
        planes.remove("nft")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    results: dict[str, Any] = {"loadavg_start": os.getloadavg()[0], "pure": [], "daemon": []}
    with tempfile.TemporaryDirectory(prefix="saru-scale-") as tmp:
        work = Path(tmp)
        for n in sizes:
            print(f"pure pipeline, {n} reals ...", flush=True)
            results["pure"].append(pure(work, n))
        for plane in planes:
            for n in sizes:
                print(f"daemon on {plane}, {n} reals ...", flush=True)
                results["daemon"].append(daemon(work, n, plane))
    results["loadavg_end"] = os.getloadavg()[0]
    print()
    print(f"{'pure pipeline':<34}" + "".join(f"{n:>14,}" for n in sizes))
    for key, title in (("parse_s", "parse ldirectord.cf (s)"), ("plan_s", "plan, all up (s)"),
                       ("diff_initial_s", "diff vs empty (s)"), ("apply_ops_s", "apply_ops (s)"),
                       ("health_change_plan_and_diff_s", "1 health change: plan+diff (s)"),
                       ("health_change_incremental_s", "  the same, incremental (s)"),
                       ("bytes_per_real", "memory per real (bytes)")):
        print(f"{title:<34}" + "".join(f"{r[key]:>14.3f}" if isinstance(r[key], float) else f"{r[key]:>14,}"
                                       for r in results["pure"]))
    print()
    print("daemon (wall s / the daemon's CPU s)")
    print(f"{'plane':<8}{'reals':>9}{'ready':>8}{'RSS MB':>8}{'status':>14}{'ipvsadm -L -n':>15}"
          f"{'reload':>14}{'apply':>8}")
    for r in results["daemon"]:
        apply_s = r["reload_apply_s"]
        print(f"{r['plane']:<8}{r['reals']:>9,}{r['ready_s']:>8.1f}{r['rss_mb']:>8.0f}"
              f"{r['status_s']:>8.2f}/{r['status_cpu_s']:<5.2f}{r['ipvsadm_s']:>9.2f}/{r['ipvsadm_cpu_s']:<5.2f}"
              f"{r['reload_s']:>8.2f}/{r['reload_cpu_s']:<5.2f}{'' if apply_s is None else f'{apply_s:.3f}':>8}")
    print(f"load average: {results['loadavg_start']:.1f} at start, {results['loadavg_end']:.1f} at the end")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
