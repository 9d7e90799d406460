"""IPVS table update latency, broken down into user and kernel CPU time, measured in the test guest.

``python bench/ipvs_update.py [--sizes 10000 ...]`` boots the QEMU guest (``tests/vm/harness.py``,
Debian's kernel; this host may have no IPVS) and runs ``--guest`` in it: for each size N, one apply
each of "add N reals" (service created in the same apply), "weight 0 on all N", "1 real changed"
and "delete the service", each timed by wall clock and by the process's user and system CPU time
(system = the kernel's IPVS work done in our syscalls). The same fixed pure-Python workload is
timed on the host and in the guest; their ratio is the TCG slowdown, and ``host estimate`` is the
guest wall time divided by it (the kernel part is assumed to slow down like user code: an
estimate, labelled so). Prints a table; ``--json FILE`` writes the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.dataplane import workload as w  # noqa: E402
from saru.model import AddService, ServiceKey, ServiceSettings  # noqa: E402

KEY = ServiceKey("tcp", "10.0.0.1", 80)


async def guest(sizes: list[int], repeats: int, scheduler: str) -> dict[str, Any]:
    from saru.dataplane.ipvs import IpvsDataplane

    ok, why = IpvsDataplane.available()
    if not ok:
        raise SystemExit(f"IPVS unavailable: {why}")
    plane = IpvsDataplane()
    await plane.start()
    await plane.read()  # what the daemon does at start (adoption)
    out: dict[str, Any] = {"cpu_probe": w.cpu_probe(), "sizes": {}}
    try:
        for n in sizes:
            add = w.add_ops(KEY, n)
            add[0] = AddService(KEY, ServiceSettings(scheduler))
            phases = {"add": add, "weight0": w.weight0_ops(KEY, n), "single": w.single_ops(KEY),
                      "delete": w.delete_ops(KEY)}
            samples: dict[str, list[dict[str, float]]] = {p: [] for p in phases}
            for _ in range(repeats):
                for phase, ops in phases.items():
                    t0, c0 = time.perf_counter(), os.times()
                    await plane.apply(ops)
                    t1, c1 = time.perf_counter(), os.times()
                    samples[phase].append({"wall": t1 - t0, "user": c1.user - c0.user,
                                           "system": c1.system - c0.system})
                    if phase == "add":
                        got = len((await plane.read()).services[KEY].dests)
                        assert got == n, f"{got} reals read back, {n} applied"
            out["sizes"][str(n)] = {p: min(s, key=lambda x: x["wall"]) for p, s in samples.items()}
            print(f"N={n}: " + ", ".join(f"{p} {v['wall'] * 1000:.1f} ms" for p, v in out["sizes"][str(n)].items()),
                  flush=True)
    finally:
        await plane.close()
    out["cpu_probe"] = min(out["cpu_probe"], w.cpu_probe())
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--guest", action="store_true", help="(inside the guest) run the measurement")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 100, 10_000])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--scheduler", default="wrr", help="the service's scheduler (default wrr)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.guest:
        print("RESULT " + json.dumps(asyncio.run(guest(args.sizes, args.repeats, args.scheduler))), flush=True)
        return 0
    from tests.vm.harness import run_in_vm

    host_probe = w.cpu_probe()
    vm = run_in_vm([sys.executable, "bench/ipvs_update.py", "--guest", "--sizes", *map(str, args.sizes),
                    "--repeats", str(args.repeats), "--scheduler", args.scheduler], cwd=str(ROOT),
                   modules=["ip_vs", f"ip_vs_{args.scheduler}"],
                   env={"PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}, timeout=900)
    host_probe = min(host_probe, w.cpu_probe())
    lines = [line for line in vm.output.splitlines() if line.startswith("RESULT ")]
    if vm.returncode != 0 or not lines:
        print(vm.output[-4000:], vm.console[-2000:], sep="\n", file=sys.stderr)
        return 1
    result = json.loads(lines[-1][len("RESULT "):])
    factor = result["cpu_probe"] / host_probe
    print(f"scheduler {args.scheduler}; TCG slowdown (pure-Python probe, guest / host): {factor:.1f}x; "
          f"accel {vm.accel}")
    print("| N | change | guest wall ms | guest user ms | guest kernel ms | host estimate ms |")
    print("|---|---|---|---|---|---|")
    for n, phases in result["sizes"].items():
        for phase, v in phases.items():
            print(f"| {int(n):,} | {phase} | {v['wall'] * 1000:,.1f} | {v['user'] * 1000:,.0f} | "
                  f"{v['system'] * 1000:,.0f} | {v['wall'] * 1000 / factor:,.1f} |")
    if args.json:
        summary = {"scheduler": args.scheduler, "factor": factor, "accel": vm.accel, "host_probe": host_probe}
        args.json.write_text(json.dumps({**summary, **result}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
