"""IPVS table update latency, broken down into user and kernel CPU time, measured in the test guest.

``python bench/ipvs_update.py [--sizes 10000 ...]`` boots the QEMU guest (``tests/vm/harness.py``,
Debian's kernel; this host may have no IPVS) and runs ``--guest`` in it: for each size N, one apply
each of "add N reals" (service created in the same apply), "weight 0 on all N", "1 real changed"
and "delete the service", each timed by wall clock and by the process's user and system CPU time
(system = the kernel's IPVS work done in our syscalls). The same fixed pure-Python workload is
timed on the host and in the guest; their ratio is the TCG slowdown, and ``host estimate`` is the
guest wall time divided by it (the kernel part is assumed to slow down like user code: an
estimate, labelled so). Prints a table; ``--json FILE`` writes the numbers.

``--baseline DIR`` (a checkout of older code, e.g. ``git archive main | tar -x -C DIR``) measures
that code and this one alternately in the SAME guest boot, ``--rounds`` times each, and prints both
(the guest's speed varies with the host's load, so only a side-by-side run compares them).
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


def guest_compare(baseline: Path, rounds: int, rest: list[str]) -> dict[str, Any]:
    """(inside the guest) this script's ``--guest`` run of ``baseline`` and of this tree, alternately."""
    import subprocess

    out: dict[str, Any] = {"before": [], "after": []}
    for _ in range(rounds):
        for label, tree in (("before", baseline), ("after", ROOT)):
            done = subprocess.run([sys.executable, "bench/ipvs_update.py", "--guest", *rest], cwd=tree,
                                  env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True, text=True,
                                  check=False, timeout=900)
            lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
            if done.returncode != 0 or not lines:
                raise SystemExit(f"{label} run failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
            out[label].append(json.loads(lines[-1][len("RESULT "):]))
            print(f"{label}: done", flush=True)
    return out


def best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest of several guest runs per size and phase, and the fastest CPU probe."""
    merged: dict[str, Any] = {"cpu_probe": min(r["cpu_probe"] for r in runs), "sizes": {}}
    for run in runs:
        for n, phases in run["sizes"].items():
            for phase, v in phases.items():
                old = merged["sizes"].setdefault(n, {}).get(phase)
                if old is None or v["wall"] < old["wall"]:
                    merged["sizes"][n][phase] = v
    return merged


def user_only(sizes: list[int], repeats: int, scheduler: str) -> dict[str, Any]:
    """(on the host, no kernel) CPU time of the user-space part of one apply: validation, the
    cheap-scheduler plan, the requests' bytes, their netlink framing and the table kept for rollback
    and drift (one ``apply_ops``, twice in older code); the min of ``repeats``."""
    from saru.dataplane.ipvs import codec
    from saru.dataplane.ipvs.netlink import NLM_F_REQUEST, GenlSocket
    from saru.diff import apply_ops
    from saru.model import Table

    twice = not hasattr(codec, "wire_all")  # the code before this change computed it twice
    framing = GenlSocket.__new__(GenlSocket)
    framing.seq = 0

    def user_path(ops: list[Any], known: dict[Any, Any]) -> None:
        for op in ops:
            codec.validate(op)
        ops = codec.with_cheap_scheduler(ops, {k: s.settings for k, s in known.items()})
        requests = codec.wire_all(ops) if not twice else [codec.wire(op) for op in ops]
        b"".join(framing._message(30, cmd, payload, NLM_F_REQUEST)[1] for cmd, payload, _ in requests)
        for _ in range(2 if twice else 1):
            apply_ops(Table(known), ops)

    out: dict[str, Any] = {}
    for n in sizes:
        add = w.add_ops(KEY, n)
        add[0] = AddService(KEY, ServiceSettings(scheduler))
        full = dict(apply_ops(Table({}), add).services)
        out[str(n)] = {}
        for phase, ops, known in (("add", add, {}), ("weight0", w.weight0_ops(KEY, n), full)):
            times = []
            for _ in range(repeats):
                t0 = time.process_time()
                user_path(ops, known)
                times.append(time.process_time() - t0)
            out[str(n)][phase] = min(times)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--guest", action="store_true", help="(inside the guest) run the measurement")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 100, 10_000])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--scheduler", default="wrr", help="the service's scheduler (default wrr)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--baseline", type=Path, help="older code to measure side by side (see above)")
    parser.add_argument("--rounds", type=int, default=2, help="with --baseline: alternations (default 2)")
    parser.add_argument("--user-only", action="store_true",
                        help="on the host: CPU time of the user-space part only (with --baseline: both trees)")
    args = parser.parse_args()
    if args.user_only:
        return main_user_only(args)
    rest = ["--sizes", *map(str, args.sizes), "--repeats", str(args.repeats), "--scheduler", args.scheduler]
    if args.guest and args.baseline:
        print("RESULT " + json.dumps(guest_compare(args.baseline.resolve(), args.rounds, rest)), flush=True)
        return 0
    if args.guest:
        print("RESULT " + json.dumps(asyncio.run(guest(args.sizes, args.repeats, args.scheduler))), flush=True)
        return 0
    from tests.vm.harness import run_in_vm

    host_probe = w.cpu_probe()
    compare = ["--baseline", str(args.baseline.resolve()), "--rounds", str(args.rounds)] if args.baseline else []
    vm = run_in_vm([sys.executable, "bench/ipvs_update.py", "--guest", *rest, *compare], cwd=str(ROOT),
                   modules=["ip_vs", f"ip_vs_{args.scheduler}"],
                   env={"PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"},
                   timeout=900 * (2 * args.rounds if args.baseline else 1))
    host_probe = min(host_probe, w.cpu_probe())
    lines = [line for line in vm.output.splitlines() if line.startswith("RESULT ")]
    if vm.returncode != 0 or not lines:
        print(vm.output[-4000:], vm.console[-2000:], sep="\n", file=sys.stderr)
        return 1
    result = json.loads(lines[-1][len("RESULT "):])
    labelled = {k: best(v) for k, v in result.items()} if args.baseline else {"": result}
    probe = min(r["cpu_probe"] for r in labelled.values())
    factor = probe / host_probe
    print(f"scheduler {args.scheduler}; TCG slowdown (pure-Python probe, guest / host): {factor:.1f}x; "
          f"accel {vm.accel}; host load {Path('/proc/loadavg').read_text().split()[0]}")
    print("| code | N | change | guest wall ms | guest user ms | guest kernel ms | host estimate ms |")
    print("|---|---|---|---|---|---|---|")
    for label, one in labelled.items():
        for n, phases in one["sizes"].items():
            for phase, v in phases.items():
                print(f"| {label or 'this'} | {int(n):,} | {phase} | {v['wall'] * 1000:,.1f} | "
                      f"{v['user'] * 1000:,.0f} | {v['system'] * 1000:,.0f} | {v['wall'] * 1000 / factor:,.1f} |")
    if args.json:
        summary = {"scheduler": args.scheduler, "factor": factor, "accel": vm.accel, "host_probe": host_probe,
                   "loadavg": Path("/proc/loadavg").read_text().split()[:3]}
        body = {"runs": result, "best": labelled} if args.baseline else result
        args.json.write_text(json.dumps({**summary, **body}, indent=2) + "\n")
    return 0


def main_user_only(args: argparse.Namespace) -> int:
    import subprocess

    trees = [("before", args.baseline.resolve())] if args.baseline else []
    trees.append(("this", ROOT))
    results: dict[str, list[dict[str, Any]]] = {label: [] for label, _ in trees}
    for _ in range(args.rounds):  # alternately, so that both see the same share of a busy machine
        for label, tree in trees:
            code = (f"import json, sys; sys.path.insert(0, {str(tree)!r}); "  # that tree's saru, loaded first
                    "import saru.diff, saru.model, saru.dataplane.ipvs.codec, saru.dataplane.ipvs.netlink; "
                    f"sys.path.insert(0, {str(ROOT)!r}); import bench.ipvs_update as b; "
                    f"print(json.dumps(b.user_only({args.sizes!r}, {max(args.repeats, 5)}, {args.scheduler!r})))")
            done = subprocess.run([sys.executable, "-c", code], cwd=tree, capture_output=True, text=True,
                                  check=True, timeout=600)
            results[label].append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"user-space CPU ms per apply (host, min over runs; load {Path('/proc/loadavg').read_text().split()[0]})")
    print("| code | N | change | CPU ms |")
    print("|---|---|---|---|")
    for label, runs in results.items():
        for n in runs[0]:
            for phase in runs[0][n]:
                print(f"| {label} | {int(n):,} | {phase} | {min(r[n][phase] for r in runs) * 1000:.1f} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
