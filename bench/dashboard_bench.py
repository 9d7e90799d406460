"""Dashboard benchmark: how long after the daemon sees a real fail (or come back) its row changes in
a real browser, with 1,000 reals on the page.

A ``saru run`` (proxy data plane, ``[api]`` on at 127.0.0.1) checks 1,000 reals in 10 virtual
services: 999 served by one nginx listening on 999 loopback ports, and one "victim" nginx of its
own. Headless Chromium (Debian's, through Selenium; tests/browser.py) opens the dashboard. Each run
removes the victim's check page (its negotiate check then fails: the daemon logs ``Real server
down``) and puts it back (``Real server up``); a MutationObserver in the page stamps the moment
the victim's row changes its state. The time measured is from the daemon's log line (as its stderr
reaches the bench, ~0.1 ms after the daemon wrote it) to that stamp: event bus → SSE → status
fetch → render. Also printed: the page's first render after navigation and one full render.

Goal: <= 1 s after the daemon saw the change. Prints a table and a JSON document (also written to
``bench/results/dashboard.json``).

    .venv/bin/python bench/dashboard_bench.py [--reals 1000] [--runs 10]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.browser import (
    Dashboard,
    ManyPortNginx,
    api_director,
    free_ports,
    headless_chromium,
    require_browser,
    wait_until,
)
from tests.helpers import start_nginx

RESULTS = Path(__file__).resolve().parent / "results" / "dashboard.json"
CHECK = "/haCheker/haCheck.html"
GOAL = 1.0
PER_VIRTUAL = 100


def config_text(workdir: Path, virtuals: dict[int, list[int]], interval: float) -> str:
    blocks = []
    for vport, ports in virtuals.items():
        reals = "\n".join(f"\treal=127.0.0.1:{p} masq 1" for p in ports)
        blocks.append(f"virtual=127.0.0.1:{vport}\n{reals}\n\tservice=http\n\tscheduler=wrr\n\tprotocol=tcp\n"
                      f'\tchecktype=negotiate\n\trequest="{CHECK.lstrip("/")}"\n\treceive="up and running"\n')
    return (f"checktimeout=1\ncheckinterval={interval:g}\nquiescent=no\n"
            f'logfile="{workdir / "ldirectord.log"}"\n\n' + "\n".join(blocks))


def measure(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    ports = free_ports(args.reals - 1)
    farm = ManyPortNginx(workdir / "farm", ports, {CHECK: "up and running\n"}).start()
    victim = start_nginx(workdir / "victim", name="victim", files={CHECK: "up and running\n"})
    vports = free_ports((args.reals + PER_VIRTUAL - 1) // PER_VIRTUAL)
    all_ports = [victim.port, *ports]
    virtuals = {vp: all_ports[i * PER_VIRTUAL:(i + 1) * PER_VIRTUAL] for i, vp in enumerate(vports)}
    d = api_director(workdir, config_text(workdir, virtuals, args.interval))
    runs: list[dict[str, Any]] = []
    try:
        with headless_chromium() as driver:
            page = Dashboard(driver, d.url)
            page.open(60)
            wait_until(f"{args.reals} rows", lambda: len(page.rows()) == args.reals, 60)
            first = page.metrics()
            proxy, server = f"tcp/127.0.0.1:{vports[0]}", f"127.0.0.1:{victim.port}"
            page.wait_state(proxy, server, "UP", 60)
            page.watch(proxy, server)
            changes = (("fail", "DOWN", "Real server down"), ("back", "UP", "Real server up"))
            for run in range(args.runs):
                for direction, state, pattern in changes:
                    before = time.monotonic()
                    if direction == "fail":
                        victim.remove(CHECK)
                    else:
                        victim.write(CHECK, "up and running\n")
                    seen_at, _ = d.director.wait_for(rf"{pattern}: {re.escape(server)} ", after=before, timeout=60)
                    seen_wall = time.time() - (time.monotonic() - seen_at)
                    page.wait_state(proxy, server, state, 30)
                    changed = [at for s, at in page.changes(proxy, server) if s == state][-1]
                    runs.append({"run": run + 1, "direction": direction, "state": state,
                                 "delay_ms": round((changed - seen_wall) * 1000, 1)})
                    print(f"  run {run + 1:2d} {direction:4s} → {state:4s}  {runs[-1]['delay_ms']:7.1f} ms", flush=True)
            last = page.metrics()
    finally:
        d.director.stop()
        victim.stop()
        farm.stop()
    delays = [r["delay_ms"] for r in runs]
    return {
        "reals": args.reals, "virtuals": len(virtuals), "checkinterval": args.interval, "runs": runs,
        "first_render_ms": round(first["firstRenderMs"], 1),
        "full_render_ms": round(first["lastRenderMs"], 1),
        "last_render_ms": round(last["lastRenderMs"], 1),
        "status_fetches": last["statusFetches"], "events": last["events"],
        "delay_ms": {"median": round(statistics.median(delays), 1), "max": max(delays), "min": min(delays),
                     "p90": round(sorted(delays)[max(0, int(len(delays) * 0.9) - 1)], 1)},
        "goal_ms": GOAL * 1000, "goal_met": max(delays) <= GOAL * 1000,
    }


def table(result: dict[str, Any]) -> str:
    d = result["delay_ms"]
    rows = [
        ("reals on the page", f"{result['reals']} in {result['virtuals']} virtual services"),
        ("first render after navigation", f"{result['first_render_ms']:.0f} ms"),
        ("one full render (1 status document)", f"{result['full_render_ms']:.0f} ms"),
        ("daemon saw it → row changed: median", f"{d['median']:.0f} ms"),
        ("  p90 / max", f"{d['p90']:.0f} / {d['max']:.0f} ms  ({len(result['runs'])} changes)"),
        ("goal", f"<= {result['goal_ms']:.0f} ms: {'met' if result['goal_met'] else 'NOT met'}"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reals", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=10, help="fail/recover cycles (two changes each)")
    parser.add_argument("--interval", type=float, default=2.0, help="checkinterval of the reals (s)")
    args = parser.parse_args()
    require_browser()
    with tempfile.TemporaryDirectory(prefix="saru-dash-bench-") as tmp:
        result = measure(args, Path(tmp))
    print()
    print(table(result))
    print(json.dumps(result))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
