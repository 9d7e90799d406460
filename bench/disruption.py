"""Disruption benchmark: what a client load sees while the director is reloaded, restarted, failed over.

A bounded client load (``tests.lab.loadgen``: 6 new-connection workers, 3 keep-alive workers, 2 long
downloads at 2 MB/s each) runs through each data plane while one thing happens at a time (the
scenarios of ``tests.ha.disruption``): the userspace proxy on loopback; nftables NAT and direct
routing in the guide's network in namespaces ``saru-…`` — one director for the table scenarios, a
Saru VRRP pair for the switchovers — and, side by side on the same load and network, keepalived
(its defaults: VRRPv2, advert 1 s) moving the VIP over table-only Saru daemons. keepalived's and
ldirectord's own table scenarios need IPVS (the QEMU guest), which this bench does not run.

For each row: failed requests (``refused`` of them), broken connections (keep-alive connections and
downloads cut), idle keep-alive connections the server closed (retried, not failures), data-plane
writes counted by the daemons (applies/ops) and, on nftables, by the kernel (``nft monitor``
transactions in both director namespaces), and the longest time a client worker went unserved.

Prints the table and writes ``bench/results/disruption.json`` (with ``/proc/loadavg``).

    sudo .venv/bin/python bench/disruption.py [--planes proxy,nat,dr] [--only SUBSTRING,...]
    .venv/bin/python bench/disruption.py --markdown bench/results/disruption.json   # the docs' table
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.ha.bed import HABed
from tests.ha.disruption import (
    KEEPALIVED_SCENARIOS,
    PAIR_SCENARIOS,
    PROXY_SCENARIOS,
    SOLO_SCENARIOS,
    Bed,
    Outcome,
    measure,
    nft_bed,
    proxy_bed,
)
from tests.helpers import free_port

RESULTS = Path(__file__).resolve().parent / "results" / "disruption.json"
#: the design's promises: 0 failed requests and 0 writes
PROMISED = {"reload, nothing changed", "reload with a broken file", "kill -9 and restart (adoption)"}


def run(bed: Bed, scenarios: dict[str, Callable[[Any], str]], only: list[str], rows: list[Outcome]) -> None:
    for name, action in scenarios.items():
        if only and not any(o in name for o in only):
            continue
        try:
            outcome = measure(bed, name, lambda action=action: action(bed))
        except Exception as exc:  # one scenario's failure is a row, the others still run
            outcome = Outcome(bed.plane, name, {}, note=f"ERROR {type(exc).__name__}: {exc}"[:300])
        rows.append(outcome)
        print_row(outcome.row())


def cell(value: Any, fmt: str = "{}") -> str:
    return "-" if value is None else fmt.format(value)


def print_header() -> None:
    print(f"{'plane':<15} {'scenario':<38} {'failed':>6} {'refus':>5} {'broken':>6} {'kaclo':>5} {'writes':>6} "
          f"{'kernel':>6} {'gap s':>6} {'req/s':>6}  note", flush=True)


def print_row(r: dict[str, Any]) -> None:
    print(f"{r['plane']:<15} {r['scenario'][:38]:<38} {cell(r['failed']):>6} {cell(r['refused']):>5} "
          f"{cell(r['broken']):>6} {cell(r['keepalive_closed']):>5} {cell(r['writes']):>6} "
          f"{cell(r['kernel_transactions']):>6} {cell(r['longest_gap'], '{:.3f}'):>6} {cell(r['rate'], '{:.0f}'):>6}"
          f"  {r['note'][:70]}", flush=True)


def markdown(rows: list[dict[str, Any]]) -> str:
    """The table as Markdown (docs/reliability.md), from the rows of a run."""
    out = ["| plane | scenario | failed (refused) | broken | idle closed | writes (kernel) | longest gap s | req/s |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        kernel = "" if r["kernel_transactions"] is None else f" ({r['kernel_transactions']})"
        out.append(f"| {r['plane']} | {r['scenario']} | {cell(r['failed'])} ({cell(r['refused'])}) | "
                   f"{cell(r['broken'])} | {cell(r['keepalive_closed'])} | {cell(r['writes'])}{kernel} | "
                   f"{cell(r['longest_gap'], '{:.2f}')} | {cell(r['rate'], '{:.0f}')} |")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--planes", default="proxy,nat,dr")
    parser.add_argument("--only", default="", help="comma-separated substrings of scenario names")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the JSON goes")
    parser.add_argument("--markdown", type=Path, metavar="JSON", help="print a saved run as Markdown and exit")
    args = parser.parse_args()
    if args.markdown:
        print(markdown(json.loads(args.markdown.read_text())["rows"]))
        return 0
    planes = args.planes.split(",")
    only = [o for o in args.only.split(",") if o]
    rows: list[Outcome] = []
    load_before = Path("/proc/loadavg").read_text().strip()
    started = time.monotonic()
    print_header()
    if "proxy" in planes:
        with tempfile.TemporaryDirectory(prefix="saru-disrupt-") as tmp, proxy_bed(Path(tmp), free_port()) as bed:
            run(bed, PROXY_SCENARIOS, only, rows)
    ok, why = HABed.available()
    for mode in ("nat", "dr"):
        if mode not in planes:
            continue
        if not ok:
            print(f"nft {mode}: cannot run: {why}", file=sys.stderr)
            continue
        with tempfile.TemporaryDirectory(prefix="saru-disrupt-") as tmp, nft_bed(Path(tmp), mode) as nbed:
            nbed.solo()
            run(nbed, SOLO_SCENARIOS, only, rows)
            nbed.pair()
            nbed.plane = f"nft {mode} pair"
            run(nbed, PAIR_SCENARIOS, only, rows)
            nbed.pair(warm_standby=True)
            nbed.plane = f"nft {mode} warm"
            run(nbed, PAIR_SCENARIOS, only, rows)
            nbed.keepalived_pair()
            nbed.plane = f"keepalived {mode}"
            run(nbed, KEEPALIVED_SCENARIOS, only, rows)
    missed = [r.row() for r in rows if r.scenario in PROMISED and not r.plane.startswith("keepalived")
              and (r.load.get("failed") or r.writes) and r.plane != "proxy"]
    doc = {"loadavg_before": load_before, "loadavg_after": Path("/proc/loadavg").read_text().strip(),
           "seconds": round(time.monotonic() - started, 1), "rows": [r.row() for r in rows],
           "promises_missed": missed}
    print(f"\nload average before/after: {doc['loadavg_before']} / {doc['loadavg_after']}; {doc['seconds']} s")
    print("promised 0 failed / 0 writes (nftables: reload unchanged, broken reload, kill -9 + adoption): "
          + ("kept" if not missed else f"MISSED in {len(missed)} rows"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
