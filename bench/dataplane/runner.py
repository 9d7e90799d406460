"""Times table updates of one data plane where it runs: ``python -m bench.dataplane.runner PLANE``.

Run by ``bench/dataplane_update.py`` on the host (``proxy``), inside a ``saru-…`` network namespace
(``nft``) or inside the QEMU guest (``ipvs``). For every size N it times Saru's ``apply`` of each
phase (``bench.dataplane.workload``), then the same changes made the original ldirectord's way, one
process per change (``ipvsadm`` for ipvs, ``nft`` for nft; none for the proxy). With more than
``--cap`` changes in a phase, only ``--cap`` processes (the middle ones) are timed and the total
is extrapolated linearly (flagged ``extrapolated``); the rest of the table is filled by untimed bulk
processes, so the single change still hits a table of N. Prints ``RESULT <json>`` as its last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from typing import Any

from bench.dataplane import workload as w
from saru.dataplane.base import Dataplane
from saru.model import Op, ServiceKey


def make_plane(name: str) -> tuple[Dataplane, ServiceKey]:
    if name == "proxy":
        from saru.dataplane.proxy import ProxyDataplane

        return ProxyDataplane(), ServiceKey("tcp", "127.0.0.1", free_port())
    if name == "nft":
        from saru.dataplane.nft import NftDataplane

        return NftDataplane(), ServiceKey("tcp", "10.0.0.1", 80)
    if name == "ipvs":
        from saru.dataplane.ipvs import IpvsDataplane

        ok, why = IpvsDataplane.available()
        if not ok:
            raise SystemExit(f"IPVS unavailable: {why}")
        return IpvsDataplane(), ServiceKey("tcp", "10.0.0.1", 80)
    raise SystemExit(f"unknown plane {name}")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def timed_apply(plane: Dataplane, ops: Sequence[Op], cpu: list[float]) -> float:
    """Wall seconds of one apply; its CPU seconds (user + system of this process, all threads:
    the kernel's work on the netlink transaction runs in the sending thread) go to ``cpu``."""
    c0 = time.process_time()
    t0 = time.perf_counter()
    await plane.apply(ops)
    wall = time.perf_counter() - t0
    cpu.append(time.process_time() - c0)
    return wall


async def saru_phases(plane: Dataplane, key: ServiceKey, n: int, repeats: int) -> dict[str, Any]:
    """Median seconds (wall, and CPU of this process) of each phase over ``repeats`` cycles
    (add, weight 0, single, delete). The ops are built before the clock starts."""
    samples: dict[str, list[float]] = {p: [] for p in (*w.PHASES, "delete")}
    cpu: dict[str, list[float]] = {p: [] for p in samples}
    for _ in range(repeats):
        add, weight0, single, delete = (w.add_ops(key, n), w.weight0_ops(key, n), w.single_ops(key),
                                        w.delete_ops(key))
        samples["add"].append(await timed_apply(plane, add, cpu["add"]))
        table = await plane.read()
        if len(table.services[key].dests) != n:
            raise RuntimeError(f"{n} reals applied but {len(table.services[key].dests)} read back")
        samples["weight0"].append(await timed_apply(plane, weight0, cpu["weight0"]))
        samples["single"].append(await timed_apply(plane, single, cpu["single"]))
        samples["delete"].append(await timed_apply(plane, delete, cpu["delete"]))
    return {p: {"median": statistics.median(s), "samples": s, "cpu_median": statistics.median(cpu[p]),
                "cpu_samples": cpu[p]} for p, s in samples.items()}


def run(argv: list[str], stdin: str | None = None) -> None:
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")


def per_process(
    n: int, cap: int, one: Callable[[int], None], fill: Callable[[range], None]
) -> dict[str, Any]:
    """Seconds for ``n`` changes made by ``one(i)`` (one process each), extrapolated past ``cap``.

    When extrapolating, the timed processes are the middle ones (the table is filled up to them
    first, untimed): per-change costs that grow with the table are averaged, not under-estimated.
    """
    timed = min(n, cap)
    start = (n - timed) // 2
    if start:
        fill(range(0, start))
    t0 = time.perf_counter()
    for i in range(start, start + timed):
        one(i)
    seconds = time.perf_counter() - t0
    if start + timed < n:
        fill(range(start + timed, n))
    return {"seconds": seconds * n / timed, "processes_timed": timed, "extrapolated": timed < n,
            "per_process": seconds / timed}


def ipvsadm_way(n: int, cap: int) -> dict[str, Any]:
    vip, port = "10.0.0.2", 80
    run(w.ipvsadm_service(vip, port))
    try:
        add = per_process(n, cap, lambda i: run(w.ipvsadm_real(vip, port, i, 1)),
                          lambda rest: run(["ipvsadm", "-R"], w.ipvsadm_restore(vip, port, rest)))
        weight0 = per_process(n, cap, lambda i: run(w.ipvsadm_real(vip, port, i, 0, edit=True)),
                              lambda rest: None)
        single = per_process(1, 1, lambda i: run(w.ipvsadm_real(vip, port, i, 1, edit=True)),
                             lambda rest: None)
    finally:
        run(["ipvsadm", "-D", "-t", f"{vip}:{port}"])
    return {"add": add, "weight0": weight0, "single": single}


def nft_way(n: int, cap: int) -> dict[str, Any]:
    run(["nft", "-f", "-"], w.nft_setup())
    try:
        add = per_process(n, cap, lambda i: run(w.nft_add(i)),
                          lambda rest: run(["nft", "-f", "-"], w.nft_fill(rest)))
        weight0 = per_process(n, cap, lambda i: run(["nft", "-f", "-"], w.nft_set_weight(i, 0)),
                              lambda rest: None)
        single = per_process(1, 1, lambda i: run(["nft", "-f", "-"], w.nft_set_weight(i, 1)),
                             lambda rest: None)
    finally:
        run(["nft", "-f", "-"], w.nft_teardown())
    return {"add": add, "weight0": weight0, "single": single}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    t_import = time.perf_counter()
    plane, key = make_plane(args.plane)
    await plane.start()
    result: dict[str, Any] = {"plane": args.plane, "import_seconds": time.perf_counter() - t_import,
                              "sizes": {}}
    probes = [w.cpu_probe()]
    try:
        for n in args.sizes:
            repeats = args.repeats if n <= 100 else args.big_repeats
            entry: dict[str, Any] = {"repeats": repeats, "saru": await saru_phases(plane, key, n, repeats)}
            if args.plane == "ipvs":
                entry["one_process_per_change"] = ipvsadm_way(n, args.cap)
            elif args.plane == "nft":
                entry["one_process_per_change"] = nft_way(n, args.cap)
            result["sizes"][str(n)] = entry
            print(f"{args.plane} N={n}: " + ", ".join(
                f"{p} {entry['saru'][p]['median'] * 1000:.1f} ms" for p in w.PHASES), flush=True)
    finally:
        await plane.close()
    probes.append(w.cpu_probe())  # before and after: the faster one is the least disturbed by neighbours
    result["cpu_probes"] = probes
    result["cpu_probe"] = min(probes)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("plane", choices=("proxy", "nft", "ipvs"))
    parser.add_argument("--sizes", type=int, nargs="+", default=list(w.SIZES))
    parser.add_argument("--repeats", type=int, default=5, help="cycles for N <= 100")
    parser.add_argument("--big-repeats", type=int, default=3, help="cycles for N > 100")
    parser.add_argument("--cap", type=int, default=10_000, help="most processes timed per phase")
    result = asyncio.run(main_async(parser.parse_args()))
    result["pid"] = os.getpid()
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
